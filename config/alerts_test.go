package config_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// config/monitoring is config/default with the monitoring component: the manager makes
// PodMonitors, and the alerts and the dashboard are installed in the operator's namespace.
func TestMonitoringOverlayRenders(t *testing.T) {
	objs := renderKustomize(t, "monitoring")
	for _, want := range []string{"Deployment/apiconnector-controller-manager", "PrometheusRule/apiconnector-alerts", "ConfigMap/apiconnector-grafana-dashboard"} {
		if objs[want] == nil {
			t.Fatalf("config/monitoring lacks %s; it has %v", want, keys(objs))
		}
	}
	if args := managerArgs(objs); !slices.Contains(args, "--pod-monitors") {
		t.Errorf("manager args %q lack --pod-monitors", args)
	}
	cm := objs["ConfigMap/apiconnector-grafana-dashboard"]
	if cm["metadata"].(map[string]any)["namespace"] != operatorNamespace || cm["metadata"].(map[string]any)["labels"].(map[string]any)["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap metadata = %v", cm["metadata"])
	}
	dash, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cm["data"].(map[string]any)["apiconnector.json"] != string(dash) {
		t.Error("the ConfigMap does not hold dashboard.json as it is")
	}
	if !equalJSON(t, objs["PrometheusRule/apiconnector-alerts"]["spec"], ruleGroups(t)) {
		t.Error("the PrometheusRule differs from prometheusrule.yaml")
	}
}
