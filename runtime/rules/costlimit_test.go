package rules_test

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// doublingChain is n nested cel.bind, each doubling the previous string: on a 1 000-character
// claim the last string would hold 2^n thousand characters.
func doublingChain(n int) string {
	expr := "cel.bind(u0, claims.givenName, "
	for i := 1; i <= n; i++ {
		expr += fmt.Sprintf("cel.bind(u%d, u%d + u%d, ", i, i-1, i-1)
	}
	expr += fmt.Sprintf("size(u%d) > 0", n) + strings.Repeat(")", n+1)
	return expr
}

// replaceChain is n nested cel.bind, each doubling the x characters of the previous string.
func replaceChain(n int) string {
	expr := "cel.bind(a0, claims.givenName, "
	for i := 1; i <= n; i++ {
		expr += fmt.Sprintf("cel.bind(a%d, a%d.replace('x', 'xx'), ", i, i-1)
	}
	expr += fmt.Sprintf("size(a%d) > 0", n) + strings.Repeat(")", n+1)
	return expr
}

// maxAllocMiB bounds what a stopped expression may have allocated: ~15 MiB in these cases (the
// last string before the limit is ~10 million characters); the race detector's instrumentation
// allocates several times more. Without the limit they allocate hundreds of MiB or more.
var maxAllocMiB uint64 = 32

func costlySpec(policy, when string) string {
	return fmt.Sprintf("  step: PostAttributeCollection\n  failurePolicy: %s\n  rules:\n  - {name: costly, when: %q, block: {message: blocked}}\n", policy, when)
}

// Expressions whose worst case is beyond the limits are refused at compile time (the controller
// compiles exactly so), naming the field and the reason.
func TestCostEstimateRejectsExpensiveExpressions(t *testing.T) {
	for _, when := range []string{doublingChain(18), replaceChain(18),
		"cel.bind(a, claims.givenName.replace('', claims.givenName), a.replace('', claims.givenName).size() > 0)"} {
		_, err := rules.Compile(parse(t, costlySpec("Fail", when)), rules.Options{})
		if err == nil || !strings.Contains(err.Error(), `spec.rules[0].when (rule "costly"): estimated cost`) {
			t.Errorf("%.60s...: %v, want the estimate refused", when, err)
		}
	}
}

// Expressions that cost more than the runtime limit are stopped at request time, whatever their
// estimated cost, before they allocate without bound, and the connector's failure policy
// answers: chains the estimate would refuse (compiled here with the estimate's limit lifted) and
// an expression within the estimate whose claim is larger than the estimate assumes.
func TestCostLimitStopsExpensiveExpressionsAtRequestTime(t *testing.T) {
	for _, c := range []struct {
		name, when string
		claimSize  int
		opts       rules.Options
	}{
		{"doubling chain of 18", doublingChain(18), 1000, rules.Options{MaxEstimatedCost: math.MaxUint64}},
		{"doubling chain of 24", doublingChain(24), 1000, rules.Options{MaxEstimatedCost: math.MaxUint64}},
		{"replace chain of 18", replaceChain(18), 1000, rules.Options{MaxEstimatedCost: math.MaxUint64}},
		{"replace on a claim larger than assumed", "claims.givenName.replace('', claims.givenName).size() > 0", 4000, rules.Options{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, policy := range []string{"Fail", "Ignore"} {
				e := compile(t, costlySpec(policy, c.when), c.opts)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				d, err := e.Evaluate(context.Background(), request(t, map[string]any{"givenName": strings.Repeat("x", c.claimSize)}))
				runtime.ReadMemStats(&after)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(d.Failure, "cost limit") {
					t.Errorf("%s: failure %q, want the cost limit", policy, d.Failure)
				}
				want := entra.ActionShowBlockPage
				if policy == "Ignore" {
					want = entra.ActionContinue
				}
				if d.Action != want || d.Rule != "" {
					t.Errorf("%s: answered %s (rule %q), want %s from the failure policy", policy, d.Action, d.Rule, want)
				}
				if alloc := (after.TotalAlloc - before.TotalAlloc) >> 20; alloc > maxAllocMiB {
					t.Errorf("%s: allocated %d MiB before the limit stopped it", policy, alloc)
				}
			}
		})
	}
}
