package entra

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sort"
)

// DefaultFailureMessage is the userMessage when a connector fails closed and sets no failureMessage.
const DefaultFailureMessage = "We can't complete your sign-up right now. Please try again later."

// reservedKeys are response fields a returned claim must never overwrite. email is here because
// Entra refuses to have it returned.
var reservedKeys = map[string]bool{"version": true, "action": true, "status": true, "userMessage": true, "email": true}

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
func EncodeDecision(d *Decision) (status int, body []byte) {
	if d == nil {
		d = &Decision{Action: ActionShowBlockPage, UserMessage: DefaultFailureMessage}
	}
	var b bytes.Buffer
	b.WriteString(`{"version":`)
	writeString(&b, Version)
	switch d.Action {
	case ActionContinue:
		b.WriteString(`,"action":"Continue"`)
		keys := make([]string, 0, len(d.Claims))
		for k := range d.Claims {
			if !reservedKeys[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteByte(',')
			writeString(&b, k)
			b.WriteByte(':')
			writeString(&b, d.Claims[k])
		}
		status = http.StatusOK
	case ActionValidationError:
		b.WriteString(`,"status":400,"action":"ValidationError","userMessage":`)
		writeString(&b, d.UserMessage)
		status = http.StatusBadRequest
	case ActionShowBlockPage:
		b.WriteString(`,"action":"ShowBlockPage","userMessage":`)
		writeString(&b, d.UserMessage)
		status = http.StatusOK
	default:
		b.WriteString(`,"action":"ShowBlockPage","userMessage":`)
		writeString(&b, DefaultFailureMessage)
		status = http.StatusOK
	}
	b.WriteByte('}')
	return status, b.Bytes()
}

// writeString writes s as a JSON string. encoding/json escapes <, > and & as \u003c etc., which
// keeps a userMessage harmless even if someone pastes it into HTML unescaped.
func writeString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // marshalling a string cannot fail; invalid UTF-8 becomes U+FFFD
	b.Write(enc)
}
