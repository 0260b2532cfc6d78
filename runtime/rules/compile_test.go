package rules_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/apiconnector/operator/runtime/rules"
)

func TestCompileErrors(t *testing.T) {
	const lists = `  lists:
  - name: big
    values: [a, b]
`
	tests := []struct {
		name, spec, path, reason string
	}{
		{"when not bool", "  step: PostAttributeCollection\n  rules:\n  - {name: r, when: 'size(claims.x)', block: {message: m}}\n",
			"spec.rules[0].when", "must evaluate to bool, but evaluates to int"},
		{"unknown variable", "  step: PostAttributeCollection\n  rules:\n  - {name: a, when: 'true', block: {message: m}}\n  - {name: r, when: 'foo == 1', block: {message: m}}\n",
			"spec.rules[1].when", "1:1: undeclared reference to 'foo'"},
		{"syntax error", "  step: PostAttributeCollection\n  rules:\n  - {name: r, when: 'claims.email ==', block: {message: m}}\n",
			"spec.rules[0].when", "Syntax error"},
		{"message not string", "  step: PostAttributeCollection\n  rules:\n  - {name: r, when: 'true', block: {messageExpression: '42'}}\n",
			"spec.rules[0].block.messageExpression", "must evaluate to string"},
		{"claim not string", "  step: PostAttributeCollection\n  claims:\n    givenName: 'size(claims.givenName)'\n",
			"spec.claims.givenName", "must evaluate to string or optional_type(string), but evaluates to int"},
		{"claim optional of int", "  step: PostAttributeCollection\n  claims:\n    givenName: 'optional.of(1)'\n",
			"spec.claims.givenName", "must evaluate to string or optional_type(string)"},
		{"call body not map", "  step: PostAttributeCollection\n  calls:\n  - {name: c, url: 'https://x.example', body: \"'x'\"}\n",
			"spec.calls[0].body", "must evaluate to map"},
		{"calls not in scope of calls", "  step: PostAttributeCollection\n  calls:\n  - {name: c, url: 'https://x.example', when: 'calls.c.status == 1'}\n",
			"spec.calls[0].when", "undeclared reference to 'calls'"},
		{"decision not in scope of rules", "  step: PostAttributeCollection\n  rules:\n  - {name: r, when: \"decision.action == 'x'\", block: {message: m}}\n",
			"spec.rules[0].when", "undeclared reference to 'decision'"},
		{"unknown call", "  step: PostAttributeCollection\n  rules:\n  - {name: r, when: 'calls.nope.status == 200', block: {message: m}}\n",
			"spec.rules[0].when", "calls.nope is not defined"},
		{"unknown list", "  step: PostAttributeCollection\n" + lists + "  rules:\n  - {name: r, when: \"'x' in lists.smal\", block: {message: m}}\n",
			"spec.rules[0].when", "lists.smal is not defined"},
		{"event when not bool", "  step: PostAttributeCollection\n  events:\n  - {name: a, sink: {url: 'https://s.example'}}\n  - {name: b, when: 'size(decision.claims)', sink: {url: 'https://s.example'}}\n",
			"spec.events[1].when", "must evaluate to bool, but evaluates to int"},
		{"too costly", "  step: PostAttributeCollection\n" + lists + "  rules:\n  - {name: r, when: 'lists.big.all(a, lists.big.all(b, a != b))', block: {message: m}}\n",
			"spec.rules[0].when", "estimated cost"},
		{"email claim", "  step: PostAttributeCollection\n  claims:\n    email: \"'x'\"\n",
			"spec.claims.email", "must not return email"},
		{"validationError at federation", "  step: PostFederationSignup\n  rules:\n  - {name: r, when: 'true', validationError: {message: m}}\n",
			"spec.rules[0].validationError", "only allowed at steps PostAttributeCollection and OnAttributeCollectionSubmit"},
		{"two outcomes", "  step: PostAttributeCollection\n  rules:\n  - {name: r, when: 'true', block: {message: m}, validationError: {message: m}}\n",
			"spec.rules[0]", "exactly one of block, validationError"},
		{"duplicate rule", "  step: PostAttributeCollection\n  rules:\n  - {name: r, when: 'true', block: {message: m}}\n  - {name: r, when: 'true', block: {message: m}}\n",
			"spec.rules[1].name", "duplicate name"},
		{"call credentials over http", "  step: PostAttributeCollection\n  calls:\n  - {name: c, url: 'http://approvals.example/x', auth: {type: Bearer, secretRef: {name: s}}}\n",
			"spec.calls[0].url", "sends credentials (auth) over plain http to approvals.example; use https"},
		{"sink credentials over http", "  step: PostAttributeCollection\n  events:\n  - {name: e, sink: {url: 'http://10.0.0.1/e', auth: {type: Basic, secretRef: {name: s}}}}\n",
			"spec.events[0].sink.url", "over plain http to 10.0.0.1"},
		{"unresolved configMapRef", "  step: PostAttributeCollection\n  lists:\n  - {name: l, configMapRef: {name: cm, key: k}}\n",
			"spec.lists[0].configMapRef", "not resolved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rules.Compile(parse(t, tc.spec), rules.Options{})
			wantFieldError(t, err, tc.path, tc.reason)
		})
	}
}

func TestCompileErrorsListsEveryProblem(t *testing.T) {
	_, err := rules.Compile(parse(t, `  step: PostAttributeCollection
  rules:
  - {name: a, when: 'nope', block: {message: m}}
  - {name: b, when: '1', block: {message: m}}
  claims:
    givenName: '1'
`), rules.Options{})
	var ce rules.CompileErrors
	if !errors.As(err, &ce) || len(ce) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	// Items are named as the user wrote them, not only by their index.
	for _, p := range []string{`spec.rules[0].when (rule "a"): `, `spec.rules[1].when (rule "b"): `, "spec.claims.givenName: "} {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error does not name %s:\n%v", p, err)
		}
	}
}

// Credentials may go over plain http only to in-cluster Services and loopback.
func TestCredentialsOverHTTPToClusterServices(t *testing.T) {
	for _, host := range []string{"approvals.identity.svc", "approvals.identity.svc.cluster.local", "127.0.0.1:8080", "localhost", "[::1]:80"} {
		spec := "  step: PostAttributeCollection\n  calls:\n  - {name: c, url: 'http://" + host + "/x', auth: {type: Bearer, secretRef: {name: s}}}\n"
		if err := rules.Validate(parse(t, spec)); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

func TestValidateAcceptsMinimal(t *testing.T) {
	if err := rules.Validate(parse(t, "  step: PostFederationSignup\n")); err != nil {
		t.Fatal(err)
	}
}
