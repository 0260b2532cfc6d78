package rules

import (
	"fmt"
	"maps"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// The claims variable without a copy answers every expression exactly as a copy of the claims
// with the aliases added (withExtensionAliases, the straightforward form) does.
func TestClaimsMapAnswersLikeTheCopy(t *testing.T) {
	const app = "extension_831374b3bd5041bfaa54263ec9e050fc_"
	claims := map[string]any{
		"email":              "a@b.example",
		app + "Loyalty":      "gold",
		app + "Year":         float64(1990),
		app + "Shadowed":     "long",
		"extension_Shadowed": "short", // sent under the short name too: it wins
		"identities":         []any{map[string]any{"issuer": "x"}},
	}
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
	}
	env, err := newEnv(envRule)
	if err != nil {
		t.Fatal(err)
	}
	overlay := newClaimsVal(claims)
	if _, ok := overlay.(*claimsMap); !ok {
		t.Fatalf("claims with extension attributes gave %T, want *claimsMap", overlay)
	}
	copied := types.NewStringInterfaceMap(types.DefaultTypeAdapter, withExtensionAliases(claims))
	for _, src := range exprs {
		ast, iss := env.Compile(src)
		if iss.Err() != nil {
			t.Fatalf("%s: %v", src, iss.Err())
		}
		prg, err := env.Program(ast)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		eval := func(claims any) string {
			act, _ := interpreter.NewActivation(map[string]any{
				"claims": claims, "request": emptyMap, "identity": emptyMap, "lists": emptyMap,
				"context": emptyMap, "calls": emptyMap,
			})
			out, _, err := prg.Eval(act)
			if err != nil {
				return "error: " + err.Error()
			}
			return fmt.Sprintf("%v %v", out.Type(), out.Value())
		}
		if got, want := eval(overlay), eval(copied); got != want {
			t.Errorf("%s = %s, the copy gives %s", src, got, want)
		}
	}
	// Without extension attributes nothing is wrapped.
	if _, ok := newClaimsVal(map[string]any{"email": "x"}).(*claimsMap); ok {
		t.Error("claims without extension attributes wrapped")
	}
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
