package entra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// maxDepth bounds nesting in a request body. Entra's deepest value is identities[].{...} (depth 3);
// the bound keeps a hostile body from costing deep recursion.
const maxDepth = 32

// stringClaimNames are the claims Entra documents as strings. A value of another type is refused
// rather than coerced, so rules never see a surprise type for a documented claim. Sorted: with
// several wrong claims, the error names the first, the same one every time.
var stringClaimNames = []string{
	"city", "client_id", "country", "displayName", "email", "givenName", "jobTitle", "objectId",
	"postalCode", "state", "step", "streetAddress", "surname", "ui_locales",
}

// identityStringFields are the fields of an identities[] entry Entra documents as strings.
var identityStringFields = []string{"signInType", "issuer", "issuerAssignedId"}

// ErrNotObject is returned (wrapped in a *DecodeError) when the body is valid JSON but not an object.
var ErrNotObject = errors.New("request body is not a JSON object")

// DecodeError says why a body is not a well-formed request. It never carries claim values, so it is
// safe to log.
type DecodeError struct {
	Reason string // malformed_json, not_object, duplicate_key, too_deep, invalid_utf8, bad_number
	Err    error
}

func (e *DecodeError) Error() string { return "decode request: " + e.Err.Error() }
func (e *DecodeError) Unwrap() error { return e.Err }

// ClaimTypeError says a known claim has the wrong JSON type. It names the claim (a key Entra
// documents, so not user data) and the types, never the value.
type ClaimTypeError struct {
	Claim string // e.g. "email" or "identities[1].issuer"
	Want  string
	Got   string
}

func (e *ClaimTypeError) Error() string {
	return fmt.Sprintf("claim %s must be %s, got %s", e.Claim, e.Want, e.Got)
}

// DecodeRequest parses an API connector request body.
//
// Decisions (see docs/runtime.md):
//   - The body must be one UTF-8 JSON object with nothing after it.
//   - Duplicate keys, at any depth, are refused: parsers disagree on which one wins (first, last,
//     error), so a proxy or WAF in front of us could check a different value than the rules see.
//   - Numbers become float64 in Claims, as encoding/json would give and the Request type documents;
//     CEL compares int and double values across types, and Entra's own claims are all strings.
//     Canonical keeps the literal as sent, so no precision is lost in it. A number outside the
//     float64 range is refused.
//   - Unknown keys (extension_<appid>_<name> and anything new) are kept with their JSON types.
//   - Known claims must have their documented types; null is a wrong type, since Entra omits claims
//     without a value.
func DecodeRequest(body []byte) (*Request, error) {
	raw, err := parseBody(body)
	if err != nil {
		return nil, err
	}
	if err := checkKnownTypes(raw); err != nil {
		return nil, err
	}
	claims, err := toClaims(raw)
	if err != nil {
		return nil, err
	}
	canonical, err := canonicalJSON(raw)
	if err != nil {
		return nil, &DecodeError{Reason: "malformed_json", Err: err}
	}
	return &Request{Claims: claims.(map[string]any), Canonical: canonical}, nil
}

// parseBody checks and parses a body into one JSON object whose numbers are json.Number, token
// by token, so it refuses what it must as it meets it and names what is wrong: invalid UTF-8,
// anything after the object, duplicate keys, nesting deeper than maxDepth.
func parseBody(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		// encoding/json would silently replace bad bytes with U+FFFD; two different bodies would then
		// have the same claims, so refuse instead.
		return nil, &DecodeError{Reason: "invalid_utf8", Err: errors.New("body is not valid UTF-8")}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	p := parser{dec: dec}
	tok, err := p.token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &DecodeError{Reason: "not_object", Err: ErrNotObject}
	}
	raw, err := p.object(1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &DecodeError{Reason: "malformed_json", Err: errors.New("data after the top-level object")}
	}
	return raw, nil
}

type parser struct{ dec *json.Decoder }

func (p parser) token() (json.Token, error) {
	tok, err := p.dec.Token()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, &DecodeError{Reason: "malformed_json", Err: err}
	}
	return tok, nil
}

// value reads one JSON value whose first token is tok; numbers stay json.Number.
func (p parser) value(tok json.Token, depth int) (any, error) {
	switch t := tok.(type) {
	case json.Delim:
		if depth >= maxDepth {
			return nil, &DecodeError{Reason: "too_deep", Err: fmt.Errorf("nesting deeper than %d", maxDepth)}
		}
		if t == '{' {
			return p.object(depth + 1)
		}
		return p.array(depth + 1)
	default:
		return t, nil // string, json.Number, bool, nil
	}
}

func (p parser) object(depth int) (map[string]any, error) {
	m := map[string]any{}
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return m, nil
		}
		key, ok := tok.(string)
		if !ok { // cannot happen with encoding/json's tokenizer, kept for safety
			return nil, &DecodeError{Reason: "malformed_json", Err: errors.New("object key is not a string")}
		}
		if _, dup := m[key]; dup {
			return nil, &DecodeError{Reason: "duplicate_key", Err: errors.New("an object has a key twice")}
		}
		if tok, err = p.token(); err != nil {
			return nil, err
		}
		v, err := p.value(tok, depth)
		if err != nil {
			return nil, err
		}
		m[key] = v
	}
}

func (p parser) array(depth int) ([]any, error) {
	a := []any{}
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		if d, ok := tok.(json.Delim); ok && d == ']' {
			return a, nil
		}
		v, err := p.value(tok, depth)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
	}
}

func checkKnownTypes(m map[string]any) error {
	for _, k := range stringClaimNames {
		if v, present := m[k]; present {
			if _, ok := v.(string); !ok {
				return &ClaimTypeError{Claim: k, Want: "a string", Got: jsonType(v)}
			}
		}
	}
	ids, present := m["identities"]
	if !present {
		return nil
	}
	return checkIdentities(ids, "identities")
}

// checkIdentities checks an identities array: objects whose documented fields are strings.
func checkIdentities(ids any, path string) error {
	list, ok := ids.([]any)
	if !ok {
		return &ClaimTypeError{Claim: path, Want: "an array of objects", Got: jsonType(ids)}
	}
	for i, e := range list {
		obj, ok := e.(map[string]any)
		if !ok {
			return &ClaimTypeError{Claim: fmt.Sprintf("%s[%d]", path, i), Want: "an object", Got: jsonType(e)}
		}
		for _, f := range identityStringFields {
			if v, ok := obj[f]; ok {
				if _, ok := v.(string); !ok {
					return &ClaimTypeError{Claim: fmt.Sprintf("%s[%d].%s", path, i, f), Want: "a string", Got: jsonType(v)}
				}
			}
		}
	}
	return nil
}

// toClaims converts json.Number to float64 throughout.
func toClaims(v any) (any, error) {
	switch t := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(t), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, &DecodeError{Reason: "bad_number", Err: errors.New("a number is outside the range of a 64-bit float")}
		}
		return f, nil
	case map[string]any:
		out := make(map[string]any, len(t))
		var errKey string
		var firstErr error
		for k, e := range t {
			c, err := toClaims(e)
			if err != nil {
				// Report the smallest key's error, so a body with several bad numbers always
				// gets the same one whatever the map order.
				if firstErr == nil || k < errKey {
					errKey, firstErr = k, err
				}
				continue
			}
			out[k] = c
		}
		if firstErr != nil {
			return nil, firstErr
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			c, err := toClaims(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	default:
		return v, nil
	}
}

// canonicalJSON encodes v compactly with sorted object keys (encoding/json sorts map keys) and
// numbers as sent. HTML characters are not escaped, so Canonical stays close to the input.
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Canonicalize re-encodes any JSON document with sorted keys and no insignificant whitespace. It is
// meant for comparing documents (tests, tooling), not for request decoding.
func Canonicalize(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("canonicalize: data after the JSON value")
	}
	return canonicalJSON(v)
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut on a rune boundary so error text stays valid UTF-8.
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
