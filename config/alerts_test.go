package config_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

const monitoringDir = "components/monitoring"

// ruleGroups reads the alerting rules (spec.groups) of the shipped PrometheusRule.
func ruleGroups(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec map[string]any `json:"spec"`
	}
	if err := yaml.Unmarshal(b, &rule); err != nil {
		t.Fatal(err)
	}
	return rule.Spec
}

// The alerts fire on the series that should fire them and not on the others: `promtool test
// rules` (Prometheus's own rule evaluation, built from the Go module pinned in hack/tools/promtool)
// runs alerts_test.yaml against the PrometheusRule's groups.
func TestAlertsWithPromtool(t *testing.T) {
	dir := t.TempDir()
	rules, err := yaml.Marshal(ruleGroups(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	cases, err := os.ReadFile(filepath.Join(monitoringDir, "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), cases, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"check", "rules", filepath.Join(dir, "rules.yaml")},
		{"test", "rules", filepath.Join(dir, "alerts_test.yaml")},
	} {
		cmd := exec.Command("go", append([]string{"tool", "promtool"}, args...)...)
		cmd.Dir = filepath.Join("..", "hack", "tools", "promtool")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
