package rules

import (
	"fmt"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"sigs.k8s.io/yaml"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// Every expression answers the same with the field reads replaced as with cel-go's own plan,
// value or error word for word, on the request's vars: the four shapes on present and absent
// fields of every variable, fields of the wrong type, names a comprehension or cel.bind shadows,
// selections from a replaced read, and shapes left to cel-go. And the shapes are found: a cel-go
// upgrade that plans them differently fails here rather than silently losing the fast path.
func TestFieldReadsMatchCEL(t *testing.T) {
	eng := compileForTest(t, `  step: PostAttributeCollection
  lists:
  - {name: domains, values: [a.example, b.example]}
`)
	app := testApp
	req := &entra.Request{Claims: map[string]any{
		"email": "Ann@A.example", "givenName": " ann ", "age": float64(30), "tags": []any{"x", "y"},
		"nested": map[string]any{"k": "v"}, app + "Loyalty": "gold", "client_id": "app-1",
		"identities": []any{map[string]any{"signInType": "federated", "issuer": "facebook.com"}},
	}}
	cases := []struct {
		expr  string
		reads int // replaced nodes
	}{
		{"claims.email", 1},
		{"claims.missing", 1},
		{"claims.email.lowerAscii() + claims.givenName.trim()", 2},
		{"claims.age + 1.0", 1},
		{"claims.age.lowerAscii()", 1},
		{"claims.tags[1]", 1},
		{"claims.tags[5]", 1},
		{"claims.nested.k", 1},
		{"claims.nested.missing", 1},
		{"claims.missing.k", 1},
		{"has(claims.email)", 1},
		{"has(claims.missing)", 1},
		{"has(claims.nested.k)", 1},
		{"has(claims.missing.k)", 1},
		{"claims.?email", 1},
		{"claims.?missing", 1},
		{"claims.?email.orValue('none')", 1},
		{"claims.?missing.orValue('none')", 1},
		{"claims.?age.orValue(0.0) + 1.0", 1},
		{"claims.?missing.orValue(claims.email)", 2},
		{"claims.?nested.k", 1},
		{"claims.?nested.?k.orValue('none')", 1},
		{"claims.?missing.?k.orValue('none')", 1},
		{"claims.extension_Loyalty", 1},
		{"has(claims.extension_Loyalty) && has(claims.extension_Missing)", 2},
		{"claims.?extension_Loyalty.orValue('') + claims.?extension_Missing.orValue('-')", 2},
		{"request.clientId + request.step", 2},
		{"request.nope", 1},
		{"identity.issuer", 1},
		{"identity.?signInType.orValue('') == 'federated'", 1},
		{"identity.?nope.orValue('x')", 1},
		{"claims.email.lowerAscii().substring(claims.email.indexOf('@') + 1) in lists.domains", 3},
		{"lists.domains.size()", 1},
		{"has(context.x)", 1},
		{"context.?x.orValue('y')", 1},
		// shadowed: the local variable answers, through cel-go's own plan
		{"[{'email': 'local'}].exists(claims, claims.email == 'local')", 1},
		{"[{'email': 1}].all(claims, has(claims.email) && !has(claims.x))", 2},
		{"cel.bind(claims, {'email': 'bound'}, claims.email + claims.?email.orValue(''))", 2},
		{"cel.bind(request, {'x': 'bound'}, request.?clientId.orValue('none') + request.x)", 2},
		// not replaced
		{"claims['email']", 0},
		{"claims[?'email'].orValue('')", 0},
		{"size(claims) > 3", 0},
		{"'email' in claims", 0},
	}
	env, err := newEnv(envRule)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		n := 0
		// Errors are compared by message only: reading a field of a missing claim
		// (claims.missing.k) fails at the replaced read, claims.missing, where cel-go's plan,
		// one attribute for the whole path, fails at claims.missing.k; messages do not show it.
		comparePlans(t, env, c.expr, false, func() *vars { return eng.newVars(req) }, func(ast *cel.Ast) cel.ProgramOption {
			var dec cel.ProgramOption
			dec, n = fieldReads(ast)
			return dec
		})
		if n != c.reads {
			t.Errorf("%s: %d reads found, want %d", c.expr, n, c.reads)
		}
	}
}

// comparePlans checks that expr answers the same through cel-go's own plan and through the plan
// with the option decorate returns for it: value, or error (and with atNode the node it is
// reported at); the decorated plan twice on the same vars (the second time from what the claims
// remember).
func comparePlans(t *testing.T, env *cel.Env, expr string, atNode bool, newVars func() *vars, decorate func(*cel.Ast) cel.ProgramOption) {
	t.Helper()
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("%s: %v", expr, iss.Err())
	}
	plain, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		t.Fatal(err)
	}
	fast, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), decorate(ast))
	if err != nil {
		t.Fatalf("%s: plan: %v", expr, err)
	}
	want := answer(plain, newVars(), atNode)
	v := newVars()
	for range 2 {
		if got := answer(fast, v, atNode); got != want {
			t.Errorf("%s = %s, want %s", expr, got, want)
		}
	}
}

// answer is what prg evaluates to on v, and with atNode for an error the node it is reported at.
func answer(prg cel.Program, v *vars, atNode bool) string {
	out, _, err := prg.Eval(v)
	if err == nil {
		return fmt.Sprintf("%v %v", out.Type(), valueString(out))
	}
	if e, ok := out.(*types.Err); ok && atNode {
		return fmt.Sprintf("error: %v at node %d", err, e.NodeID())
	}
	return "error: " + err.Error()
}

func valueString(v ref.Val) string {
	js, err := toJSON(v)
	return fmt.Sprintf("%v (JSON %s %v)", v.Value(), js, err)
}

// The compiled connector's expressions use the fast field reads and calls unless their cost is
// tracked.
func TestCompileUsesFastPathsUnlessCostIsTracked(t *testing.T) {
	spec := `  step: PostAttributeCollection
  rules:
  - {name: r, when: "has(claims.email) && claims.email.lowerAscii().substring(1) == 'x'", block: {message: m}}
`
	when := compileForTest(t, spec).rules[0].when
	if when.fieldReads != 2 || when.fastCalls != 2 {
		t.Errorf("%d field reads and %d calls planned, want 2 and 2", when.fieldReads, when.fastCalls)
	}
	tracked, err := Compile(parseForTest(t, spec), Options{AlwaysTrackCost: true})
	if err != nil {
		t.Fatal(err)
	}
	if when := tracked.rules[0].when; when.fieldReads != 0 || when.fastCalls != 0 {
		t.Errorf("with cost tracking %d field reads and %d calls planned, want none", when.fieldReads, when.fastCalls)
	}
}

// Of two extensions apps' attributes with the same name, the alias is the smaller full name's,
// whatever the map's order.
func TestExtensionAliasOfTwoApps(t *testing.T) {
	a, b := "extension_00000000000000000000000000000001_Tier", "extension_ffffffffffffffffffffffffffffffff_Tier"
	for range 20 {
		m := new(claimsMap)
		m.init(map[string]any{b: "from-b", a: "from-a", "email": "x"})
		v, ok := m.lookup("extension_Tier")
		if !ok || v != "from-a" {
			t.Fatalf("extension_Tier = %v %v, want from-a", v, ok)
		}
		if n := m.len(); n != 4 {
			t.Fatalf("size %d, want 4 (three claims and one alias)", n)
		}
	}
}

const testHeader = `apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: test, namespace: ns}
spec:
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
`

func parseForTest(t *testing.T, spec string) *v1alpha1.APIConnector {
	t.Helper()
	var conn v1alpha1.APIConnector
	if err := yaml.UnmarshalStrict([]byte(testHeader+spec), &conn); err != nil {
		t.Fatal(err)
	}
	return &conn
}

func compileForTest(t *testing.T, spec string) *Engine {
	t.Helper()
	e, err := Compile(parseForTest(t, spec), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}
