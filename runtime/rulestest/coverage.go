package rulestest

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/apiconnector/operator/runtime/connfile"
)

// CoverageItem is one rule or claim of a connector and the cases that exercised it.
type CoverageItem struct {
	Connector string
	Kind      string // "rule" or "claim"
	Name      string
	// Audit marks a rule in Audit enforcement (or of a connector in Audit).
	Audit bool
	// Cases are the cases in which the rule matched (decided, or matched in Audit) or the claim
	// was returned (in the answer, or in the would-be answer of a connector in Audit).
	Cases []string
}

// Coverage lists every rule and claim of the bundle's connectors, in manifest order (claims
// sorted by name), with the cases of results that exercised it. Failing cases count too: what
// they exercised was still evaluated.
func Coverage(b *connfile.Bundle, results []CaseResult) []CoverageItem {
	var items []CoverageItem
	for _, conn := range b.Connectors {
		connAudit := conn.Spec.Enforcement == "Audit"
		var mine []CaseResult
		for _, r := range results {
			if r.Connector == conn.Name && r.Outcome != nil {
				mine = append(mine, r)
			}
		}
		for _, rule := range conn.Spec.Rules {
			item := CoverageItem{Connector: conn.Name, Kind: "rule", Name: rule.Name, Audit: connAudit || rule.Enforcement == "Audit"}
			for _, r := range mine {
				if r.Outcome.Decision.Rule == rule.Name || slices.Contains(auditMatches(r.Outcome.Decision), rule.Name) {
					item.Cases = append(item.Cases, r.Name)
				}
			}
			items = append(items, item)
		}
		names := make([]string, 0, len(conn.Spec.Claims))
		for name := range conn.Spec.Claims {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			item := CoverageItem{Connector: conn.Name, Kind: "claim", Name: name}
			for _, r := range mine {
				d := r.Outcome.Decision
				if d.Audited != nil {
					d = d.Audited
				}
				for returned := range d.Claims {
					if claimIs(returned, name) {
						item.Cases = append(item.Cases, r.Name)
						break
					}
				}
				for returned := range d.ClaimValues {
					if claimIs(returned, name) && !slices.Contains(item.Cases, r.Name) {
						item.Cases = append(item.Cases, r.Name)
						break
					}
				}
			}
			items = append(items, item)
		}
	}
	return items
}

// claimIs reports whether a returned claim is the claim name of the spec: the same name, or at
// the attribute collection events the full name extension_<appid>_<Name> of extension_<Name>.
func claimIs(returned, name string) bool {
	if returned == name {
		return true
	}
	rest, ok := strings.CutPrefix(name, "extension_")
	if !ok || !strings.HasPrefix(returned, "extension_") || !strings.HasSuffix(returned, "_"+rest) {
		return false
	}
	id := strings.TrimSuffix(strings.TrimPrefix(returned, "extension_"), "_"+rest)
	return len(id) == 32 && strings.Trim(id, "0123456789abcdef") == ""
}

// CoveragePercent is the share of items that some case exercised (100 when there are none).
func CoveragePercent(items []CoverageItem) float64 {
	if len(items) == 0 {
		return 100
	}
	n := 0
	for _, it := range items {
		if len(it.Cases) > 0 {
			n++
		}
	}
	return 100 * float64(n) / float64(len(items))
}

// PrintCoverage writes one line per rule and claim with the cases that exercised it, NOT
// COVERED for those none did, and a summary line.
func PrintCoverage(w io.Writer, items []CoverageItem) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONNECTOR\tKIND\tNAME\tCASES")
	covered := 0
	for _, it := range items {
		kind := it.Kind
		if it.Audit {
			kind += " (audit)"
		}
		cases := "NOT COVERED"
		if len(it.Cases) > 0 {
			covered++
			cases = strings.Join(it.Cases, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", it.Connector, kind, it.Name, cases)
	}
	fmt.Fprintf(tw, "\ncoverage: %d of %d rules and claims exercised (%.1f%%)\n", covered, len(items), CoveragePercent(items))
	return tw.Flush()
}
