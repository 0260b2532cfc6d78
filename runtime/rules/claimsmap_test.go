package rules

import (
	"fmt"
	"maps"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// The claims variable without a copy answers every expression exactly as a copy of the claims
// with the aliases added (withExtensionAliases, the straightforward form) does, with and without
// extension attributes, and when the same claims are read again (from what it remembers).
const testApp = "extension_831374b3bd5041bfaa54263ec9e050fc_"

func TestClaimsMapAnswersLikeTheCopy(t *testing.T) {
	const app = testApp
	withExtensions := map[string]any{
		"email":              "a@b.example",
		app + "Loyalty":      "gold",
		app + "Year":         float64(1990),
		app + "Shadowed":     "long",
		"extension_Shadowed": "short", // sent under the short name too: it wins
		"identities":         []any{map[string]any{"issuer": "x"}},
	}
	plain := map[string]any{"email": "a@b.example", "givenName": "Ann", "age": float64(30), "tags": []any{"a"}}
	for name, claims := range map[string]map[string]any{"extension attributes": withExtensions, "plain": plain, "empty": {}} {
		t.Run(name, func(t *testing.T) { checkClaimsMapLikeCopy(t, claims) })
	}
}

func checkClaimsMapLikeCopy(t *testing.T, claims map[string]any) {
	const app = testApp
	exprs := []string{
		"claims.extension_Loyalty", "claims.extension_Year + 1.0", "claims.extension_Shadowed",
		"claims." + app + "Loyalty", "claims.email", "claims.missing", "claims.extension_Missing",
		"has(claims.extension_Loyalty)", "has(claims.extension_Missing)", "has(claims.email)",
		"claims.?extension_Loyalty.orValue('none')", "claims.?extension_Missing.orValue('none')",
		"claims['extension_Year']", "claims[?'extension_Year']", "claims['nope']",
		"'extension_Loyalty' in claims", "'extension_Nope' in claims", "'email' in claims", "dyn(1) in claims",
		"size(claims)", "claims.exists(k, k == 'extension_Loyalty')", "claims.all(k, k != 'x')",
		"claims.filter(k, k.startsWith('extension_')).size()", "claims.map(k, k).size()",
		"claims == {'email': 'a@b.example'}", "claims != {}", "[claims].size()",
		"claims.extension_Loyalty.upperAscii()", "dyn(claims).extension_Year > 1980.0",
		"'%s'.format([claims])", "optional.ofNonZeroValue(claims).hasValue()", "type(claims) == map",
		// more claims than it remembers, each read twice
		"claims.email + claims.email", "claims.extension_Loyalty + claims.extension_Loyalty",
		"[claims.?a, claims.?b, claims.?c, claims.?d, claims.?e, claims.?f, claims.?g, claims.?h, claims.?i, claims.?givenName, claims.?age, claims.?tags, claims.?email].size()",
		"claims.?givenName.orValue('') + claims.?givenName.orValue('')", "claims.?age.orValue(0.0) + claims.?age.orValue(0.0)",
		"claims.?tags.orValue([]) + claims.?tags.orValue([])", "has(claims.givenName) && claims.givenName == claims.givenName",
	}
	overlay := new(claimsMap).init(claims) // one for all expressions, as in a request
	copied := types.NewStringInterfaceMap(types.DefaultTypeAdapter, withExtensionAliases(claims))
	checkSameAnswers(t, "claims", overlay, copied, exprs)
}

// checkSameAnswers evaluates each expression with the variable name bound to subject, twice,
// and to reference, and wants the same answers; also the same JSON, as call and event bodies
// convert values.
func checkSameAnswers(t *testing.T, name string, subject, reference ref.Val, exprs []string) {
	t.Helper()
	env, err := newEnv(envRule)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range exprs {
		ast, iss := env.Compile(src)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		eval := func(v ref.Val) string {
			vars := map[string]any{
				"claims": emptyMap, "request": emptyMap, "identity": emptyMap, "lists": emptyMap,
				"context": emptyMap, "calls": emptyMap,
			}
			vars[name] = v
			act, _ := interpreter.NewActivation(vars)
			out, _, err := prg.Eval(act)
			if err != nil {
				return "error: " + err.Error()
			}
			js, err := toJSON(out)
			return fmt.Sprintf("%v %v JSON %v %v", out.Type(), out.Value(), js, err)
		}
		want := eval(reference)
		for range 2 {
			if got := eval(subject); got != want {
				t.Errorf("%s = %s, want %s", src, got, want)
			}
		}
	}
}

// The request variable answers like an ordinary CEL map of its three strings.
func TestFieldsMapAnswersLikeAMap(t *testing.T) {
	subject := new(fieldsMap).init(field{"step", "PostAttributeCollection"}, field{"clientId", "app-1"}, field{"uiLocales", ""})
	reference := types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{
		"step": "PostAttributeCollection", "clientId": "app-1", "uiLocales": "",
	})
	checkSameAnswers(t, "request", subject, reference, []string{
		"request", "request.step", "request.clientId + request.clientId", "request.uiLocales", "request.missing",
		"has(request.step)", "has(request.nope)", "request.?uiLocales.orValue('x')", "request.?nope.orValue('x')",
		"request['step']", "request[?'clientId']", "request['nope']", "dyn(request)[1]", "'step' in request", "'x' in request",
		"dyn(1) in request", "size(request)", "request.exists(k, k == 'step')", "request.map(k, k + '=' + request[k]).sort().join(',')",
		"request == {'step': 'PostAttributeCollection', 'clientId': 'app-1', 'uiLocales': ''}", "request != {}",
		"'%s'.format([request])", "optional.ofNonZeroValue(request).hasValue()", "type(request) == map",
		"{'r': request}.r.step", "[request, request][1] == request", "{'r': request} == {'r': request}",
	})
	empty := new(fieldsMap).init()
	checkSameAnswers(t, "request", empty, types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{}),
		[]string{"size(request)", "optional.ofNonZeroValue(request).hasValue()", "request == {}", "request.x"})
}

// withExtensionAliases adds extension_<Name> for every extension_<32 hex>_<Name> claim, so rules
// need not hard-code the tenant's extensions-app ID. The map is copied only when there is
// something to add; a claim the request itself sends under the short name wins.
func withExtensionAliases(claims map[string]any) map[string]any {
	var out map[string]any
	for k, v := range claims {
		short, ok := extensionAlias(k)
		if !ok {
			continue
		}
		if _, exists := claims[short]; exists {
			continue
		}
		if out == nil {
			out = maps.Clone(claims)
		}
		out[short] = v
	}
	if out == nil {
		if claims == nil {
			return map[string]any{}
		}
		return claims
	}
	return out
}
