package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// FuzzDecodeAndServe feeds arbitrary bodies and content types through the real handler (auth,
// decoding, evaluation, encoding). Whatever comes in, the answer is never a 5xx, never a panic,
// and every JSON answer is valid JSON; a body DecodeRequest accepts is answered 200 or 400 by
// the evaluator.
func FuzzDecodeAndServe(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[]`, `null`, `{"email":"a@b.c","city":"Oslo"}`,
		`{"identities":[{"signInType":"federated","issuer":"facebook.com","issuerAssignedId":"1"}]}`,
		`{"email":1}`, `{"a":1e400}`, `{"a":"\ud800"}`, `{"a":{"a":{"a":[[[[]]]]}}}`, `{"x":"<&>"}`,
		`{"step":"PostAttributeCollection","extension_x_n":12345678901234567890}`, `{"a":1,"a":2}`, "{\"a\":\"\xff\"}",
	} {
		f.Add([]byte(seed), "application/json")
	}
	f.Add([]byte(`{}`), "application/json; charset=utf-8")
	f.Add([]byte(`{}`), "text/plain")

	// The evaluator echoes string claims back and picks an action from the body's shape, so all
	// three answers and the PostFederationSignup downgrade are reached.
	ev := evalFunc(func(_ context.Context, req *entra.Request) (*entra.Decision, error) {
		claims := map[string]string{}
		for k, v := range req.Claims {
			if s, ok := v.(string); ok {
				claims[k] = s
			}
		}
		switch len(req.Canonical()) % 4 {
		case 0:
			return &entra.Decision{Action: entra.ActionValidationError, UserMessage: string(req.Canonical())}, nil
		case 1:
			return &entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: string(req.Canonical())}, nil
		case 2:
			panic("fuzz panic")
		}
		return &entra.Decision{Action: entra.ActionContinue, Claims: claims}, nil
	})
	secrets := basicSecrets(f, testUser, testPass)
	handlers := []http.Handler{}
	for _, step := range []v1alpha1.Step{pac, pfs} {
		s, err := New(basicConnector(step), ev, Options{SecretsDir: secrets, MaxBody: 4096})
		if err != nil {
			f.Fatal(err)
		}
		handlers = append(handlers, s.Handler())
	}

	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		_, decodeErr := entra.DecodeRequest(body)
		for _, h := range handlers {
			req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req.Header.Set("Content-Type", contentType)
			req.SetBasicAuth(testUser, testPass)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("status %d for %q", rec.Code, body)
			}
			if rec.Body.Len() > 0 && !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("invalid JSON answer %q", rec.Body.Bytes())
			}
			if isJSON(contentType) && len(body) <= 4096 && decodeErr == nil && rec.Code != 200 && rec.Code != 400 {
				t.Fatalf("decodable body answered %d", rec.Code)
			}
			var answer map[string]any
			if json.Unmarshal(rec.Body.Bytes(), &answer) == nil {
				if _, ok := answer["email"]; ok {
					t.Fatalf("email returned: %s", rec.Body.Bytes())
				}
			}
		}
	})
}
