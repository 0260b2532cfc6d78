// Package config_test proves the install manifests render and hang together, as
// `kubectl apply -k config/default` (or config/namespaced) and `helm install` would see them, and
// (with envtest) that what they install works on a real API server.
package config_test

import (
	"os"
	"path/filepath"
	"reflect"
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

// clusterScoped are the kinds without a namespace in the install.
var clusterScoped = map[string]bool{
	"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
}

func TestDefaultOverlayRenders(t *testing.T) {
	objs := renderKustomize(t, "default")
	for k, obj := range objs {
		ns, _ := obj["metadata"].(map[string]any)["namespace"].(string)
		if kind := obj["kind"].(string); !clusterScoped[kind] && ns != operatorNamespace {
			t.Errorf("%s is in namespace %q, want %s", k, ns, operatorNamespace)
		}
	}
	for _, want := range []string{
		"Namespace/apiconnector-system",
		"CustomResourceDefinition/apiconnectors.apiconnector.dev",
		"CustomResourceDefinition/entratenants.apiconnector.dev",
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
		"ValidatingAdmissionPolicy/apiconnector-runtime-image-policy",
		"ValidatingAdmissionPolicyBinding/apiconnector-runtime-image-binding",
	} {
		if objs[want] == nil {
			t.Errorf("config/default lacks %s", want)
		}
	}
	yml := renderYAML(t, "default")
	// Bindings must point at the prefixed service account in the operator's namespace.
	if strings.Contains(yml, "namespace: system\n") {
		t.Error("a reference still points at the unprefixed namespace \"system\"")
	}
	// The manager and the policy read the same (generated, hash-suffixed) ConfigMap.
	cms := hashSuffix.FindAllString(yml, -1)
	if len(cms) < 4 {
		t.Fatalf("runtime-images ConfigMap referenced %d times, want its name, two env references and the policy binding's paramRef", len(cms))
	}
	for _, n := range cms {
		if n != cms[0] {
			t.Errorf("references to the runtime-images ConfigMap differ: %v", cms)
		}
	}
	binding := objs["ValidatingAdmissionPolicyBinding/apiconnector-runtime-image-binding"]["spec"].(map[string]any)["paramRef"].(map[string]any)
	if binding["name"] != cms[0] || binding["namespace"] != operatorNamespace {
		t.Errorf("the policy's parameter is %v, want ConfigMap %s/%s", binding, operatorNamespace, cms[0])
	}
}

// config/namespaced is config/default without the cluster-wide grant of the manager's rules:
// they are bound in the watched namespaces, and cluster-wide it may only read CRDs.
func TestNamespacedOverlayRenders(t *testing.T) {
	objs := renderKustomize(t, "namespaced")
	if _, ok := objs["ClusterRoleBinding/apiconnector-manager-rolebinding"]; ok {
		t.Error("config/namespaced binds the manager's rules cluster-wide")
	}
	rb := objs["RoleBinding/identity/apiconnector-manager-rolebinding"]
	if rb == nil {
		t.Fatalf("no RoleBinding in the watched namespace identity: %v", keys(objs))
	}
	subj := rb["subjects"].([]any)[0].(map[string]any)
	if subj["name"] != "apiconnector-controller-manager" || subj["namespace"] != operatorNamespace || rb["roleRef"].(map[string]any)["name"] != "apiconnector-manager-role" {
		t.Errorf("RoleBinding grants %v to %v", rb["roleRef"], subj)
	}
	if objs["ClusterRoleBinding/apiconnector-manager-crd-rolebinding"] == nil {
		t.Error("no ClusterRoleBinding to the CRD reader role")
	}
	// --watch-namespaces names exactly the namespaces with a RoleBinding.
	var bound []string
	for k := range objs {
		if parts := strings.Split(k, "/"); parts[0] == "RoleBinding" && len(parts) == 3 && parts[2] == "apiconnector-manager-rolebinding" {
			bound = append(bound, parts[1])
		}
	}
	var watched string
	for _, a := range container(objs)["args"].([]any) {
		if v, ok := strings.CutPrefix(a.(string), "--watch-namespaces="); ok {
			watched = v
		}
	}
	if watched != strings.Join(bound, ",") {
		t.Errorf("--watch-namespaces=%s, but the manager's rules are bound in %v", watched, bound)
	}
}

// The overlay docs/install.md shows changes the runtime image and its patterns for the manager
// and the admission policy at once.
func TestRuntimeImagesOverlay(t *testing.T) {
	dir := t.TempDir()
	abs, err := filepath.Abs("default")
	if err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Rel(dir, abs) // kustomize refuses absolute paths
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(`resources:
- `+base+`
configMapGenerator:
- name: apiconnector-runtime-images
  namespace: apiconnector-system
  behavior: merge
  literals:
  - runtimeImage=registry.example/apiconnector-runtime:v1.0.0
  - allowedRuntimeImages=registry.example/apiconnector-runtime:*,registry.example/apiconnector-runtime@sha256:*
`), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := renderKustomize(t, dir)
	var cm map[string]any
	for k, o := range objs {
		if strings.HasPrefix(k, "ConfigMap/") {
			if cm != nil {
				t.Fatalf("two ConfigMaps: %v", keys(objs))
			}
			cm = o
		}
	}
	name := cm["metadata"].(map[string]any)["name"]
	if want := map[string]any{"runtimeImage": "registry.example/apiconnector-runtime:v1.0.0", "allowedRuntimeImages": "registry.example/apiconnector-runtime:*,registry.example/apiconnector-runtime@sha256:*"}; !reflect.DeepEqual(cm["data"], want) {
		t.Errorf("data = %v, want %v", cm["data"], want)
	}
	if got := objs["ValidatingAdmissionPolicyBinding/apiconnector-runtime-image-binding"]["spec"].(map[string]any)["paramRef"].(map[string]any)["name"]; got != name {
		t.Errorf("the policy reads ConfigMap %v, the overlay made %v", got, name)
	}
	for _, e := range container(objs)["env"].([]any) {
		ref, _ := e.(map[string]any)["valueFrom"].(map[string]any)["configMapKeyRef"].(map[string]any)
		if ref != nil && ref["name"] != name {
			t.Errorf("the manager reads ConfigMap %v, the overlay made %v", ref["name"], name)
		}
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
	// The manager's --runtime-image and the admission policy's default pattern both come from the
	// runtime-images ConfigMap.
	if args := expandArgs(c); !slices.Contains(args, "--runtime-image=$(RUNTIME_IMAGE)") {
		t.Errorf("manager arguments %q do not take the runtime image from RUNTIME_IMAGE", args)
	}
	var cm *corev1.ConfigMap
	for _, r := range res.Resources() {
		if r.GetKind() == "ConfigMap" && strings.HasPrefix(r.GetName(), "apiconnector-runtime-images") {
			b, err := r.AsYAML()
			if err != nil {
				t.Fatal(err)
			}
			cm = &corev1.ConfigMap{}
			if err := yaml.UnmarshalStrict(b, cm); err != nil {
				t.Fatal(err)
			}
		}
	}
	if cm == nil {
		t.Fatal("no runtime-images ConfigMap in the output")
	}
	if want := "registry.example/team/apiconnector-runtime:v1.2.3@" + digest; cm.Data["runtimeImage"] != want {
		t.Errorf("runtime-images runtimeImage = %q, want %q", cm.Data["runtimeImage"], want)
	}
	for _, e := range c.Env {
		if e.Name == "RUNTIME_IMAGE" && (e.ValueFrom == nil || e.ValueFrom.ConfigMapKeyRef == nil || e.ValueFrom.ConfigMapKeyRef.Name != cm.Name) {
			t.Errorf("RUNTIME_IMAGE does not come from ConfigMap %s: %+v", cm.Name, e)
		}
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
