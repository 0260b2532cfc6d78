package rules

import (
	"fmt"
	"runtime"
	"slices"
	"testing"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
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

// BenchmarkCollectWithList is what one collection costs with a compiled list of n entries held,
// against the same list as a Go map and slice of strings (how lists were held before). The
// runtime holds its lists for as long as it serves the connector, so every cycle pays this;
// on one CPU requests wait for it (hack/bench/results/runtime.md, "p99 at half load").
func BenchmarkCollectWithList(b *testing.B) {
	values := make([]string, MaxListEntries)
	for i := range values {
		values[i] = fmt.Sprintf("disposable-%05d.example", i)
	}
	held := map[string]func() any{
		"none":   func() any { return nil },
		"set":    func() any { return newStringSet(values) },
		"goMaps": func() any { return goMapList(values) },
	}
	for _, name := range []string{"none", "set", "goMaps"} {
		b.Run(name, func(b *testing.B) {
			v := held[name]()
			runtime.GC()
			for b.Loop() { // ns/op is the time of one collection
				runtime.GC()
			}
			runtime.KeepAlive(v)
		})
	}
}

// goMapList holds values as lists were held before stringSet: a Go map for membership and
// CEL's list over a []string, with strings of their own (as a ConfigMap's lines were).
func goMapList(values []string) any {
	set := make(map[string]struct{}, len(values))
	own := make([]string, len(values))
	for i, v := range values {
		own[i] = string([]byte(v))
		set[own[i]] = struct{}{}
	}
	return []any{set, types.NewStringList(types.DefaultTypeAdapter, own)}
}
