//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	goruntime "runtime"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiconnector/operator/controllers/children"
)

// releaseVersion is the version hack/cluster builds its release as.
const releaseVersion = "v0.0.0-e2e"

// registryAddr is the e2e registry (hack/cluster: APIC_E2E_REGISTRY), which the cluster pulls the
// operator and the runtime from.
func registryAddr(t *testing.T) string {
	t.Helper()
	r := os.Getenv("APIC_E2E_REGISTRY")
	if r == "" {
		t.Fatal("APIC_E2E_REGISTRY is not set: run through make e2e (or eval $(go run ./hack/cluster env))")
	}
	return r
}

// registryGet GETs a path of the e2e registry's distribution API, failing the test by name when
// the registry does not answer: pulls would then fail too.
func registryGet(t *testing.T, path, accept string) []byte {
	t.Helper()
	r := registryAddr(t)
	req, err := http.NewRequest(http.MethodGet, "http://"+r+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("the e2e registry at %s does not answer (%v): see logs/registry.log in the cluster's state folder", r, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("registry GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("registry GET %s: %s: %s", path, resp.Status, body)
	}
	return body
}

// installedFromRegistry shows the cluster runs the release from the registry, as a user's does:
// the operator's Deployment uses install.yaml's reference (tag and digest in the registry), and
// containerd pulled the operator's and every runtime pod's image from the registry (a pulled
// image's ID names the repository it came from; an imported one would not). The SBOM referrer of
// the pulled platform image is served by the registry's referrers API.
func (s *suite) installedFromRegistry(t *testing.T) {
	reg := registryAddr(t)
	registryGet(t, "/v2/", "")
	var d appsv1.Deployment
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: "apiconnector-system", Name: "apiconnector-controller-manager"}, &d); err != nil {
		t.Fatal(err)
	}
	want := reg + "/apiconnector-operator:" + releaseVersion + "@sha256:"
	if img := d.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, want) {
		t.Fatalf("operator image %q, want the release's %s<digest>", img, want)
	}
	pulled := s.pulledImages(t, &d, reg+"/apiconnector-operator@sha256:")
	runtimes := 0
	for name, u := range s.connectors {
		var rd appsv1.Deployment
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: u.GetNamespace(), Name: children.DeploymentName(typed(t, u))}, &rd); err != nil {
			t.Fatalf("connector %s: %v", name, err)
		}
		runtimes += len(s.pulledImages(t, &rd, reg+"/apiconnector-runtime@sha256:"))
	}
	if runtimes == 0 {
		t.Fatal("no runtime pod")
	}
	// Containerd pulled the index install.yaml pins; its platform image has its SBOM attached (an
	// OCI referrer of the platform manifest).
	img := d.Spec.Template.Spec.Containers[0].Image
	index := img[strings.LastIndex(img, "@")+1:]
	if got := pulled[0][strings.LastIndex(pulled[0], "@")+1:]; got != index {
		t.Fatalf("the operator's pod runs %s, install.yaml pins %s", got, index)
	}
	var idx struct {
		Manifests []struct {
			Digest       string `json:"digest"`
			ArtifactType string `json:"artifactType"`
			Platform     struct {
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	const indexType = "application/vnd.oci.image.index.v1+json"
	if err := json.Unmarshal(registryGet(t, "/v2/apiconnector-operator/manifests/"+index, indexType), &idx); err != nil {
		t.Fatal(err)
	}
	var platform string
	for _, m := range idx.Manifests {
		if m.Platform.Architecture == goruntime.GOARCH {
			platform = m.Digest
		}
	}
	if platform == "" {
		t.Fatalf("index %s has no linux/%s image: %+v", index, goruntime.GOARCH, idx.Manifests)
	}
	idx.Manifests = nil
	if err := json.Unmarshal(registryGet(t, "/v2/apiconnector-operator/referrers/"+platform, indexType), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("referrers of the operator's image %s: %+v, want its SBOM", platform, idx.Manifests)
	}
	// The referrer's own manifest, not the list's artifactType: go-containerregistry's registry
	// lists the config's media type there (the OCI empty descriptor's) instead of the manifest's
	// artifactType.
	var sbom struct {
		ArtifactType string `json:"artifactType"`
		Subject      struct {
			Digest string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(registryGet(t, "/v2/apiconnector-operator/manifests/"+idx.Manifests[0].Digest, "application/vnd.oci.image.manifest.v1+json"), &sbom); err != nil {
		t.Fatal(err)
	}
	if sbom.ArtifactType != "application/spdx+json" || sbom.Subject.Digest != platform {
		t.Fatalf("referrer %s of %s: artifactType %q, subject %s; want application/spdx+json of %s", idx.Manifests[0].Digest, platform, sbom.ArtifactType, sbom.Subject.Digest, platform)
	}
	digest := platform
	t.Logf("operator and %d runtime containers pulled from %s; SBOM referrer of %s served", runtimes, reg, digest)
}

// pulledImages returns the image IDs of the running containers of d's pods, failing unless each
// starts with prefix (the registry's repository).
func (s *suite) pulledImages(t *testing.T, d *appsv1.Deployment, prefix string) []string {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	var pods corev1.PodList
	if err := s.c.List(s.ctx, &pods, client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				continue
			}
			if !strings.HasPrefix(cs.ImageID, prefix) {
				t.Fatalf("pod %s/%s: container %s runs image %s (%s), want one pulled from %s", p.Namespace, p.Name, cs.Name, cs.ImageID, cs.Image, prefix)
			}
			ids = append(ids, cs.ImageID)
		}
	}
	if len(ids) == 0 {
		t.Fatalf("Deployment %s/%s has no running container", d.Namespace, d.Name)
	}
	return ids
}

// failOnPullError fails at once when a pod of d cannot pull its image (the registry died, the
// reference is wrong): waiting would not help.
func (s *suite) failOnPullError(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return
	}
	var pods corev1.PodList
	if err := s.c.List(s.ctx, &pods, client.InNamespace(d.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" || w.Reason == "InvalidImageName") {
				t.Fatalf("pod %s/%s cannot pull %s: %s: %s (is the e2e registry %s up? logs/registry.log)", p.Namespace, p.Name, cs.Image, w.Reason, w.Message, os.Getenv("APIC_E2E_REGISTRY"))
			}
		}
	}
}
