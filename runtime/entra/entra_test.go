package entra

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
)

func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustCanon(t *testing.T, b []byte) []byte {
	t.Helper()
	c, err := Canonicalize(b)
	if err != nil {
		t.Fatalf("canonicalize %s: %v", b, err)
	}
	return c
}

func TestGoldenRequest(t *testing.T) {
	req, err := DecodeRequest(readGolden(t, "request-postattributecollection.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.TrimSpace(readGolden(t, "request-postattributecollection.canonical.json"))
	if !bytes.Equal(req.Canonical(), want) {
		t.Errorf("Canonical =\n%s\nwant\n%s", req.Canonical(), want)
	}
	if got := req.Claims["step"]; got != "PostAttributeCollection" {
		t.Errorf("step = %v", got)
	}
	if got := req.Claims["extension_<extensions-app-id>_CustomAttribute1"]; got != "custom attribute value" {
		t.Errorf("extension claim = %v", got)
	}
	ids, ok := req.Claims["identities"].([]any)
	if !ok || len(ids) != 1 || ids[0].(map[string]any)["issuer"] != "facebook.com" {
		t.Errorf("identities = %#v", req.Claims["identities"])
	}
}

func TestGoldenResponses(t *testing.T) {
	for _, tc := range []struct {
		file   string
		d      Decision
		status int
	}{
		{"response-continue.json", Decision{Action: ActionContinue, Claims: map[string]string{
			"postalCode": "12349", "extension_<id>_CustomAttribute": "value"}}, 200},
		{"response-showblockpage.json", Decision{Action: ActionShowBlockPage,
			UserMessage: "There was a problem with your request. You are not able to sign up at this time."}, 200},
		{"response-validationerror.json", Decision{Action: ActionValidationError,
			UserMessage: "Please enter a valid Postal Code."}, 400},
	} {
		t.Run(tc.file, func(t *testing.T) {
			status, body := EncodeDecision(&tc.d)
			if status != tc.status {
				t.Errorf("status = %d, want %d", status, tc.status)
			}
			got, want := mustCanon(t, body), mustCanon(t, readGolden(t, tc.file))
			if !bytes.Equal(got, want) {
				t.Errorf("body =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestEncodeDecisionExactBytes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		d      *Decision
		status int
		want   string
	}{
		{"continue no claims", &Decision{Action: ActionContinue}, 200, `{"version":"1.0.0","action":"Continue"}`},
		{"continue sorted, email and reserved dropped", &Decision{Action: ActionContinue, Claims: map[string]string{
			"z": "1", "a": "2", "email": "x@y", "version": "9", "action": "ShowBlockPage", "status": "500", "userMessage": "m"}},
			200, `{"version":"1.0.0","action":"Continue","a":"2","z":"1"}`},
		{"block", &Decision{Action: ActionShowBlockPage, UserMessage: `Nope <b> & "quoted"`}, 200,
			`{"version":"1.0.0","action":"ShowBlockPage","userMessage":"Nope \u003cb\u003e \u0026 \"quoted\""}`},
		{"validation", &Decision{Action: ActionValidationError, UserMessage: "Bad postal code."}, 400,
			`{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"Bad postal code."}`},
		{"nil fails closed", nil, 200,
			`{"version":"1.0.0","action":"ShowBlockPage","userMessage":"` + DefaultFailureMessage + `"}`},
		{"unknown action fails closed", &Decision{Action: "Allow"}, 200,
			`{"version":"1.0.0","action":"ShowBlockPage","userMessage":"` + DefaultFailureMessage + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := EncodeDecision(tc.d)
			if status != tc.status || string(body) != tc.want {
				t.Errorf("got %d %s\nwant %d %s", status, body, tc.status, tc.want)
			}
			if !json.Valid(body) {
				t.Errorf("invalid JSON %s", body)
			}
		})
	}
}

func TestEncodeDecisionDeterministic(t *testing.T) {
	d := &Decision{Action: ActionContinue, Claims: map[string]string{}}
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h"} {
		d.Claims[k] = k
	}
	_, first := EncodeDecision(d)
	for range 50 {
		if _, b := EncodeDecision(d); !bytes.Equal(b, first) {
			t.Fatalf("not deterministic: %s vs %s", b, first)
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	for _, tc := range []struct {
		name      string
		body      string
		reason    string // DecodeError.Reason, or "" for a ClaimTypeError
		claim     string // ClaimTypeError.Claim
		canonical string // on success
	}{
		{name: "empty object", body: `{}`, canonical: `{}`},
		{name: "unknown keys and numbers kept", body: ` {"b": 1.50, "a": [true, null], "extension_x_n": 12345678901234567890} `,
			canonical: `{"a":[true,null],"b":1.50,"extension_x_n":12345678901234567890}`},
		{name: "html not escaped in canonical", body: `{"x":"<&>"}`, canonical: `{"x":"<&>"}`},
		{name: "empty body", body: ``, reason: "malformed_json"},
		{name: "truncated", body: `{"email":"a"`, reason: "malformed_json"},
		{name: "garbage", body: `{"email":}`, reason: "malformed_json"},
		{name: "trailing data", body: `{} {}`, reason: "malformed_json"},
		{name: "trailing garbage", body: `{}x`, reason: "malformed_json"},
		{name: "array", body: `[{"email":"a"}]`, reason: "not_object"},
		{name: "string", body: `"x"`, reason: "not_object"},
		{name: "null", body: `null`, reason: "not_object"},
		{name: "duplicate key", body: `{"email":"a","email":"b"}`, reason: "duplicate_key"},
		{name: "nested duplicate key", body: `{"identities":[{"issuer":"a","issuer":"b"}]}`, reason: "duplicate_key"},
		{name: "invalid utf8", body: "{\"city\":\"\xff\"}", reason: "invalid_utf8"},
		{name: "number out of range", body: `{"n":1e400}`, reason: "bad_number"},
		{name: "nested number out of range", body: `{"identities":[{"n":[-1e400]}]}`, reason: "bad_number"},
		// The claim types are checked first: the wrong claim is named, whatever the other errors.
		{name: "email number out of range", body: `{"n":1e400,"email":1e400}`, claim: "email"},
		{name: "too deep", body: `{"a":` + repeat("[", 40) + repeat("]", 40) + `}`, reason: "too_deep"},
		{name: "email number", body: `{"email":1}`, claim: "email"},
		{name: "email null", body: `{"email":null}`, claim: "email"},
		{name: "step bool", body: `{"step":true}`, claim: "step"},
		{name: "objectId object", body: `{"objectId":{}}`, claim: "objectId"},
		{name: "ui_locales array", body: `{"ui_locales":["en"]}`, claim: "ui_locales"},
		{name: "identities object", body: `{"identities":{}}`, claim: "identities"},
		{name: "identities of strings", body: `{"identities":["x"]}`, claim: "identities[0]"},
		{name: "identity issuer number", body: `{"identities":[{"issuer":"a"},{"issuer":3}]}`, claim: "identities[1].issuer"},
		{name: "identity extra fields kept", body: `{"identities":[{"issuer":"a","other":3}]}`,
			canonical: `{"identities":[{"issuer":"a","other":3}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := DecodeRequest([]byte(tc.body))
			switch {
			case tc.canonical != "":
				if err != nil {
					t.Fatal(err)
				}
				if string(req.Canonical()) != tc.canonical {
					t.Errorf("Canonical = %s, want %s", req.Canonical(), tc.canonical)
				}
			case tc.claim != "":
				var cte *ClaimTypeError
				if !errors.As(err, &cte) || cte.Claim != tc.claim {
					t.Fatalf("err = %v, want ClaimTypeError for %s", err, tc.claim)
				}
			default:
				var de *DecodeError
				if !errors.As(err, &de) || de.Reason != tc.reason {
					t.Fatalf("err = %#v, want DecodeError %s", err, tc.reason)
				}
			}
		})
	}
}

func TestDecodeNumbersAreFloat64(t *testing.T) {
	req, err := DecodeRequest([]byte(`{"n":3,"a":[1.5,{"m":2}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if req.Claims["n"] != float64(3) {
		t.Errorf("n = %#v", req.Claims["n"])
	}
	a := req.Claims["a"].([]any)
	if a[0] != 1.5 || a[1].(map[string]any)["m"] != float64(2) {
		t.Errorf("a = %#v", a)
	}
}

func TestCanonicalStableAcrossKeyOrder(t *testing.T) {
	a, err := DecodeRequest([]byte(`{"email":"a@b","city":"X","identities":[{"issuer":"i","signInType":"s"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeRequest([]byte("{\n \"identities\": [ {\"signInType\":\"s\", \"issuer\":\"i\"} ],\n \"city\": \"X\", \"email\": \"a@b\"}"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Canonical(), b.Canonical()) {
		t.Errorf("%s != %s", a.Canonical(), b.Canonical())
	}
}

func TestDecodeErrorsCarryNoValues(t *testing.T) {
	_, err := DecodeRequest([]byte(`{"email":12345}`))
	if err == nil || bytes.Contains([]byte(err.Error()), []byte("12345")) {
		t.Errorf("err = %v", err)
	}
}

func repeat(s string, n int) string {
	return string(bytes.Repeat([]byte(s), n))
}

// B2C's "before sending the token" step: both documented requests decode (the token enrichment
// page names the step PreTokenIssuance and sends client_id and objectId; the API connector page's
// example names it PreTokenApplicationClaims and sends clientId), and the documented
// continuation response is encoded.
func TestGoldenPreTokenIssuance(t *testing.T) {
	for file, want := range map[string]map[string]any{
		"request-pretokenissuance.json": {"step": "PreTokenIssuance", "client_id": "231c70e8-8424-48ac-9b5d-5623b9e4ccf3",
			"objectId": "ab3ec3b2-a435-45e4-b93a-56a005e88bb7"},
		"request-pretokenapplicationclaims.json": {"step": "PreTokenApplicationClaims", "clientId": "231c70e8-8424-48ac-9b5d-5623b9e4ccf3"},
	} {
		req, err := DecodeRequest(readGolden(t, file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for k, v := range want {
			if req.Claims[k] != v {
				t.Errorf("%s: %s = %v, want %v", file, k, req.Claims[k], v)
			}
		}
		if req.Claims["extension_<extensions-app-id>_CustomAttribute2"] != "custom attribute value" || req.Claims["displayName"] != "John Smith" {
			t.Errorf("%s: claims %v", file, req.Claims)
		}
		if s, ok := v1alpha1.StepFromWire(req.Claims["step"].(string)); !ok || s != v1alpha1.StepPreTokenIssuance {
			t.Errorf("%s: step %v is not PreTokenIssuance", file, req.Claims["step"])
		}
	}
	if _, err := DecodeRequest([]byte(`{"clientId":7}`)); err == nil {
		t.Error("clientId must be a string")
	}
	d := &Decision{Action: ActionContinue, Claims: map[string]string{"postalCode": "12349", "extension_<extensions-app-id>_CustomAttribute": "value"}}
	status, body := EncodeLegacyDecision(v1alpha1.StepPreTokenIssuance, d)
	if status != 200 || !bytes.Equal(mustCanon(t, body), mustCanon(t, readGolden(t, "response-pretokenissuance-continue.json"))) {
		t.Errorf("got %d %s", status, body)
	}
}

// At a step without a block page every answer but Continue is an error status without an
// action; elsewhere EncodeLegacyDecision is EncodeDecision.
func TestEncodeLegacyDecisionFailsWithErrorStatus(t *testing.T) {
	for _, d := range []*Decision{nil, {Action: ActionShowBlockPage}, {Action: ActionValidationError, UserMessage: "m"}, {Action: "Allow"}} {
		status, body := EncodeLegacyDecision(v1alpha1.StepPreTokenIssuance, d)
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil || status != LegacyFailureStatus || got["status"] != float64(500) || got["action"] != nil || got["userMessage"] == "" {
			t.Errorf("%+v: %d %s", d, status, body)
		}
	}
	d := &Decision{Action: ActionShowBlockPage, UserMessage: "m"}
	s1, b1 := EncodeLegacyDecision(v1alpha1.StepPostFederationSignup, d)
	s2, b2 := EncodeDecision(d)
	if s1 != s2 || !bytes.Equal(b1, b2) {
		t.Errorf("PostFederationSignup: %d %s", s1, b1)
	}
}
