package argocd

import (
	"os"
	"testing"

	"sigs.k8s.io/yaml"
)

func connector(generation, observed int64, conds ...map[string]any) map[string]any {
	c := make([]any, len(conds))
	for i := range conds {
		c[i] = conds[i]
	}
	return map[string]any{
		"apiVersion": "apiconnector.dev/v1alpha1", "kind": "APIConnector",
		"metadata": map[string]any{"name": "x", "namespace": "y", "generation": generation},
		"status":   map[string]any{"observedGeneration": observed, "conditions": c},
	}
}

func cond(typ, status, reason, msg string) map[string]any {
	return map[string]any{"type": typ, "status": status, "reason": reason, "message": msg}
}

func TestHealth(t *testing.T) {
	tests := []struct {
		name, want string
		obj        map[string]any
	}{
		{"never reconciled", "Progressing", map[string]any{"metadata": map[string]any{"generation": int64(1)}}},
		{"ready", "Healthy", connector(2, 2, cond("Ready", "True", "Succeeded", "served"))},
		{"ready but spec not observed", "Progressing", connector(3, 2, cond("Ready", "True", "Succeeded", "served"))},
		{"rolling out", "Progressing", connector(1, 1, cond("Ready", "False", "DeploymentUnavailable", "1/2"), cond("Reconciling", "True", "Progressing", "1/2"))},
		{"stalled", "Degraded", connector(1, 1, cond("Ready", "False", "InvalidRules", "spec.rules[0].when: ..."), cond("Stalled", "True", "InvalidRules", "spec.rules[0].when: ..."))},
		{"not ready, not progressing", "Degraded", connector(1, 1, cond("Ready", "False", "ReconcileError", "forbidden"))},
		{"no conditions yet", "Progressing", connector(1, 1)},
		{"scaled to zero", "Suspended", connector(4, 4, cond("Ready", "True", "ScaledToZero", "spec.runtime.replicas is 0"))},
		{"defaulted status before the first reconcile", "Progressing", connector(1, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := Evaluate(tt.obj)
			if err != nil {
				t.Fatal(err)
			}
			if h.Status != tt.want {
				t.Errorf("status = %s (%s), want %s", h.Status, h.Message, tt.want)
			}
		})
	}
	h, _ := Evaluate(connector(1, 1, cond("Stalled", "True", "InvalidRules", "spec.rules[0].when: bad")))
	if h.Message != "InvalidRules: spec.rules[0].when: bad" {
		t.Errorf("Degraded message = %q; it must carry the reason and the controller's message", h.Message)
	}
}

// The ConfigMap patch users apply must carry exactly the tested script.
func TestPatchCarriesTheScript(t *testing.T) {
	b, err := os.ReadFile("argocd-cm-patch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"APIConnector", "EntraTenant"} {
		if got := cm.Data["resource.customizations.health.apiconnector.dev_"+kind]; got != Script {
			t.Errorf("argocd-cm-patch.yaml's %s check differs from health.lua:\n%s", kind, got)
		}
	}
}
