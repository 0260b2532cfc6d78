package entra

import (
	"cmp"
	"encoding/json"
	"net/http"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// DefaultFailureMessage is the userMessage when a connector fails closed and sets no failureMessage.
const DefaultFailureMessage = v1alpha1.DefaultFailureMessage

// EncodeDecision renders a decision as the HTTP status and body Entra expects:
//
//	Continue        200 {"version":"1.0.0","action":"Continue",<claims sorted by key>}
//	ShowBlockPage   200 {"version":"1.0.0","action":"ShowBlockPage","userMessage":"..."}
//	ValidationError 400 {"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"..."}
//
// Keys come in a fixed order (version, status, action, userMessage, then claims sorted), the
// order of Microsoft's examples, so the same decision always gives the same bytes. The claim email
// and claims named like response fields are never emitted. A nil decision or an unknown action
// fails closed as ShowBlockPage with DefaultFailureMessage: the encoder must not invent a Continue.
// Entra requires a userMessage with ShowBlockPage and ValidationError, so an empty one is
// DefaultFailureMessage too.
func EncodeDecision(d *Decision) (status int, body []byte) {
	if d == nil {
		d = &Decision{Action: ActionShowBlockPage, UserMessage: DefaultFailureMessage}
	}
	// Field order is the struct's; encoding/json escapes <, > and & (harmless if a userMessage is
	// pasted into HTML), replaces invalid UTF-8 with U+FFFD and escapes U+2028 and U+2029.
	answer := struct {
		Version     string `json:"version"`
		Status      int    `json:"status,omitempty"`
		Action      Action `json:"action"`
		UserMessage string `json:"userMessage,omitempty"`
	}{Version: Version, Action: d.Action, UserMessage: d.UserMessage}
	status = http.StatusOK
	var claims map[string]string
	switch d.Action {
	case ActionContinue:
		answer.UserMessage = ""
		claims = make(map[string]string, len(d.Claims))
		for k, v := range d.Claims {
			if !v1alpha1.IsReservedClaim(k) {
				claims[k] = v
			}
		}
	case ActionValidationError:
		answer.Status, status = http.StatusBadRequest, http.StatusBadRequest
		answer.UserMessage = cmp.Or(answer.UserMessage, DefaultFailureMessage)
	case ActionShowBlockPage:
		answer.UserMessage = cmp.Or(answer.UserMessage, DefaultFailureMessage)
	default:
		answer.Action, answer.UserMessage = ActionShowBlockPage, DefaultFailureMessage
	}
	// Strings and maps of strings cannot fail to encode.
	body, _ = json.Marshal(answer)
	if len(claims) > 0 {
		// The claims follow the fixed fields as top-level keys, sorted (encoding/json sorts map keys).
		more, _ := json.Marshal(claims)
		body = append(append(body[:len(body)-1], ','), more[1:]...)
	}
	return status, body
}

// LegacyFailureStatus is the HTTP status of a fail-closed answer at a legacy step without a block
// page (PreTokenIssuance, whose only documented answer is Continue): the token must not be issued
// without the claims the connector could not decide.
const LegacyFailureStatus = http.StatusInternalServerError

// EncodeLegacyDecision is EncodeDecision at step: at a step without a block page
// (v1alpha1.Step.FailsWithErrorStatus) any answer but Continue becomes LegacyFailureStatus with
// {"version":"1.0.0","status":500,"userMessage":"..."} and no action, which Entra treats as a
// failed call.
func EncodeLegacyDecision(step v1alpha1.Step, d *Decision) (status int, body []byte) {
	if !step.FailsWithErrorStatus() || (d != nil && d.Action == ActionContinue) {
		return EncodeDecision(d)
	}
	msg := DefaultFailureMessage
	if d != nil && d.UserMessage != "" {
		msg = d.UserMessage
	}
	body, _ = json.Marshal(struct {
		Version     string `json:"version"`
		Status      int    `json:"status"`
		UserMessage string `json:"userMessage"`
	}{Version, LegacyFailureStatus, msg})
	return LegacyFailureStatus, body
}
