package config_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apiconnector/operator/controllers"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

var digest = "sha256:" + strings.Repeat("a", 64)

// imageCases are runtime-images ConfigMaps (the manager's --runtime-image and
// --allowed-runtime-images, the admission policy's parameter) and, per image, whether a connector
// may run it. The manager's Go and the policy's CEL must both give these answers.
var imageCases = []struct {
	name, runtimeImage, allowed string
	images                      map[string]bool
}{{
	name:         "default: the repository of the shipped runtime image",
	runtimeImage: "apiconnector-runtime:dev",
	images: map[string]bool{
		"apiconnector-runtime":                   true,
		"apiconnector-runtime:v2":                true,
		"apiconnector-runtime@" + digest:         true,
		"apiconnector-runtime:v2@" + digest:      true,
		"apiconnector-runtime:5000/evil:v1":      false, // the registry host apiconnector-runtime:5000
		"apiconnector-runtime-evil:v1":           false,
		"docker.io/library/apiconnector-runtime": false,
		"evil.example/apiconnector-runtime:dev":  false,
	},
}, {
	name:         "default: a registry with a port, a path and a digest",
	runtimeImage: "registry.example:5000/team/apiconnector-runtime:v1.2.3@" + digest,
	images: map[string]bool{
		"registry.example:5000/team/apiconnector-runtime:v1.3.0":    true,
		"registry.example:5000/team/apiconnector-runtime@" + digest: true,
		"registry.example:5000/team/apiconnector-runtime":           true,
		"registry.example:5000/team/apiconnector-runtime-evil:v1":   false,
		"registry.example:5000/team/apiconnector-runtime:v1/x":      false,
		"registry.example/team/apiconnector-runtime:v1.3.0":         false,
		"registry.example:5000/apiconnector-runtime:v1.3.0":         false,
		"apiconnector-runtime:dev":                                  false,
	},
}, {
	name:         "listed patterns replace the default; blanks and spaces are ignored",
	runtimeImage: "registry.example:5000/team/apiconnector-runtime:v1.2.3",
	allowed:      " mirror.example/apic/* ,, registry.example/runtime@sha256:*,registry.example/pinned:v1,",
	images: map[string]bool{
		"mirror.example/apic/runtime:v2":                         true,
		"mirror.example/apic/runtime@" + digest:                  true,
		"mirror.example/apic/nested/runtime:v2":                  false,
		"mirror.example/apicx/runtime:v2":                        false,
		"registry.example/runtime@" + digest:                     true,
		"registry.example/runtime:v1":                            false,
		"registry.example/pinned:v1":                             true,
		"registry.example/pinned:v1.1":                           false,
		"registry.example/pinned":                                false,
		"registry.example:5000/team/apiconnector-runtime:v1.3.0": false,
	},
}, {
	name:         "a lone * allows images without a registry or path",
	runtimeImage: "apiconnector-runtime:dev",
	allowed:      "*",
	images: map[string]bool{
		"nginx:1.27":            true,
		"registry.example/x:v1": false,
	},
}}

// patternsOf is what the manager runs with for a runtime-images ConfigMap.
func patternsOf(t *testing.T, runtimeImage, allowed string) []string {
	t.Helper()
	listed, err := controllers.ParseImagePatterns(allowed)
	if err != nil {
		t.Fatal(err)
	}
	return controllers.ImagePatterns(runtimeImage, listed)
}

func TestManagerImagePatterns(t *testing.T) {
	for _, c := range imageCases {
		patterns := patternsOf(t, c.runtimeImage, c.allowed)
		for img, want := range c.images {
			if got := controllers.ImageAllowed(img, patterns); got != want {
				t.Errorf("%s: ImageAllowed(%q, %q) = %v, want %v", c.name, img, patterns, got, want)
			}
		}
	}
}

// admit asks the API server (dry run: admission runs, nothing is stored) to create a connector
// running image; nil when admitted.
func admit(t *testing.T, c client.Client, ns, image string) error {
	t.Helper()
	_, conn := sample(t, "demo.yaml", ns)
	conn.Spec.Runtime.Image = image
	return c.Create(t.Context(), conn, client.DryRunAll)
}

// refusal is the API server's message when it refused a connector's image, else an error.
func refusal(err error) (string, error) {
	if err == nil || !apierrors.IsInvalid(err) {
		return "", fmt.Errorf("want a 422 Invalid refusal, got %v", err)
	}
	if !strings.Contains(err.Error(), "spec.runtime.image") {
		return "", fmt.Errorf("refusal does not name the field spec.runtime.image: %v", err)
	}
	return err.Error(), nil
}

// The admission policy, installed exactly as kustomize and the chart render it, refuses a
// connector whose image the manager would not run, with the manager's own message, and gives
// the manager's answers on every image of imageCases.
func TestRuntimeImageAdmissionPolicy(t *testing.T) {
	_, c := apiServer(t)
	ensureNamespace(t, c, operatorNamespace)
	const ns = "admission"
	ensureNamespace(t, c, ns)
	const evil = "evil.example/miner:1"

	for _, src := range []struct {
		name string
		objs objects
	}{{"kustomize", renderKustomize(t, "default")}, {"helm", renderChart(t, nil)}} {
		t.Run(src.name, func(t *testing.T) {
			// Without the policy (the other source's is uninstalled), anything is admitted.
			eventually(t, 10*time.Second, func() error { return admit(t, c, ns, evil) })
			install(t, c, src.objs, "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
			var cm *corev1.ConfigMap
			for _, k := range keys(src.objs) {
				if strings.HasPrefix(k, "ConfigMap/apiconnector-runtime-images") {
					cm = &corev1.ConfigMap{}
					if err := c.Get(t.Context(), client.ObjectKey{Namespace: operatorNamespace, Name: src.objs[k]["metadata"].(map[string]any)["name"].(string)}, cm); err != nil {
						t.Fatal(err)
					}
				}
			}
			if cm == nil {
				t.Fatalf("no runtime-images ConfigMap rendered: %v", keys(src.objs))
			}
			// The policy's bindings reach the API server's admission within a second or so.
			var msg string
			eventually(t, 10*time.Second, func() (err error) {
				msg, err = refusal(admit(t, c, ns, evil))
				return err
			})
			want := controllers.ImageProblem(evil, controllers.ImagePatterns(cm.Data["runtimeImage"], nil))
			if want == "" || !strings.Contains(msg, want) {
				t.Errorf("refusal %q, want the manager's message %q", msg, want)
			}
			for _, img := range []string{"", "apiconnector-runtime:v2"} {
				if err := admit(t, c, ns, img); err != nil {
					t.Errorf("image %q refused: %v", img, err)
				}
			}

			// Per case, wait until the API server uses the new ConfigMap (a probe image allowed
			// only by it is admitted), then compare every image with the manager's answer.
			prev := patternsOf(t, cm.Data["runtimeImage"], cm.Data["allowedRuntimeImages"])
			for i, ic := range imageCases {
				probe, allowed := fmt.Sprintf("probe.example/case-%d", i), ic.allowed
				if allowed == "" {
					probe = controllers.ImagePatterns(ic.runtimeImage, nil)[0] + ":probe" // a tag of the repository
				} else {
					allowed += "," + probe
				}
				patterns := patternsOf(t, ic.runtimeImage, allowed)
				cm.Data = map[string]string{"runtimeImage": ic.runtimeImage, "allowedRuntimeImages": allowed}
				if err := c.Update(t.Context(), cm); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(patterns, prev) { // else the API server uses them already
					if !controllers.ImageAllowed(probe, patterns) || controllers.ImageAllowed(probe, prev) {
						t.Fatalf("%s: probe %q must be allowed by %q and not by %q", ic.name, probe, patterns, prev)
					}
					eventually(t, 10*time.Second, func() error { return admit(t, c, ns, probe) })
				}
				prev = patterns
				for img, allowed := range ic.images {
					err := admit(t, c, ns, img)
					if allowed && err != nil {
						t.Errorf("%s: %q refused, the manager allows it: %v", ic.name, img, err)
					}
					if !allowed {
						if msg, rerr := refusal(err); rerr != nil {
							t.Errorf("%s: %q: the manager refuses it, the policy: %v", ic.name, img, rerr)
						} else if want := controllers.ImageProblem(img, patterns); !strings.Contains(msg, want) {
							t.Errorf("%s: refusal %q, want the manager's message %q", ic.name, msg, want)
						}
					}
				}
			}
		})
	}
}

// A connector keeps an image the patterns no longer allow through updates that leave it alone
// (the manager reports it), but cannot be switched to another disallowed image; without its
// ConfigMap the policy refuses every connector rather than admit it unchecked.
func TestRuntimeImageAdmissionPolicyUpdates(t *testing.T) {
	_, c := apiServer(t)
	ensureNamespace(t, c, operatorNamespace)
	const ns = "admission-updates"
	ensureNamespace(t, c, ns)
	objs := renderChart(t, map[string]any{"allowedRuntimeImages": []any{"registry.example/old:*", "registry.example/probe:*"}})
	install(t, c, objs, "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
	eventually(t, 10*time.Second, func() error {
		if _, err := refusal(admit(t, c, ns, "evil.example/miner:1")); err != nil {
			return err
		}
		return admit(t, c, ns, "registry.example/probe:v1") // not the previous test's policy
	})
	_, conn := sample(t, "demo.yaml", ns)
	conn.Spec.Runtime.Image = "registry.example/old:v1"
	if err := c.Create(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: operatorNamespace, Name: "apiconnector-runtime-images"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["allowedRuntimeImages"] = "registry.example/new:*"
	if err := c.Update(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		_, err := refusal(admit(t, c, ns, "registry.example/probe:v1"))
		return err
	})
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(conn), conn); err != nil {
		t.Fatal(err)
	}
	conn.Spec.Runtime.Replicas = ptr.To[int32](3)
	if err := c.Update(t.Context(), conn); err != nil {
		t.Errorf("an update leaving the image alone was refused: %v", err)
	}
	conn.Spec.Runtime.Image = "registry.example/old:v2"
	if _, err := refusal(c.Update(t.Context(), conn)); err != nil {
		t.Errorf("switching to another disallowed image: %v", err)
	}

	if err := c.Delete(t.Context(), cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		err := admit(t, c, ns, "")
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "no params found") {
			return fmt.Errorf("without the ConfigMap: %v, want a refusal for the missing parameter", err)
		}
		return nil
	})
}
