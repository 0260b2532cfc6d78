package entra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// Custom authentication extensions (Entra External ID) call the API with a CloudEvents-like
// envelope and expect {"data":{"@odata.type":"...ResponseData","actions":[...]}} back, always with
// HTTP 200. The connector's step selects the event; the strings below are the exact @odata.type
// values of Microsoft's reference pages (see testdata/golden/extensions/README.md).

// Step names of the custom authentication extension events (the values of the APIConnector's
// spec.step; this package does not import the API types).
const (
	StepAttributeCollectionStart  = "OnAttributeCollectionStart"
	StepAttributeCollectionSubmit = "OnAttributeCollectionSubmit"
	StepTokenIssuanceStart        = "OnTokenIssuanceStart"
	StepOtpSend                   = "OnOtpSend"
	StepPasswordSubmit            = "OnPasswordSubmit"
)

// extensionEvent is the wire vocabulary of one event.
type extensionEvent struct {
	eventType    string // envelope "type"
	calloutType  string // data.@odata.type of the request
	responseType string // data.@odata.type of the response
	actionPrefix string // prefix of the actions' @odata.type
}

var extensionEvents = map[string]extensionEvent{
	StepAttributeCollectionStart: {
		eventType:    "microsoft.graph.authenticationEvent.attributeCollectionStart",
		calloutType:  "microsoft.graph.onAttributeCollectionStartCalloutData",
		responseType: "microsoft.graph.onAttributeCollectionStartResponseData",
		actionPrefix: "microsoft.graph.attributeCollectionStart.",
	},
	StepAttributeCollectionSubmit: {
		eventType:    "microsoft.graph.authenticationEvent.attributeCollectionSubmit",
		calloutType:  "microsoft.graph.onAttributeCollectionSubmitCalloutData",
		responseType: "microsoft.graph.onAttributeCollectionSubmitResponseData",
		actionPrefix: "microsoft.graph.attributeCollectionSubmit.",
	},
	StepTokenIssuanceStart: {
		eventType:    "microsoft.graph.authenticationEvent.tokenIssuanceStart",
		calloutType:  "microsoft.graph.onTokenIssuanceStartCalloutData",
		responseType: "microsoft.graph.onTokenIssuanceStartResponseData",
		actionPrefix: "microsoft.graph.tokenIssuanceStart.",
	},
	// The OTP reference page spells the response type and the action prefix with a capital O.
	StepOtpSend: {
		eventType:    "microsoft.graph.authenticationEvent.emailOtpSend",
		calloutType:  "microsoft.graph.onOtpSendCalloutData",
		responseType: "microsoft.graph.OnOtpSendResponseData",
		actionPrefix: "microsoft.graph.OtpSend.",
	},
	StepPasswordSubmit: {
		eventType:    "microsoft.graph.authenticationEvent.passwordSubmit",
		calloutType:  "microsoft.graph.onPasswordSubmitCalloutData",
		responseType: "microsoft.graph.onPasswordSubmitResponseData",
		actionPrefix: "microsoft.graph.passwordSubmit.",
	},
}

// IsExtensionStep reports whether step is a custom authentication extension event.
func IsExtensionStep(step string) bool {
	_, ok := extensionEvents[step]
	return ok
}

// EventType is the envelope "type" Entra sends for an extension step ("" for other steps).
func EventType(step string) string { return extensionEvents[step].eventType }

// CalloutType is the data.@odata.type Entra sends for an extension step ("" for other steps).
func CalloutType(step string) string { return extensionEvents[step].calloutType }

// AttributeType is the type of a collected attribute, from its @odata.type.
type AttributeType string

// Attribute types of userSignUpInfo.attributes.
const (
	AttributeString  AttributeType = "string"  // microsoft.graph.stringDirectoryAttributeValue
	AttributeInt64   AttributeType = "int64"   // microsoft.graph.int64DirectoryAttributeValue
	AttributeBoolean AttributeType = "boolean" // microsoft.graph.booleanDirectoryAttributeValue
)

var attributeODataTypes = map[string]AttributeType{
	"microsoft.graph.stringDirectoryAttributeValue":  AttributeString,
	"microsoft.graph.int64DirectoryAttributeValue":   AttributeInt64,
	"microsoft.graph.booleanDirectoryAttributeValue": AttributeBoolean,
}

// MaxTokenClaimsBytes is the most a custom claims provider may return at OnTokenIssuanceStart:
// "3KB, the sum of all the key and value pairs" (custom-claims-provider-reference).
const MaxTokenClaimsBytes = 3 * 1024

// Extension is what a custom authentication extension request carries besides claims.
type Extension struct {
	// Step is the connector step the request was decoded for (OnAttributeCollectionStart...).
	Step string
	// Type and Source are the envelope's type and source.
	Type, Source string
	// TenantID, ListenerID and ExtensionID are data.tenantId, data.authenticationEventListenerId
	// and data.customAuthenticationExtensionId ("" when absent).
	TenantID, ListenerID, ExtensionID string
	// Context is data.authenticationContext (numbers as float64), {} when absent. Rules see it as
	// the context variable.
	Context map[string]any
	// AttributeTypes are the types of the collected attributes (userSignUpInfo.attributes), by
	// attribute name, including attributes sent without a value. Returned values are converted to
	// these types. Attributes of an unknown @odata.type are left out.
	AttributeTypes map[string]AttributeType
	// Sensitive is what the request carries that only outbound calls may see, by name: at
	// OnOtpSend data.otpContext's identifier and oneTimeCode. It is left out of Request.Canonical
	// (and so of logs and event ids), and prints as a placeholder.
	Sensitive Sensitive
	// EncryptedPasswordContext is data.encryptedPasswordContext at OnPasswordSubmit (a compact
	// JWE), left out of Canonical. The server decrypts it into Sensitive and Nonce.
	EncryptedPasswordContext string
	// Nonce is the nonce of the decrypted password context, echoed in the answer.
	Nonce string
}

// Sensitive values of a request (see Extension.Sensitive). Printing it with fmt or slog shows
// only its keys, never a value.
type Sensitive map[string]string

// String lists the keys.
func (s Sensitive) String() string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return "Sensitive{" + strings.Join(keys, ",") + ": redacted}"
}

// GoString is String, for %#v.
func (s Sensitive) GoString() string { return s.String() }

// LogValue keeps values out of structured logs.
func (s Sensitive) LogValue() slog.Value { return slog.StringValue(s.String()) }

// EventTypeError says the envelope is not the event the connector serves.
type EventTypeError struct {
	Field, Want, Got string
}

func (e *EventTypeError) Error() string {
	return fmt.Sprintf("%s is %q, this connector serves %q", e.Field, truncate(e.Got, 128), e.Want)
}

// DecodeExtensionRequest parses a custom authentication extension request for the extension step.
// It applies the same checks as DecodeRequest (UTF-8, one object, no duplicate keys, bounded
// nesting), refuses an envelope of another event (*EventTypeError) and maps the envelope to
// claims:
//
//   - OnAttributeCollectionStart/Submit: each userSignUpInfo.attributes entry becomes a claim with
//     its typed value (string, int64 or bool; a string attribute sent as an array of strings stays
//     a list), identities becomes the identities claim, and email is the issuerAssignedId of the
//     first email identity when no email attribute is collected. Attributes without a value are
//     absent, as in the legacy protocol.
//   - OnTokenIssuanceStart: the claims are authenticationContext.user's properties.
//   - OnOtpSend: no claims; data.otpContext's identifier and oneTimeCode (required non-empty
//     strings) are Extension.Sensitive and are left out of Canonical.
//
// authenticationContext is Extension.Context. Canonical is the whole envelope, canonicalised.
func DecodeExtensionRequest(body []byte, step string) (*Request, error) {
	ev, ok := extensionEvents[step]
	if !ok {
		return nil, fmt.Errorf("step %q is not a custom authentication extension event", step)
	}
	var p parser // numbers stay json.Number: an attribute's type decides what they become
	raw, err := p.parseBody(body)
	if err != nil {
		return nil, err
	}
	typ, err := optString(raw, "type", "type")
	if err != nil {
		return nil, err
	}
	if typ != ev.eventType {
		return nil, &EventTypeError{Field: "type", Want: ev.eventType, Got: typ}
	}
	source, err := optString(raw, "source", "source")
	if err != nil {
		return nil, err
	}
	data, ok := raw["data"].(map[string]any)
	if !ok {
		return nil, &ClaimTypeError{Claim: "data", Want: "an object", Got: jsonType(raw["data"])}
	}
	odata, err := optString(data, "@odata.type", "data.@odata.type")
	if err != nil {
		return nil, err
	}
	if odata != ev.calloutType {
		return nil, &EventTypeError{Field: "data.@odata.type", Want: ev.calloutType, Got: odata}
	}
	x := &Extension{Step: step, Type: typ, Source: source, Context: map[string]any{}, AttributeTypes: map[string]AttributeType{}}
	for _, f := range []struct {
		key string
		dst *string
	}{{"tenantId", &x.TenantID}, {"authenticationEventListenerId", &x.ListenerID}, {"customAuthenticationExtensionId", &x.ExtensionID}} {
		if *f.dst, err = optString(data, f.key, "data."+f.key); err != nil {
			return nil, err
		}
	}
	if c, present := data["authenticationContext"]; present {
		m, ok := c.(map[string]any)
		if !ok {
			return nil, &ClaimTypeError{Claim: "data.authenticationContext", Want: "an object", Got: jsonType(c)}
		}
		conv, err := toClaims(m)
		if err != nil {
			return nil, err
		}
		x.Context = conv.(map[string]any)
	}

	claims := map[string]any{}
	if step == StepOtpSend {
		if x.Sensitive, err = otpContext(data); err != nil {
			return nil, err
		}
		// The code and the address stay out of Canonical: it is logged with --log-claims and
		// hashed into event ids, and a hash of an 8-digit code is no secret.
		delete(data, "otpContext")
		canon, err := canonicalOf(raw)
		if err != nil {
			return nil, err
		}
		return &Request{Claims: claims, Extension: x, canonical: canon}, nil
	}
	if step == StepPasswordSubmit {
		jwe, ok := data["encryptedPasswordContext"].(string)
		if !ok || jwe == "" {
			return nil, &ClaimTypeError{Claim: "data.encryptedPasswordContext", Want: "a non-empty string", Got: jsonType(data["encryptedPasswordContext"])}
		}
		x.EncryptedPasswordContext = jwe
		delete(data, "encryptedPasswordContext") // the password stays out of Canonical
		canon, err := canonicalOf(raw)
		if err != nil {
			return nil, err
		}
		if err := userClaims(x.Context, claims); err != nil {
			return nil, err
		}
		return &Request{Claims: claims, Extension: x, canonical: canon}, nil
	}
	if step == StepTokenIssuanceStart {
		if err := userClaims(x.Context, claims); err != nil {
			return nil, err
		}
	} else if err := signUpClaims(data, claims, x.AttributeTypes); err != nil {
		return nil, err
	}
	return &Request{Claims: claims, Extension: x, body: body}, nil
}

// userClaims copies authenticationContext.user's properties into claims.
func userClaims(ctx, claims map[string]any) error {
	if u, present := ctx["user"]; present {
		user, ok := u.(map[string]any)
		if !ok {
			return &ClaimTypeError{Claim: "data.authenticationContext.user", Want: "an object", Got: jsonType(u)}
		}
		for k, v := range user {
			claims[k] = v
		}
	}
	return nil
}

// otpContext reads data.otpContext {identifier, oneTimeCode}: both are required strings (the
// request is useless without them). Errors name the field, never a value.
func otpContext(data map[string]any) (Sensitive, error) {
	v, present := data["otpContext"]
	ctx, ok := v.(map[string]any)
	if !ok {
		got := "nothing"
		if present {
			got = jsonType(v)
		}
		return nil, &ClaimTypeError{Claim: "data.otpContext", Want: "an object", Got: got}
	}
	out := Sensitive{}
	for _, k := range []string{"identifier", "oneTimeCode"} {
		s, ok := ctx[k].(string)
		if !ok || s == "" {
			got := "nothing"
			if _, present := ctx[k]; present {
				got = jsonType(ctx[k])
				if ok {
					got = "an empty string"
				}
			}
			return nil, &ClaimTypeError{Claim: "data.otpContext." + k, Want: "a non-empty string", Got: got}
		}
		out[k] = s
	}
	return out, nil
}

// canonicalOf is the canonical form of a parsed body (numbers kept as json.Number, so as sent).
func canonicalOf(raw map[string]any) ([]byte, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, &DecodeError{Reason: "malformed_json", Err: err}
	}
	return canonical(b)
}

// signUpClaims maps data.userSignUpInfo to claims.
func signUpClaims(data, claims map[string]any, types map[string]AttributeType) error {
	u, present := data["userSignUpInfo"]
	if !present {
		return nil
	}
	info, ok := u.(map[string]any)
	if !ok {
		return &ClaimTypeError{Claim: "data.userSignUpInfo", Want: "an object", Got: jsonType(u)}
	}
	if a, present := info["attributes"]; present {
		attrs, ok := a.(map[string]any)
		if !ok {
			return &ClaimTypeError{Claim: "data.userSignUpInfo.attributes", Want: "an object", Got: jsonType(a)}
		}
		for name, e := range attrs {
			path := "data.userSignUpInfo.attributes." + truncate(name, 128)
			entry, ok := e.(map[string]any)
			if !ok {
				return &ClaimTypeError{Claim: path, Want: "an object", Got: jsonType(e)}
			}
			typ, known := attributeODataTypes[odataType(entry)]
			if known {
				types[name] = typ
			}
			v, present := entry["value"]
			if !present || v == nil {
				continue // no value collected (yet)
			}
			val, err := attributeValue(path+".value", typ, known, v)
			if err != nil {
				return err
			}
			claims[name] = val
		}
	}
	if ids, present := info["identities"]; present {
		if err := checkIdentities(ids, "data.userSignUpInfo.identities"); err != nil {
			return err
		}
		conv, err := toClaims(ids)
		if err != nil {
			return err
		}
		claims["identities"] = conv
	}
	if _, has := claims["email"]; !has {
		if ids, ok := claims["identities"].([]any); ok {
			for _, e := range ids {
				id, _ := e.(map[string]any)
				if t, _ := id["signInType"].(string); t == "email" {
					if mail, ok := id["issuerAssignedId"].(string); ok {
						claims["email"] = mail
						break
					}
				}
			}
		}
	}
	return nil
}

// odataType returns an attribute entry's @odata.type. The key is matched case-insensitively:
// Microsoft's own request example spells it "@odata.Type" for one attribute.
func odataType(entry map[string]any) string {
	if s, ok := entry["@odata.type"].(string); ok {
		return s
	}
	for k, v := range entry {
		if strings.EqualFold(k, "@odata.type") {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

func attributeValue(path string, typ AttributeType, known bool, v any) (any, error) {
	if !known {
		return toClaims(v) // a type this runtime does not know: keep the JSON value
	}
	switch typ {
	case AttributeString:
		switch t := v.(type) {
		case string:
			return t, nil
		case []any: // the start reference shows a multi-valued attribute as an array
			for _, e := range t {
				if _, ok := e.(string); !ok {
					return nil, &ClaimTypeError{Claim: path, Want: "a string or an array of strings", Got: "an array of " + jsonType(e)}
				}
			}
			return t, nil
		}
		return nil, &ClaimTypeError{Claim: path, Want: "a string", Got: jsonType(v)}
	case AttributeInt64:
		n, ok := v.(json.Number)
		if !ok {
			return nil, &ClaimTypeError{Claim: path, Want: "an integer", Got: jsonType(v)}
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return nil, &ClaimTypeError{Claim: path, Want: "a 64-bit integer", Got: "a number out of range or with a fraction"}
		}
		return i, nil
	default: // AttributeBoolean
		b, ok := v.(bool)
		if !ok {
			return nil, &ClaimTypeError{Claim: path, Want: "a boolean", Got: jsonType(v)}
		}
		return b, nil
	}
}

func optString(m map[string]any, key, path string) (string, error) {
	v, present := m[key]
	if !present {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", &ClaimTypeError{Claim: path, Want: "a string", Got: jsonType(v)}
	}
	return s, nil
}

// ConvertAttribute converts a value returned by the rules to the type of the request's attribute,
// as Entra requires ("the response value types match the request value types"): strings are
// parsed into int64 and boolean attributes, integers and booleans are formatted into string
// attributes, and a list of strings becomes a comma-delimited string (Entra's format for
// multi-valued attributes). Values of attributes of unknown type are returned unchanged.
func ConvertAttribute(typ AttributeType, v any) (any, error) {
	switch typ {
	case AttributeString:
		switch t := v.(type) {
		case string:
			return t, nil
		case int64:
			return strconv.FormatInt(t, 10), nil
		case bool:
			return strconv.FormatBool(t), nil
		case []string:
			return strings.Join(t, ","), nil
		}
	case AttributeInt64:
		switch t := v.(type) {
		case int64:
			return t, nil
		case string:
			i, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
			if err != nil {
				return nil, errors.New("the attribute is an int64 and the value is not an integer")
			}
			return i, nil
		}
	case AttributeBoolean:
		switch t := v.(type) {
		case bool:
			return t, nil
		case string:
			b, err := strconv.ParseBool(strings.TrimSpace(t))
			if err != nil {
				return nil, errors.New("the attribute is a boolean and the value is not true or false")
			}
			return b, nil
		}
	default:
		return v, nil
	}
	return nil, fmt.Errorf("the attribute is a %s and the value is a %T", typ, v)
}

// TokenClaimsSize is the size Entra counts against MaxTokenClaimsBytes: the bytes of every claim
// name and value (each element of a string array).
func TokenClaimsSize(claims map[string]string, lists map[string][]string) int {
	n := 0
	for k, v := range claims {
		n += len(k) + len(v)
	}
	for k, vs := range lists {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return n
}

// ExtensionFailureStatus is the HTTP status of a fail-closed answer at the events without a block
// action (OnTokenIssuanceStart, OnOtpSend): failing closed means answering with an error status.
// At token issuance Entra then fails the issuance (error 1003002) instead of issuing a token
// without the claims; at OnOtpSend it applies the listener's behaviorOnError (by default no code
// is sent; fallbackToMicrosoftProviderOnError sends Entra's own e-mail).
const ExtensionFailureStatus = http.StatusInternalServerError

// extensionFailureBody is the body of a fail-closed answer at step.
func extensionFailureBody(step string) []byte {
	msg := "The custom authentication extension could not decide."
	switch step {
	case StepTokenIssuanceStart:
		msg = "The custom claims provider could not decide."
	case StepOtpSend:
		msg = "The custom e-mail provider could not send the code."
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": "ConnectorFailure", "message": msg}})
	return b
}

// EncodeExtensionDecision renders a decision as the response of the extension step: always HTTP
// 200 with one action, except a fail-closed answer at OnTokenIssuanceStart (see
// ExtensionFailureStatus).
//
//	Continue        start: continueWithDefaultBehavior, or setPrefillValues{inputs} with claims
//	                submit: continueWithDefaultBehavior, or modifyAttributeValues{attributes}
//	                token: provideClaimsForToken{claims} ({} when none)
//	                OTP send: continueWithDefaultBehavior (claims are never returned)
//	ShowBlockPage   start, submit: showBlockPage{message}; token, OTP send: ExtensionFailureStatus
//	ValidationError submit: showValidationError{message, attributeErrors}; start: showBlockPage;
//	                token, OTP send: ExtensionFailureStatus
//
// Claims come from Decision.Claims and Decision.ClaimValues (typed values, string arrays). The
// claim email is never returned at the attribute collection events. A nil decision or an unknown
// action fails closed.
func EncodeExtensionDecision(step string, d *Decision) (status int, body []byte) {
	ev, ok := extensionEvents[step]
	if !ok {
		return EncodeDecision(d)
	}
	if step == StepPasswordSubmit {
		return encodePasswordSubmit(ev, d)
	}
	if d == nil || (d.Action != ActionContinue && d.Action != ActionShowBlockPage && d.Action != ActionValidationError) {
		d = &Decision{Action: ActionShowBlockPage, UserMessage: DefaultFailureMessage}
	}
	if v1alpha1.Step(step).FailsWithErrorStatus() && d.Action != ActionContinue {
		return ExtensionFailureStatus, extensionFailureBody(step)
	}
	action := map[string]any{}
	switch {
	case step == StepOtpSend: // Continue; the answer carries nothing else
		action["@odata.type"] = ev.actionPrefix + "continueWithDefaultBehavior"
	case d.Action == ActionContinue && step == StepTokenIssuanceStart:
		action["@odata.type"] = ev.actionPrefix + "provideClaimsForToken"
		action["claims"] = returnedClaims(d, false)
	case d.Action == ActionContinue:
		claims := returnedClaims(d, true)
		switch {
		case len(claims) == 0:
			action["@odata.type"] = ev.actionPrefix + "continueWithDefaultBehavior"
		case step == StepAttributeCollectionStart:
			action["@odata.type"] = ev.actionPrefix + "setPrefillValues"
			action["inputs"] = claims
		default:
			action["@odata.type"] = ev.actionPrefix + "modifyAttributeValues"
			action["attributes"] = claims
		}
	case d.Action == ActionValidationError && step == StepAttributeCollectionSubmit:
		action["@odata.type"] = ev.actionPrefix + "showValidationError"
		action["message"] = d.UserMessage
		errs := map[string]string{}
		for k, v := range d.AttributeErrors {
			errs[k] = v
		}
		action["attributeErrors"] = errs
	default:
		action["@odata.type"] = ev.actionPrefix + "showBlockPage"
		action["message"] = d.UserMessage
	}
	resp := map[string]any{"data": map[string]any{"@odata.type": ev.responseType, "actions": []any{action}}}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	if err := enc.Encode(resp); err != nil { // maps of strings, bools, int64 and []string cannot fail
		return ExtensionFailureStatus, []byte(`{"error":{"code":"ConnectorFailure"}}`)
	}
	return http.StatusOK, bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// returnedClaims merges Claims and ClaimValues; email is dropped at the attribute collection
// events (it is the sign-in identity, not an attribute the API may change).
func returnedClaims(d *Decision, dropEmail bool) map[string]any {
	out := make(map[string]any, len(d.Claims)+len(d.ClaimValues))
	for k, v := range d.Claims {
		out[k] = v
	}
	for k, v := range d.ClaimValues {
		out[k] = v
	}
	if dropEmail {
		delete(out, "email")
	}
	return out
}

// ExtensionRefusalBody is the body of a refused extension request (400, 405, 413, 415). Entra
// treats any status other than 200 as a failed call and stops the flow (fails closed).
func ExtensionRefusalBody(code int, message string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"code": strconv.Itoa(code), "message": message}})
	return b
}
