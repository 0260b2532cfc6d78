// Package config_test proves the install manifests render and hang together, as
// `kubectl apply -k config/default` would see them.
package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
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

// An overlay's images: entries change both images the operator runs: its own and, through the
// manager's RUNTIME_IMAGE variable (config/manager/kustomizeconfig.yaml), the runtime image its
// connectors run. Pinned by digest, as the release's install.yaml is.
func TestOverlayImagesRewriteBothImages(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	base, err := filepath.Abs("default")
	if err != nil {
		t.Fatal(err)
	}
	overlay := t.TempDir()
	rel, err := filepath.Rel(overlay, base) // kustomize takes bases by relative path only
	if err != nil {
		t.Fatal(err)
	}
	kustomization := "resources:\n- " + rel + `
images:
- name: apiconnector-operator
  newName: registry.example/team/apiconnector-operator
  newTag: v1.2.3
- name: apiconnector-runtime
  newName: registry.example/team/apiconnector-runtime
  newTag: v1.2.3
  digest: ` + digest + "\n"
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), overlay)
	if err != nil {
		t.Fatalf("kustomize build: %v", err)
	}
	d, err := res.GetById(resid.NewResIdWithNamespace(resid.Gvk{Group: "apps", Version: "v1", Kind: "Deployment"}, "apiconnector-controller-manager", "apiconnector-system"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.AsYAML()
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(b, &dep); err != nil {
		t.Fatal(err)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if want := "registry.example/team/apiconnector-operator:v1.2.3"; c.Image != want {
		t.Errorf("manager image %q, want %q", c.Image, want)
	}
	want := "--runtime-image=registry.example/team/apiconnector-runtime:v1.2.3@" + digest
	if args := expandArgs(c); !slices.Contains(args, want) {
		t.Errorf("manager arguments as the kubelet expands them %q lack %q", args, want)
	}
	all, err := res.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	for _, old := range []string{"apiconnector-operator:dev", "apiconnector-runtime:dev"} {
		if strings.Contains(string(all), old) {
			t.Errorf("the overlay's output still refers to %s", old)
		}
	}
}

// expandArgs is c's arguments with $(VAR) references to c's env values substituted, as the
// kubelet does.
func expandArgs(c corev1.Container) []string {
	var pairs []string
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			pairs = append(pairs, "$("+e.Name+")", e.Value)
		}
	}
	r := strings.NewReplacer(pairs...)
	var out []string
	for _, a := range c.Args {
		out = append(out, r.Replace(a))
	}
	return out
}
