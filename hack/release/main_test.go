package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apiconnector/operator/hack/localcp"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// The digests of the image indexes the test's layouts tag (as hack/images -oci writes them).
var digests = map[string]string{
	operatorImage: "sha256:" + strings.Repeat("a1", 32),
	runtimeImage:  "sha256:" + strings.Repeat("b2", 32),
}

// testDist is a dist directory as hack/images leaves it: an OCI image layout per image whose
// index.json tags the release's image index (and lists its SBOM referrers).
func testDist(t *testing.T, version string) release {
	t.Helper()
	dist := t.TempDir()
	for name, digest := range digests {
		dir := filepath.Join(dist, "images", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
			`{"mediaType":"application/vnd.oci.image.index.v1+json","size":900,"digest":"` + digest + `","annotations":{"org.opencontainers.image.ref.name":"` + version + `"}},` +
			`{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":600,"digest":"sha256:` + strings.Repeat("c3", 32) + `","artifactType":"application/spdx+json"}]}`
		if err := os.WriteFile(filepath.Join(dir, "index.json"), []byte(index), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return release{root: "../..", dist: dist, version: version, registry: "registry.example/team", created: time.Unix(1700000000, 0)}
}

func pinnedRef(name string) string {
	return "registry.example/team/" + name + ":v1.2.3@" + digests[name]
}

// install.yaml is config/default with both images pinned by digest: the manager's image and the
// runtime image it gives connectors.
func TestInstallYAML(t *testing.T) {
	r := testDist(t, "v1.2.3")
	refs, err := r.write()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(refs, []string{pinnedRef(operatorImage), pinnedRef(runtimeImage)}) {
		t.Errorf("printed references %v", refs)
	}
	b, err := os.ReadFile(filepath.Join(r.dist, "install.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	var dep appsv1.Deployment
	var runtimeImages corev1.ConfigMap
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var obj struct {
			Kind     string
			Metadata struct{ Namespace string }
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		// kubectl apply -f creates objects in file order: the namespace and the CRD first.
		if obj.Metadata.Namespace != "" && !kinds["Namespace"] || obj.Kind == "Deployment" && !kinds["CustomResourceDefinition"] {
			t.Errorf("%s in %q comes before its Namespace or the CRD", obj.Kind, obj.Metadata.Namespace)
		}
		kinds[obj.Kind] = true
		if obj.Kind == "Deployment" {
			if err := yaml.UnmarshalStrict([]byte(doc), &dep); err != nil {
				t.Fatal(err)
			}
		}
		if obj.Kind == "ConfigMap" && strings.Contains(doc, "runtimeImage:") {
			if err := yaml.UnmarshalStrict([]byte(doc), &runtimeImages); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range []string{"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Deployment", "Service"} {
		if !kinds[k] {
			t.Errorf("install.yaml has no %s", k)
		}
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != pinnedRef(operatorImage) {
		t.Errorf("manager image %q, want %q", c.Image, pinnedRef(operatorImage))
	}
	// The manager and the admission policy read the runtime image from the runtime-images ConfigMap.
	if !slices.Contains(c.Args, "--runtime-image=$(RUNTIME_IMAGE)") || runtimeImages.Data["runtimeImage"] != pinnedRef(runtimeImage) {
		t.Errorf("runtime image: args %q, runtime-images %q; want %q", c.Args, runtimeImages.Data["runtimeImage"], pinnedRef(runtimeImage))
	}
	if bytes.Contains(b, []byte(":dev")) {
		t.Error("install.yaml still refers to a :dev image")
	}
}

// The packaged chart has version X.Y.Z and appVersion vX.Y.Z, and renders both images pinned by
// digest by default; its values.yaml keeps its comments.
func TestChartPackage(t *testing.T) {
	r := testDist(t, "v1.2.3")
	if _, err := r.write(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.dist, "apiconnector-operator-1.2.3.tgz")
	ch, err := loader.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "1.2.3" || ch.Metadata.AppVersion != "v1.2.3" {
		t.Errorf("version %q appVersion %q", ch.Metadata.Version, ch.Metadata.AppVersion)
	}
	for _, f := range ch.Raw {
		if f.Name == "values.yaml" && !bytes.Contains(f.Data, []byte("# -- Operator image repository.")) {
			t.Errorf("values.yaml lost its comments:\n%s", f.Data)
		}
	}
	if len(ch.CRDObjects()) != 2 { // APIConnector, EntraTenant
		t.Errorf("the chart has %d CRDs", len(ch.CRDObjects()))
	}
	vals, err := chartutil.ToRenderValues(ch, nil, common.ReleaseOptions{Name: "apiconnector", Namespace: "apiconnector-system", IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	var runtimeImages corev1.ConfigMap
	for name, file := range files {
		for _, doc := range strings.Split(file, "\n---") {
			switch {
			case strings.Contains(doc, "kind: Deployment"):
				if err := yaml.Unmarshal([]byte(doc), &dep); err != nil {
					t.Fatal(err)
				}
			case strings.Contains(doc, "kind: ConfigMap") && strings.Contains(doc, "runtimeImage:"):
				if err := yaml.Unmarshal([]byte(doc), &runtimeImages); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
		}
	}
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("no Deployment rendered: %v", files)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != pinnedRef(operatorImage) || runtimeImages.Data["runtimeImage"] != pinnedRef(runtimeImage) {
		t.Errorf("chart renders image %q and runtime image %q; want both pinned", c.Image, runtimeImages.Data["runtimeImage"])
	}
}

// SHA256SUMS names every other file of dist with its SHA-256, and the same commit and version
// give the same bytes (the chart archive's file times are the commit's, not the packaging's).
func TestSumsAndReproducible(t *testing.T) {
	a, b := testDist(t, "v1.2.3"), testDist(t, "v1.2.3")
	if _, err := a.write(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // a packaging time stamped into the archive would differ
	if _, err := b.write(); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(a.dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(filepath.Join(b.dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sums, other) {
		t.Errorf("two releases of the same commit differ:\n%s\n%s", sums, other)
	}
	listed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		hash, file, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("line %q is not in sha256sum's format", sc.Text())
		}
		data, err := os.ReadFile(filepath.Join(a.dist, file))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hash != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: listed %s", file, hash)
		}
		listed[file] = true
	}
	for _, want := range []string{"install.yaml", "apiconnector-operator-1.2.3.tgz", "images/apiconnector-operator/index.json", "images/apiconnector-runtime/oci-layout"} {
		if !listed[want] {
			t.Errorf("SHA256SUMS lacks %s", want)
		}
	}
	if listed["SHA256SUMS"] {
		t.Error("SHA256SUMS lists itself")
	}
}

// A version that is not vX.Y.Z[-pre] and images built for another version are refused, naming
// what is wrong.
func TestRefused(t *testing.T) {
	for _, v := range []string{"1.2.3", "v1.2", "2c37817-dirty", "v1.2.3+build"} {
		if _, err := testDist(t, v).write(); err == nil || !strings.Contains(err.Error(), "semantic versioning") {
			t.Errorf("version %q: %v", v, err)
		}
	}
	r := testDist(t, "v1.2.3")
	r.version = "v1.2.4"
	if _, err := r.write(); err == nil || !strings.Contains(err.Error(), "no image index tagged v1.2.4") {
		t.Errorf("images of another version: %v", err)
	}
	r.dist = t.TempDir()
	if _, err := r.write(); err == nil || !strings.Contains(err.Error(), "build the images first") {
		t.Errorf("no images: %v", err)
	}
}

// install.yaml applies to a real API server the way docs/release.md says to apply it, and again
// (an upgrade to the same release changes nothing).
func TestInstallYAMLApplies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	r := testDist(t, "v1.2.3")
	if _, err := r.write(); err != nil {
		t.Fatal(err)
	}
	cp, err := localcp.Start("../..", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	for range 2 {
		out, err := exec.Command(kubectl, "--kubeconfig", cp.Kubeconfig, "apply", "--server-side", "-f", filepath.Join(r.dist, "install.yaml")).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply --server-side -f install.yaml: %v\n%s", err, out)
		}
	}
	var dep appsv1.Deployment
	if err := cp.Client.Get(t.Context(), client.ObjectKey{Namespace: "apiconnector-system", Name: "apiconnector-controller-manager"}, &dep); err != nil {
		t.Fatal(err)
	}
	if got := dep.Spec.Template.Spec.Containers[0].Image; got != pinnedRef(operatorImage) {
		t.Errorf("the applied Deployment runs %q", got)
	}
}
