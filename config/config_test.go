// Package config_test proves the install manifests render and hang together, as
// `kubectl apply -k config/default` would see them.
package config_test

import (
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func TestDefaultOverlayRenders(t *testing.T) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), "default")
	if err != nil {
		t.Fatalf("kustomize build config/default: %v", err)
	}
	kinds := map[string]int{}
	for _, r := range res.Resources() {
		kinds[r.GetKind()+"/"+r.GetName()]++
		if r.GetKind() != "CustomResourceDefinition" && r.GetKind() != "Namespace" &&
			!strings.HasPrefix(r.GetKind(), "Cluster") && r.GetNamespace() != "apiconnector-system" {
			t.Errorf("%s/%s is in namespace %q, want apiconnector-system", r.GetKind(), r.GetName(), r.GetNamespace())
		}
	}
	for _, want := range []string{
		"Namespace/apiconnector-system",
		"CustomResourceDefinition/apiconnectors.apiconnector.dev",
		"ServiceAccount/apiconnector-controller-manager",
		"ClusterRole/apiconnector-manager-role",
		"ClusterRoleBinding/apiconnector-manager-rolebinding",
		"Role/apiconnector-leader-election-role",
		"Role/apiconnector-hash-key-role",
		"RoleBinding/apiconnector-hash-key-rolebinding",
		"Deployment/apiconnector-controller-manager",
		"Service/apiconnector-controller-manager-metrics",
		"ClusterRole/apiconnector-editor-role",
		"ClusterRole/apiconnector-viewer-role",
	} {
		if kinds[want] != 1 {
			t.Errorf("rendered output has %d of %s, want 1", kinds[want], want)
		}
	}
	yml, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	// Bindings must point at the prefixed service account in the operator's namespace.
	if strings.Contains(string(yml), "namespace: system\n") {
		t.Error("a reference still points at the unprefixed namespace \"system\"")
	}
}
