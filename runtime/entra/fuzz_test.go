package entra

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// FuzzDecodeRequest: whatever the body, DecodeRequest returns a request or a *DecodeError /
// *ClaimTypeError without panicking, and an accepted body's canonical form decodes again to the
// same canonical form and claims.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `null`, `{"email":"a@b.c","city":"Oslo"}`, `{"a":1,"a":2}`, `{"a":1e400}`, "{\"a\":\"\xff\"}",
		`{"identities":[{"signInType":"federated","issuer":"facebook.com","issuerAssignedId":"1"}]}`,
		`{"identities":[1]}`, `{"email":null}`, `{"a":{"a":{"a":[[[[]]]]}}}`, `{"x":"<&>\u2028"}`, `{} {}`,
		`{"extension_0123456789abcdef0123456789abcdef_n":12345678901234567890}`,
		`{"clientId":"231c70e8-8424-48ac-9b5d-5623b9e4ccf3","step":"PreTokenApplicationClaims","objectId":"x"}`, `{"clientId":1}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeRequest(body)
		if err != nil {
			var de *DecodeError
			var ce *ClaimTypeError
			if !errors.As(err, &de) && !errors.As(err, &ce) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		again, err := DecodeRequest(req.Canonical())
		if err != nil {
			t.Fatalf("canonical form %s refused: %v", req.Canonical(), err)
		}
		if !bytes.Equal(again.Canonical(), req.Canonical()) {
			t.Fatalf("canonical form not stable: %s then %s", req.Canonical(), again.Canonical())
		}
		a, _ := json.Marshal(req.Claims)
		b, _ := json.Marshal(again.Claims)
		if !bytes.Equal(a, b) {
			t.Fatalf("claims differ after re-decoding: %s vs %s", a, b)
		}
	})
}

// FuzzEncodeDecision: every decision encodes to valid JSON with a status Entra understands, the
// user message and claims survive as encoding/json reads them, and email is never returned.
func FuzzEncodeDecision(f *testing.F) {
	f.Add("Continue", "", "givenName", "John")
	f.Add("ShowBlockPage", "<b>no</b>", "", "")
	f.Add("ValidationError", "bad \xff \u2028", "", "")
	f.Add("Continue", "", "email", "x@y")
	f.Add("Continue", "", "action", "Continue")
	f.Add("Allow", "m", "k", "v")
	f.Fuzz(func(t *testing.T, action, message, key, value string) {
		d := &Decision{Action: Action(action), UserMessage: message, Claims: map[string]string{key: value}}
		status, body := EncodeDecision(d)
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", body, err)
		}
		if got["version"] != Version {
			t.Fatalf("version missing: %s", body)
		}
		if _, ok := got["email"]; ok {
			t.Fatalf("email returned: %s", body)
		}
		wantMessage := asJSON(message)
		if message == "" {
			wantMessage = DefaultFailureMessage // Entra requires one
		}
		switch Action(action) {
		case ActionValidationError:
			if status != 400 || got["status"] != float64(400) || got["userMessage"] != wantMessage {
				t.Fatalf("%d %s", status, body)
			}
		case ActionShowBlockPage:
			if status != 200 || got["userMessage"] != wantMessage {
				t.Fatalf("%d %s", status, body)
			}
		case ActionContinue:
			if status != 200 || got["action"] != "Continue" {
				t.Fatalf("%d %s", status, body)
			}
			if !v1alpha1.IsReservedClaim(key) && got[asJSON(key)] != asJSON(value) {
				t.Fatalf("claim %q lost: %s", key, body)
			}
		default:
			if status != 200 || got["action"] != "ShowBlockPage" || got["userMessage"] != DefaultFailureMessage {
				t.Fatalf("unknown action not failed closed: %d %s", status, body)
			}
		}
		// At B2C's token step only Continue is a 200; anything else is an error status, no action.
		status, body = EncodeLegacyDecision(v1alpha1.StepPreTokenIssuance, d)
		got = nil
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", body, err)
		}
		if (Action(action) == ActionContinue) != (status == 200) || (status != 200 && (status != LegacyFailureStatus || got["action"] != nil)) {
			t.Fatalf("PreTokenIssuance %s: %d %s", action, status, body)
		}
	})
}

// asJSON is s as a JSON reader sees it after encoding/json wrote it (invalid UTF-8 replaced).
func asJSON(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

// FuzzDecodeExtensionRequest: whatever the body, DecodeExtensionRequest returns a request or a
// *DecodeError, *ClaimTypeError or *EventTypeError at every extension step without panicking; a
// decoded OnOtpSend request has both sensitive values and neither shows in Canonical, and the
// answer to any request is HTTP 200 or ExtensionFailureStatus with JSON.
func FuzzDecodeExtensionRequest(f *testing.F) {
	for _, name := range []string{"request-emailotpsend.json", "request-attributecollectionsubmit.json", "request-tokenissuancestart.json", "request-passwordsubmit.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", "golden", "extensions", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, seed := range []string{
		`{}`, `{"type":"microsoft.graph.authenticationEvent.emailOtpSend","data":{"@odata.type":"microsoft.graph.onOtpSendCalloutData","otpContext":{"identifier":"a@b","oneTimeCode":"00012345"}}}`,
		`{"type":"microsoft.graph.authenticationEvent.emailOtpSend","data":{"@odata.type":"microsoft.graph.onOtpSendCalloutData","otpContext":{"identifier":"a@b","oneTimeCode":1e999}}}`,
		`{"type":"microsoft.graph.authenticationEvent.emailOtpSend","data":{"@odata.type":"microsoft.graph.onOtpSendCalloutData","otpContext":[]}}`,
	} {
		f.Add([]byte(seed))
	}
	steps := []string{StepAttributeCollectionStart, StepAttributeCollectionSubmit, StepTokenIssuanceStart, StepOtpSend, StepPasswordSubmit}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, step := range steps {
			req, err := DecodeExtensionRequest(body, step)
			if err != nil {
				var de *DecodeError
				var ce *ClaimTypeError
				var et *EventTypeError
				if !errors.As(err, &de) && !errors.As(err, &ce) && !errors.As(err, &et) {
					t.Fatalf("%s: error of type %T: %v", step, err, err)
				}
				continue
			}
			if step == StepOtpSend {
				code, id := req.Extension.Sensitive["oneTimeCode"], req.Extension.Sensitive["identifier"]
				if code == "" || id == "" || len(req.Claims) != 0 {
					t.Fatalf("OTP request decoded without its values or with claims: %v", req.Claims)
				}
				canon := string(req.Canonical())
				if strings.Contains(canon, `"otpContext"`) || (len(code) >= 6 && strings.Contains(canon, code)) {
					t.Fatalf("canonical form holds the OTP context: %s", canon)
				}
			}
			if step == StepPasswordSubmit {
				if req.Extension.EncryptedPasswordContext == "" || strings.Contains(string(req.Canonical()), `"encryptedPasswordContext"`) {
					t.Fatalf("password context lost or in the canonical form: %s", req.Canonical())
				}
			}
			status, out := EncodeExtensionDecision(step, &Decision{Action: ActionContinue, Claims: map[string]string{"k": "v"}})
			if (status != 200 && status != ExtensionFailureStatus) || !json.Valid(out) {
				t.Fatalf("%s: %d %s", step, status, out)
			}
		}
	})
}

// FuzzDecryptPasswordContext: whatever the context (seeded with valid ones), decryption returns
// values or a *PasswordContextError, never panics, and an error never quotes the password.
func FuzzDecryptPasswordContext(f *testing.F) {
	k := rsaKeys(f)
	f.Add(sealPasswordContext(f, &k[0].PublicKey, jose.RSA_OAEP_256, testContext))
	f.Add(sealPasswordContext(f, &k[1].PublicKey, jose.RSA_OAEP, testContext))
	f.Add("{5-part-JWE}")
	f.Add("a.b.c.d.e")
	keys := []*rsa.PrivateKey{k[0], k[1]}
	f.Fuzz(func(t *testing.T, jwe string) {
		s, nonce, err := DecryptPasswordContext(jwe, keys)
		if err != nil {
			var pe *PasswordContextError
			if !errors.As(err, &pe) || strings.Contains(err.Error(), "C0rrect") {
				t.Fatalf("%T %v", err, err)
			}
			return
		}
		if nonce == "" || s["password"] == "" {
			t.Fatalf("decrypted without nonce or password")
		}
	})
}
