package rules_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

const extHeader = `apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: test, namespace: ns}
spec:
  authentication: {bearer: {tenantId: aaaabbbb-0000-cccc-1111-dddd2222eeee, audience: app}}
  exposure: {host: signup.contoso.example}
`

func parseExt(t *testing.T, spec string) *v1alpha1.APIConnector {
	t.Helper()
	b, err := connfile.Parse("test.yaml", []byte(extHeader+spec))
	if err != nil {
		t.Fatal(err)
	}
	return b.Connectors[0]
}

func extRequest(t *testing.T, step string, data map[string]any) *entra.Request {
	t.Helper()
	calloutTypes := map[string]string{
		entra.StepAttributeCollectionStart:  "microsoft.graph.onAttributeCollectionStartCalloutData",
		entra.StepAttributeCollectionSubmit: "microsoft.graph.onAttributeCollectionSubmitCalloutData",
		entra.StepTokenIssuanceStart:        "microsoft.graph.onTokenIssuanceStartCalloutData",
	}
	data["@odata.type"] = calloutTypes[step]
	body, _ := json.Marshal(map[string]any{"type": entra.EventType(step), "source": "/tenants/t", "data": data})
	req, err := entra.DecodeExtensionRequest(body, step)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func attr(typ string, v any) map[string]any {
	return map[string]any{"@odata.type": "microsoft.graph." + typ + "DirectoryAttributeValue", "value": v}
}

func TestExtensionSubmit(t *testing.T) {
	e, err := rules.Compile(parseExt(t, `  step: OnAttributeCollectionSubmit
  rules:
  - name: year
    when: "claims.extension_Year < 1950"
    validationError: {attribute: extension_Year, message: too old}
  - name: ip
    when: "context.client.ip == '198.51.100.1'"
    block: {message: blocked}
  claims:
    extension_Year: "'2001'"
    extension_Member: "claims.extension_Year > 2000"
    city: "request.uiLocales + '/' + request.clientId + '/' + request.step"
`), rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	if e.Timeout() != 1500*time.Millisecond {
		t.Errorf("timeout %s", e.Timeout())
	}
	data := func(year int, ip string) map[string]any {
		return map[string]any{
			"authenticationContext": map[string]any{"client": map[string]any{"ip": ip, "locale": "nl-nl"}, "clientServicePrincipal": map[string]any{"appId": "app-1"}},
			"userSignUpInfo": map[string]any{"attributes": map[string]any{
				"extension_831374b3bd5041bfaa54263ec9e050fc_Year":   attr("int64", year),
				"extension_831374b3bd5041bfaa54263ec9e050fc_Member": attr("boolean", false),
				"city": attr("string", "x"),
			}},
		}
	}
	d, _ := e.Evaluate(context.Background(), extRequest(t, entra.StepAttributeCollectionSubmit, data(1900, "203.0.113.1")))
	if d.Action != entra.ActionValidationError || !reflect.DeepEqual(d.AttributeErrors, map[string]string{"extension_831374b3bd5041bfaa54263ec9e050fc_Year": "too old"}) {
		t.Errorf("validation error %+v", d)
	}
	d, _ = e.Evaluate(context.Background(), extRequest(t, entra.StepAttributeCollectionSubmit, data(2010, "198.51.100.1")))
	if d.Action != entra.ActionShowBlockPage || d.Rule != "ip" {
		t.Errorf("context rule %+v", d)
	}
	d, _ = e.Evaluate(context.Background(), extRequest(t, entra.StepAttributeCollectionSubmit, data(2010, "203.0.113.1")))
	// The short aliases go back under the full attribute names, converted to the attribute types.
	wantValues := map[string]any{"extension_831374b3bd5041bfaa54263ec9e050fc_Year": int64(2001), "extension_831374b3bd5041bfaa54263ec9e050fc_Member": true}
	if d.Action != entra.ActionContinue || !reflect.DeepEqual(d.ClaimValues, wantValues) || d.Claims["city"] != "nl-nl/app-1/OnAttributeCollectionSubmit" {
		t.Errorf("continue %+v", d)
	}
}

func TestExtensionConversionFailureFollowsPolicy(t *testing.T) {
	for _, policy := range []string{"Fail", "Ignore"} {
		e, err := rules.Compile(parseExt(t, "  step: OnAttributeCollectionStart\n  failurePolicy: "+policy+"\n  claims:\n    year: \"'soon'\"\n"), rules.Options{})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := e.Evaluate(context.Background(), extRequest(t, entra.StepAttributeCollectionStart, map[string]any{
			"userSignUpInfo": map[string]any{"attributes": map[string]any{"year": attr("int64", nil)}},
		}))
		e.Close(context.Background())
		if !strings.Contains(d.Failure, "not an integer") {
			t.Errorf("%s: failure %q", policy, d.Failure)
		}
		if want := map[string]entra.Action{"Fail": entra.ActionShowBlockPage, "Ignore": entra.ActionContinue}[policy]; d.Action != want || len(d.ClaimValues) != 0 {
			t.Errorf("%s: %+v", policy, d)
		}
	}
}

func TestExtensionClaimTypes(t *testing.T) {
	tests := []struct {
		step, expr string
		ok         bool
	}{
		{"OnTokenIssuanceStart", "['a', 'b']", true},
		{"OnTokenIssuanceStart", "optional.of(['a'])", true},
		{"OnTokenIssuanceStart", "true", false},
		{"OnTokenIssuanceStart", "1", false},
		{"OnAttributeCollectionSubmit", "1", true},
		{"OnAttributeCollectionSubmit", "true", true},
		{"OnAttributeCollectionSubmit", "{'a': 1}", false},
		{"OnAttributeCollectionSubmit", "[1, 2]", false},
	}
	for _, tt := range tests {
		_, err := rules.Compile(parseExt(t, "  step: "+tt.step+"\n  claims:\n    c: \""+tt.expr+"\"\n"), rules.Options{})
		if (err == nil) != tt.ok {
			t.Errorf("%s %s: %v", tt.step, tt.expr, err)
		}
	}
	// Legacy steps keep string claims only.
	if _, err := rules.Compile(parse(t, "  step: PostAttributeCollection\n  claims:\n    c: \"['a']\"\n"), rules.Options{}); err == nil {
		t.Error("list claim accepted at PostAttributeCollection")
	}
}

func TestExtensionStructuralChecks(t *testing.T) {
	tests := []struct {
		name, spec, path, reason string
		bearer                   bool
	}{
		{"basic at an extension step", "  step: OnAttributeCollectionSubmit\n", "spec.authentication", "authenticate with bearer", false},
		{"bearer at a legacy step", "  step: PostAttributeCollection\n", "spec.authentication", "bearer authentication is only for custom authentication extension steps", true},
		{"validationError at start", "  step: OnAttributeCollectionStart\n  rules:\n  - {name: r, when: 'true', validationError: {message: m}}\n",
			"spec.rules[0].validationError", "only allowed at steps PostAttributeCollection and OnAttributeCollectionSubmit", true},
		{"block at token issuance", "  step: OnTokenIssuanceStart\n  rules:\n  - {name: r, when: 'true', block: {message: m}}\n",
			"spec.rules[0].block", "not allowed at step OnTokenIssuanceStart", true},
		{"attribute on block", "  step: OnAttributeCollectionSubmit\n  rules:\n  - {name: r, when: 'true', block: {message: m, attribute: city}}\n",
			"spec.rules[0].block", "attribute is only allowed on validationError", true},
		{"tenant not a GUID", "  step: OnAttributeCollectionSubmit\n", "spec.authentication.bearer.tenantId", "must be a GUID", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conn *v1alpha1.APIConnector
			if tt.bearer {
				conn = parseExt(t, tt.spec)
			} else {
				conn = parse(t, tt.spec)
			}
			if tt.name == "tenant not a GUID" {
				conn.Spec.Authentication.Bearer.TenantID = "contoso"
			}
			wantFieldError(t, rules.Validate(conn), tt.path, tt.reason)
		})
	}
}

func TestExtensionBudgetWarnings(t *testing.T) {
	e, err := rules.Compile(parseExt(t, `  step: OnTokenIssuanceStart
  calls:
  - {name: slow, url: 'https://x.example', timeout: 2s, failurePolicy: Ignore}
  - {name: quick, url: 'https://y.example', timeout: 500ms}
`), rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	w := strings.Join(e.Warnings(), "\n")
	if !strings.Contains(w, "call slow may take 2s") || !strings.Contains(w, "1.5s deadline") {
		t.Errorf("warnings: %q", w)
	}
	e2, err := rules.Compile(parseExt(t, "  step: OnTokenIssuanceStart\n  calls:\n  - {name: quick, url: 'https://y.example', timeout: 500ms}\n"), rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close(context.Background())
	if len(e2.Warnings()) != 0 {
		t.Errorf("unexpected warnings %v", e2.Warnings())
	}
	e3 := compile(t, "  step: PostAttributeCollection\n  calls:\n  - {name: slow, url: 'https://x.example', timeout: 10s}\n", rules.Options{})
	if len(e3.Warnings()) != 0 {
		t.Errorf("legacy steps have no budget warnings: %v", e3.Warnings())
	}
}
