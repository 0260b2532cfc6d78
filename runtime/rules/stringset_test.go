package rules

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// listsVar is the lists variable holding one list, l.
func listsVar(l ref.Val) ref.Val {
	return types.NewRefValMap(types.DefaultTypeAdapter, map[ref.Val]ref.Val{types.String("l"): l})
}

// A list answers every question like CEL's own list of the same strings.
func TestStringSetAnswersLikeAList(t *testing.T) {
	exprs := []string{
		"lists.l", "size(lists.l)", "lists.l[0]", "lists.l[3]", "lists.l[4]", "lists.l[-1]", "dyn(lists.l)[1u]",
		"dyn(lists.l)[1.0]", "dyn(lists.l)['x']", "'b.example' in lists.l", "'B.example' in lists.l", "'' in lists.l",
		"'a' in lists.l", "'ä.example' in lists.l", "dyn(1) in lists.l", "lists.l.exists(e, e.endsWith('.org'))",
		"lists.l.all(e, e != '')", "lists.l.filter(e, e.startsWith('b'))", "lists.l.map(e, size(e))",
		"lists.l == ['a.example', 'b.example', 'ä.example', 'b.example', '']", "lists.l != []", "lists.l == dyn(lists.l)",
		"[lists.l] == [lists.l]", "lists.l + ['z']", "['z'] + lists.l", "lists.l.join(',')", "'%s'.format([lists.l])",
		"optional.ofNonZeroValue(lists.l).hasValue()", "type(lists.l) == list", "lists.l.exists_one(e, e == 'b.example')",
		"{'x': lists.l}.x[2]", "lists.?l.orValue([]).size()", "lists.l.size() > 3",
	}
	values := []string{"a.example", "b.example", "ä.example", "b.example", ""}
	checkSameAnswers(t, "lists", listsVar(newStringSet(values)), listsVar(types.NewStringList(types.DefaultTypeAdapter, values)), exprs)

	empty := []string{}
	checkSameAnswers(t, "lists", listsVar(newStringSet(empty)), listsVar(types.NewStringList(types.DefaultTypeAdapter, empty)), []string{
		"size(lists.l)", "'' in lists.l", "lists.l[0]", "lists.l == []", "optional.ofNonZeroValue(lists.l).hasValue()",
		"lists.l.exists(e, true)", "lists.l + ['a']",
	})
}

// Every entry is found and nothing else is, with lists whose hash tables are full to their
// limit, duplicates included.
func TestStringSetMembership(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 4, 7, 8, 9, 100, 1000, MaxListEntries} {
		values := make([]string, n)
		for i := range values {
			values[i] = fmt.Sprintf("entry-%d.example", i%(n/2+1)) // about half are duplicates
		}
		s := newStringSet(values)
		if got := s.Size(); got != types.Int(n) {
			t.Fatalf("n=%d: size %v", n, got)
		}
		for i, v := range values {
			if s.Contains(types.String(v)) != types.True {
				t.Fatalf("n=%d: %q not found", n, v)
			}
			if got := s.Get(types.Int(i)); got != types.String(v) {
				t.Fatalf("n=%d: [%d] = %v, want %q", n, i, got, v)
			}
		}
		for _, v := range []string{"", "entry-", fmt.Sprintf("entry-%d.example", n), "ENTRY-0.example", "entry-0.example "} {
			if n > 0 && v == "" {
				continue
			}
			if slices.Contains(values, v) {
				continue
			}
			if s.Contains(types.String(v)) != types.False {
				t.Fatalf("n=%d: %q found", n, v)
			}
		}
	}
}

// checkSameAnswers evaluates each expression with the variable name bound to subject and to
// reference and wants the same answer (value, type and JSON form, or the same error).
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
		if got, want := eval(subject), eval(reference); got != want {
			t.Errorf("%s = %s, want %s", src, got, want)
		}
	}
}
