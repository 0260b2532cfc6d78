package entra

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden", "extensions", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExtensionGoldenRequests(t *testing.T) {
	for _, step := range []string{StepAttributeCollectionStart, StepAttributeCollectionSubmit} {
		t.Run(step, func(t *testing.T) {
			file := "request-attributecollection" + strings.ToLower(strings.TrimPrefix(step, "OnAttributeCollection")) + ".json"
			req, err := DecodeExtensionRequest(golden(t, file), step)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]any{
				"givenName":                          "Larissa Price",
				"companyName":                        "Contoso University",
				"extension_<appid>_universityGroups": "Alumni,Faculty",
				"extension_<appid>_graduationYear":   int64(2010),
				"extension_<appid>_onMailingList":    false,
				"email":                              "larissa.price@contoso.onmicrosoft.com",
				"identities": []any{map[string]any{
					"signInType": "email", "issuer": "contoso.onmicrosoft.com", "issuerAssignedId": "larissa.price@contoso.onmicrosoft.com",
				}},
			}
			if !reflect.DeepEqual(req.Claims, want) {
				t.Errorf("claims:\n got %#v\nwant %#v", req.Claims, want)
			}
			x := req.Extension
			if x == nil || x.TenantID != "aaaabbbb-0000-cccc-1111-dddd2222eeee" || x.ListenerID != "00001111-aaaa-2222-bbbb-3333cccc4444" ||
				x.ExtensionID != "11112222-bbbb-3333-cccc-4444dddd5555" || x.Context["protocol"] != "OAUTH2.0" {
				t.Fatalf("extension %+v", x)
			}
			wantTypes := map[string]AttributeType{
				"givenName": AttributeString, "companyName": AttributeString, "extension_<appid>_universityGroups": AttributeString,
				"extension_<appid>_graduationYear": AttributeInt64, "extension_<appid>_onMailingList": AttributeBoolean,
			}
			if !reflect.DeepEqual(x.AttributeTypes, wantTypes) {
				t.Errorf("attribute types %v", x.AttributeTypes)
			}
			if len(req.Canonical()) == 0 || strings.Contains(string(req.Canonical()), "\n") {
				t.Errorf("canonical %q", req.Canonical())
			}
		})
	}
	t.Run(StepTokenIssuanceStart, func(t *testing.T) {
		req, err := DecodeExtensionRequest(golden(t, "request-tokenissuancestart.json"), StepTokenIssuanceStart)
		if err != nil {
			t.Fatal(err)
		}
		if req.Claims["mail"] != "casey@contoso.com" || req.Claims["userType"] != "Member" || len(req.Claims) != 13 {
			t.Errorf("claims %v", req.Claims)
		}
		if u, _ := req.Extension.Context["user"].(map[string]any); u["id"] != "90847c2a-e29d-4d2f-9f54-c5b4d3f26471" {
			t.Errorf("context.user %v", u)
		}
	})
}

func TestExtensionGoldenResponses(t *testing.T) {
	prefill := &Decision{Action: ActionContinue, Claims: map[string]string{"key1": "value1,value2,value3"}, ClaimValues: map[string]any{"key2": true}}
	block := &Decision{Action: ActionShowBlockPage, UserMessage: "Your access request is already processing. You'll be notified when your request has been approved."}
	tests := []struct {
		step, file string
		d          *Decision
	}{
		{StepAttributeCollectionStart, "response-start-continue.json", &Decision{Action: ActionContinue}},
		{StepAttributeCollectionStart, "response-start-setprefillvalues.json", prefill},
		{StepAttributeCollectionStart, "response-start-showblockpage.json", block},
		{StepAttributeCollectionSubmit, "response-submit-continue.json", &Decision{Action: ActionContinue}},
		{StepAttributeCollectionSubmit, "response-submit-modifyattributevalues.json", prefill},
		{StepAttributeCollectionSubmit, "response-submit-showblockpage.json", block},
		{StepAttributeCollectionSubmit, "response-submit-showvalidationerror.json", &Decision{
			Action: ActionValidationError, UserMessage: "Please fix the below errors to proceed.",
			AttributeErrors: map[string]string{"city": "City cannot contain any numbers", "extension_<appid>_graduationYear": "Graduation year must be at least 4 digits"},
		}},
		{StepTokenIssuanceStart, "response-token-provideclaimsfortoken.json", &Decision{Action: ActionContinue,
			Claims: map[string]string{"DateOfBirth": "01/01/2000"}, ClaimValues: map[string]any{"CustomRoles": []string{"Writer", "Editor"}}}},
		{StepTokenIssuanceStart, "response-token-noclaims.json", &Decision{Action: ActionContinue}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			status, body := EncodeExtensionDecision(tt.step, tt.d)
			if status != http.StatusOK {
				t.Errorf("status %d", status)
			}
			got, err := Canonicalize(body)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Canonicalize(golden(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("\n got %s\nwant %s", got, want)
			}
		})
	}
}

func TestExtensionEncodingEdges(t *testing.T) {
	// A validation error at the start event has no showValidationError: it becomes a block page.
	_, b := EncodeExtensionDecision(StepAttributeCollectionStart, &Decision{Action: ActionValidationError, UserMessage: "m"})
	if !strings.Contains(string(b), "attributeCollectionStart.showBlockPage") {
		t.Errorf("start validation error: %s", b)
	}
	// Token issuance has no block page: failing closed is an error status.
	for _, d := range []*Decision{nil, {Action: ActionShowBlockPage, UserMessage: "m"}, {Action: "Bogus"}} {
		if status, _ := EncodeExtensionDecision(StepTokenIssuanceStart, d); status != ExtensionFailureStatus {
			t.Errorf("%+v: status %d", d, status)
		}
	}
	// email is never returned at the attribute collection events; an empty attributeErrors is {}.
	_, b = EncodeExtensionDecision(StepAttributeCollectionSubmit, &Decision{Action: ActionContinue, Claims: map[string]string{"email": "x@y", "city": "A"}})
	if strings.Contains(string(b), "email") || !strings.Contains(string(b), `"city":"A"`) {
		t.Errorf("submit continue: %s", b)
	}
	_, b = EncodeExtensionDecision(StepAttributeCollectionSubmit, &Decision{Action: ActionValidationError, UserMessage: "m"})
	if !strings.Contains(string(b), `"attributeErrors":{}`) {
		t.Errorf("validation error: %s", b)
	}
}

func TestExtensionDecodeErrors(t *testing.T) {
	env := func(typ, odata, attrs string) string {
		return `{"type":"` + typ + `","source":"/tenants/t","data":{"@odata.type":"` + odata + `","authenticationContext":{},"userSignUpInfo":{"attributes":{` + attrs + `}}}}`
	}
	submit, submitData := "microsoft.graph.authenticationEvent.attributeCollectionSubmit", "microsoft.graph.onAttributeCollectionSubmitCalloutData"
	tests := []struct {
		name, body, reason string
	}{
		{"start envelope at submit", env("microsoft.graph.authenticationEvent.attributeCollectionStart", submitData, ""), "event_type"},
		{"wrong data type", env(submit, "microsoft.graph.onAttributeCollectionStartCalloutData", ""), "event_type"},
		{"legacy body", `{"email":"a@b.example","step":"PostAttributeCollection"}`, "event_type"},
		{"int64 as string", env(submit, submitData, `"y":{"@odata.type":"microsoft.graph.int64DirectoryAttributeValue","value":"2010"}`), "claim_type"},
		{"int64 with fraction", env(submit, submitData, `"y":{"@odata.type":"microsoft.graph.int64DirectoryAttributeValue","value":20.5}`), "claim_type"},
		{"boolean as string", env(submit, submitData, `"b":{"@odata.type":"microsoft.graph.booleanDirectoryAttributeValue","value":"false"}`), "claim_type"},
		{"string as number", env(submit, submitData, `"s":{"@odata.type":"microsoft.graph.stringDirectoryAttributeValue","value":1}`), "claim_type"},
		{"duplicate key", `{"type":"a","type":"b"}`, "duplicate_key"},
		{"data not an object", `{"type":"` + submit + `","data":[]}`, "claim_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeExtensionRequest([]byte(tt.body), StepAttributeCollectionSubmit)
			var et *EventTypeError
			var ce *ClaimTypeError
			var de *DecodeError
			got := ""
			switch {
			case errors.As(err, &et):
				got = "event_type"
			case errors.As(err, &ce):
				got = "claim_type"
			case errors.As(err, &de):
				got = de.Reason
			}
			if got != tt.reason {
				t.Errorf("got %v (%s), want %s", err, got, tt.reason)
			}
		})
	}
	// Attributes without a value are absent from claims but keep their type.
	req, err := DecodeExtensionRequest([]byte(env(submit, submitData,
		`"city":{"@odata.type":"microsoft.graph.stringDirectoryAttributeValue","attributeType":"builtIn"},"tags":{"@odata.type":"microsoft.graph.stringDirectoryAttributeValue","value":["a","b"]}`)), StepAttributeCollectionSubmit)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := req.Claims["city"]; ok || req.Extension.AttributeTypes["city"] != AttributeString {
		t.Errorf("claims %v types %v", req.Claims, req.Extension.AttributeTypes)
	}
	if !reflect.DeepEqual(req.Claims["tags"], []any{"a", "b"}) {
		t.Errorf("multi-valued attribute %#v", req.Claims["tags"])
	}
}

func TestConvertAttribute(t *testing.T) {
	tests := []struct {
		typ  AttributeType
		in   any
		want any
		err  bool
	}{
		{AttributeInt64, "2010", int64(2010), false},
		{AttributeInt64, int64(7), int64(7), false},
		{AttributeInt64, "x", nil, true},
		{AttributeInt64, true, nil, true},
		{AttributeBoolean, "true", true, false},
		{AttributeBoolean, "yes", nil, true},
		{AttributeString, int64(5), "5", false},
		{AttributeString, false, "false", false},
		{AttributeString, []string{"a", "b"}, "a,b", false},
		{"", []string{"a"}, []string{"a"}, false},
	}
	for _, tt := range tests {
		got, err := ConvertAttribute(tt.typ, tt.in)
		if (err != nil) != tt.err || (!tt.err && !reflect.DeepEqual(got, tt.want)) {
			t.Errorf("ConvertAttribute(%s, %#v) = %#v, %v", tt.typ, tt.in, got, err)
		}
	}
}

// OnOtpSend: the documented request decodes with the code and the address in Sensitive only
// (no claims, and neither in Canonical), and the documented answer is continueWithDefaultBehavior.
func TestOtpSendGolden(t *testing.T) {
	req, err := DecodeExtensionRequest(golden(t, "request-emailotpsend.json"), StepOtpSend)
	if err != nil {
		t.Fatal(err)
	}
	x := req.Extension
	if len(req.Claims) != 0 || x.Context["requestType"] != "signUp" || x.TenantID != "ffff5f5f-aa6a-bb7b-cc8c-dddddd9d9d9d" {
		t.Errorf("claims %v, extension %+v", req.Claims, x)
	}
	if !reflect.DeepEqual(x.Sensitive, Sensitive{"identifier": "someone@example.com", "oneTimeCode": "12345678"}) {
		t.Errorf("sensitive values not decoded")
	}
	canon := string(req.Canonical())
	if strings.Contains(canon, "12345678") || strings.Contains(canon, "someone@example.com") || strings.Contains(canon, "otpContext") ||
		!strings.Contains(canon, `"requestType":"signUp"`) {
		t.Errorf("canonical %s", canon)
	}
	// Printed by mistake, the values still do not show.
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", x, x, x, x.Sensitive), logged(x.Sensitive)} {
		if strings.Contains(s, "12345678") || strings.Contains(s, "someone@example.com") {
			t.Errorf("printed: %s", s)
		}
	}
	for _, d := range []*Decision{{Action: ActionContinue}, {Action: ActionContinue, Claims: map[string]string{"a": "b"}}} {
		status, body := EncodeExtensionDecision(StepOtpSend, d)
		if status != http.StatusOK || string(mustCanon(t, body)) != string(mustCanon(t, golden(t, "response-otpsend-continue.json"))) {
			t.Errorf("%d %s", status, body)
		}
	}
	// No block page: failing closed is an error status, so Entra's behaviorOnError applies.
	for _, d := range []*Decision{nil, {Action: ActionShowBlockPage, UserMessage: "m"}, {Action: ActionValidationError}} {
		if status, body := EncodeExtensionDecision(StepOtpSend, d); status != ExtensionFailureStatus || !strings.Contains(string(body), "ConnectorFailure") {
			t.Errorf("%+v: %d %s", d, status, body)
		}
	}
}

func logged(v any) string {
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("x", "v", v)
	return b.String()
}

func TestOtpSendDecodeErrors(t *testing.T) {
	env := func(otp string) string {
		return `{"type":"microsoft.graph.authenticationEvent.emailOtpSend","data":{"@odata.type":"microsoft.graph.onOtpSendCalloutData"` + otp + `}}`
	}
	for name, body := range map[string]string{
		"no otpContext":          env(``),
		"otpContext not object":  env(`,"otpContext":"12345678"`),
		"no code":                env(`,"otpContext":{"identifier":"a@b.example"}`),
		"code a number":          env(`,"otpContext":{"identifier":"a@b.example","oneTimeCode":12345678}`),
		"empty code":             env(`,"otpContext":{"identifier":"a@b.example","oneTimeCode":""}`),
		"identifier null":        env(`,"otpContext":{"identifier":null,"oneTimeCode":"12345678"}`),
		"submit envelope at OTP": `{"type":"microsoft.graph.authenticationEvent.attributeCollectionSubmit","data":{}}`,
	} {
		_, err := DecodeExtensionRequest([]byte(body), StepOtpSend)
		var ce *ClaimTypeError
		var et *EventTypeError
		if !errors.As(err, &ce) && !errors.As(err, &et) {
			t.Errorf("%s: %v", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "12345678") {
			t.Errorf("%s: the error quotes the code: %v", name, err)
		}
	}
}
