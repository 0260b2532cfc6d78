package rules

import (
	"strings"
	"testing"

	"github.com/google/cel-go/cel"

	"github.com/apiconnector/operator/runtime/entra"
)

// Every call of fastStrings' overloads answers the same through fastCalls' nodes as through
// cel-go's own plan, value or error word for word: arguments of the declared types, errors in
// the receiver or an argument (the first in order wins), arguments of other types (cel-go's "no
// such overload"), errors of the functions themselves, inside comprehensions, and nested. The
// calls are found, so a cel-go upgrade that plans them differently fails here.
func TestFastCallsMatchCEL(t *testing.T) {
	eng := compileForTest(t, "  step: PostAttributeCollection\n")
	req := &entra.Request{Claims: map[string]any{
		"email": "Ann@A.example", "givenName": " ann ", "city": "Zürich", "age": float64(30),
		"tags": []any{"x", "y"}, "nested": map[string]any{"k": "v"},
	}}
	deep := "claims.age" + strings.Repeat(".trim()", 40) // exponential re-evaluation would never end
	cases := []struct {
		expr  string
		calls int
	}{
		{"claims.email.lowerAscii()", 1},
		{"claims.email.upperAscii() + claims.givenName.trim()", 2},
		{"claims.city.upperAscii() + claims.city.lowerAscii()", 2},
		{"claims.givenName.trim().substring(0, 1).upperAscii() + claims.givenName.trim().substring(1)", 5},
		{"claims.email.substring(claims.email.indexOf('@') + 1)", 2},
		{"claims.email.substring(claims.email.lastIndexOf('@'), 5)", 2},
		{"claims.city.substring(1, 3) + claims.city.substring(5)", 2},
		{"claims.email.indexOf('a', 2) + claims.email.lastIndexOf('A', 3)", 2},
		{"claims.city.indexOf('r', 1) + claims.city.lastIndexOf('ü', 2)", 2},
		// the functions' own errors
		{"claims.email.substring(40)", 1},
		{"claims.email.substring(-1)", 1},
		{"claims.email.substring(3, 1)", 1},
		{"claims.email.indexOf('a', -1)", 1},
		{"claims.city.lastIndexOf('z', -2)", 1},
		// errors in the receiver or an argument
		{"claims.missing.trim()", 1},
		{"claims.email.substring(claims.missing)", 1},
		{"claims.missing.substring(claims.alsoMissing)", 1},
		{"claims.email.substring(1, claims.missing)", 1},
		{"claims.email.substring(1 / 0, claims.missing)", 1},
		// arguments of other types
		{"claims.age.trim()", 1},
		{"claims.tags.lowerAscii()", 1},
		{"claims.nested.upperAscii()", 1},
		{"claims.email.substring(claims.age)", 1},
		{"claims.email.indexOf(claims.age)", 1},
		{"claims.email.indexOf(claims.tags, 1)", 1},
		{"claims.email.substring(1, claims.nested)", 1},
		{deep, 40},
		{"has(claims.age) && claims.age.upperAscii() == ''", 1},
		// in comprehensions and cel.bind
		{"claims.tags.map(t, t.upperAscii())", 1},
		{"claims.tags.exists(t, t.substring(0, 1) == 'y')", 1},
		{"[1, 'a'].map(v, v.trim())", 1},
		{"cel.bind(s, claims.email, s.lowerAscii().substring(s.indexOf('@')))", 3},
		// replaced, then folded into a constant by cel-go's optimizer, which evaluates it
		{"'ABC'.lowerAscii()", 1},
	}
	env, err := newEnv(envRule)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		n := 0
		comparePlans(t, env, c.expr, true, func() *vars { return eng.newVars(req) }, func(*cel.Ast) cel.ProgramOption { return fastCalls(&n) })
		if n != c.calls {
			t.Errorf("%s: %d calls replaced, want %d", c.expr, n, c.calls)
		}
	}
}
