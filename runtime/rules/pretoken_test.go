package rules_test

import (
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// B2C's "before sending the token" step: rules see request.step as PreTokenIssuance whichever of
// the two documented names the request carries, and request.clientId from client_id or clientId.
func TestPreTokenIssuanceRequestVariables(t *testing.T) {
	e := compile(t, `  step: PreTokenIssuance
  claims:
    step: request.step
    client: request.clientId
`, rules.Options{})
	for _, claims := range []map[string]any{
		{"step": "PreTokenIssuance", "client_id": "231c70e8"},
		{"step": "PreTokenApplicationClaims", "clientId": "231c70e8"},
		{"clientId": "231c70e8"},
	} {
		d := eval(t, e, claims)
		if d.Action != entra.ActionContinue || d.Claims["step"] != "PreTokenIssuance" || d.Claims["client"] != "231c70e8" {
			t.Errorf("%v: %+v", claims, d)
		}
	}
}

// Rules cannot decide at the token step: it has neither a block page nor a validation error.
func TestPreTokenIssuanceRefusesRules(t *testing.T) {
	_, err := rules.Compile(parse(t, "  step: PreTokenIssuance\n  rules:\n  - {name: r, when: 'true', block: {message: m}}\n"), rules.Options{})
	wantFieldError(t, err, "spec.rules[0].block", "not allowed at step PreTokenIssuance")
	_, err = rules.Compile(parse(t, "  step: PreTokenIssuance\n  rules:\n  - {name: r, when: 'true', validationError: {message: m}}\n"), rules.Options{})
	wantFieldError(t, err, "spec.rules[0].validationError", "only allowed at steps PostAttributeCollection and OnAttributeCollectionSubmit")
	_, err = rules.Compile(parseExt(t, "  step: PreTokenIssuance\n"), rules.Options{})
	wantFieldError(t, err, "spec.authentication", "the legacy steps PostFederationSignup, PostAttributeCollection and PreTokenIssuance use basic")
	_, err = rules.Compile(parse(t, "  step: PreTokenApplicationClaims\n"), rules.Options{})
	wantFieldError(t, err, "spec.step", "must be one of")
}
