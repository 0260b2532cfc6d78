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

	"github.com/go-json-experiment/json/jsontext"
)

// maxDepth bounds nesting in a request body. Entra's deepest value is identities[].{...} (depth 3);
// the bound keeps a hostile body from costing deep recursion.
const maxDepth = 32

// stringClaimNames are the claims Entra documents as strings. A value of another type is refused
// rather than coerced, so rules never see a surprise type for a documented claim. Sorted: with
// several wrong claims, the error names the first, the same one every time.
var stringClaimNames = []string{
	"city", "clientId", "client_id", "country", "displayName", "email", "givenName", "jobTitle", "objectId",
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
	p := parser{floats: true}
	claims, err := p.parseBody(body)
	if err != nil {
		return nil, err
	}
	if err := checkKnownTypes(claims); err != nil {
		return nil, err
	}
	if p.badNumber {
		return nil, errBadNumber
	}
	return &Request{Claims: claims, body: body}, nil
}

var errBadNumber = &DecodeError{Reason: "bad_number", Err: errors.New("a number is outside the range of a 64-bit float")}

// parser reads one body with jsontext (the JSON v2 tokenizer), which refuses duplicate keys at
// any depth and invalid UTF-8 itself; nesting deeper than maxDepth and anything after the object
// are refused here. Errors name what is wrong and where in the body, never a value.
type parser struct {
	dec *jsontext.Decoder
	// floats makes numbers float64 as they are read, else they stay json.Number (toClaims).
	// badNumber records one outside the float64 range (kept as json.Number), reported after the
	// claim types are checked so that a claim of the wrong type is named first.
	floats, badNumber bool
}

// parseBody checks and parses a body into one JSON object.
func (p *parser) parseBody(body []byte) (map[string]any, error) {
	if !utf8.Valid(body) {
		// encoding/json would silently replace bad bytes with U+FFFD; two different bodies would then
		// have the same claims, so refuse instead.
		return nil, &DecodeError{Reason: "invalid_utf8", Err: errors.New("body is not valid UTF-8")}
	}
	// A bytes.Buffer is parsed in place, without copying the body into the decoder's buffer.
	p.dec = jsontext.NewDecoder(bytes.NewBuffer(body))
	tok, err := p.readToken()
	if err != nil {
		return nil, err
	}
	if tok.Kind() != '{' {
		return nil, &DecodeError{Reason: "not_object", Err: ErrNotObject}
	}
	raw, err := p.readObject()
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.ReadToken(); err != io.EOF {
		return nil, &DecodeError{Reason: "malformed_json", Err: errors.New("data after the top-level object")}
	}
	return raw, nil
}

func (p *parser) readToken() (jsontext.Token, error) {
	tok, err := p.dec.ReadToken()
	switch {
	case err == nil:
		return tok, nil
	case errors.Is(err, jsontext.ErrDuplicateName):
		return tok, &DecodeError{Reason: "duplicate_key", Err: errors.New("an object has a key twice")}
	case err == io.EOF:
		return tok, &DecodeError{Reason: "malformed_json", Err: io.ErrUnexpectedEOF}
	}
	return tok, &DecodeError{Reason: "malformed_json", Err: fmt.Errorf("invalid JSON at byte %d", p.dec.InputOffset())}
}

// readValue reads the value tok starts.
func (p *parser) readValue(tok jsontext.Token) (any, error) {
	switch tok.Kind() {
	case '{', '[':
		if p.dec.StackDepth() > maxDepth {
			return nil, &DecodeError{Reason: "too_deep", Err: fmt.Errorf("nesting deeper than %d", maxDepth)}
		}
		if tok.Kind() == '{' {
			return p.readObject()
		}
		return p.readArray()
	case '"':
		return tok.String(), nil
	case '0':
		n := json.Number(tok.String())
		if !p.floats {
			return n, nil
		}
		f, err := toFloat(n)
		if err != nil {
			p.badNumber = true
			return n, nil
		}
		return f, nil
	case 't', 'f':
		return tok.Bool(), nil
	default: // 'n'
		return nil, nil
	}
}

func (p *parser) readObject() (map[string]any, error) {
	m := map[string]any{}
	for {
		tok, err := p.readToken()
		if err != nil {
			return nil, err
		}
		if tok.Kind() == '}' {
			return m, nil
		}
		key := tok.String()
		if tok, err = p.readToken(); err != nil {
			return nil, err
		}
		if m[key], err = p.readValue(tok); err != nil {
			return nil, err
		}
	}
}

func (p *parser) readArray() ([]any, error) {
	a := []any{}
	for {
		tok, err := p.readToken()
		if err != nil {
			return nil, err
		}
		if tok.Kind() == ']' {
			return a, nil
		}
		v, err := p.readValue(tok)
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

// toFloat converts a JSON number to float64, refusing one outside its range.
func toFloat(n json.Number) (float64, error) {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, errBadNumber
	}
	return f, nil
}

// toClaims converts json.Number to float64 throughout.
func toClaims(v any) (any, error) {
	switch t := v.(type) {
	case json.Number:
		return toFloat(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			c, err := toClaims(e)
			if err != nil {
				return nil, err // the one error there is, whichever number it is about
			}
			out[k] = c
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

// canonical re-encodes a JSON document compactly with object keys sorted and numbers and
// characters as sent (HTML characters are not escaped), so two deliveries of the same sign-up
// give the same bytes. It also refuses what parseBody refuses.
func canonical(doc []byte) ([]byte, error) {
	v := jsontext.Value(bytes.Clone(doc))
	if err := v.Format(jsontext.ReorderRawObjects(true)); err != nil {
		return nil, err
	}
	return v, nil
}

// Canonicalize re-encodes any JSON document as Request.Canonical is. It is meant for comparing
// documents (tests, tooling), not for request decoding.
func Canonicalize(doc []byte) ([]byte, error) {
	c, err := canonical(doc)
	if err != nil {
		return nil, fmt.Errorf("canonicalize: %w", err)
	}
	return c, nil
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
