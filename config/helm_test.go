package config_test

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/apiconnector/operator/controllers"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	chartDir          = "charts/apiconnector-operator"
	operatorNamespace = "apiconnector-system"
)

// objects are rendered manifests by objectKey.
type objects map[string]map[string]any

// objectKey is kind/name, with the namespace for objects outside the operator's namespace (the
// RoleBindings in watched namespaces).
func objectKey(obj map[string]any) string {
	md := obj["metadata"].(map[string]any)
	key := obj["kind"].(string) + "/" + md["name"].(string)
	if ns, _ := md["namespace"].(string); ns != "" && ns != operatorNamespace {
		key = obj["kind"].(string) + "/" + ns + "/" + md["name"].(string)
	}
	return key
}

// renderChart renders the chart as the release "apiconnector" in operatorNamespace, whose object
// names are config/default's.
func renderChart(t *testing.T, values map[string]any) objects {
	t.Helper()
	out, err := renderChartErr(values)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderChartErr(values map[string]any) (objects, error) {
	out, _, err := renderRelease("apiconnector", operatorNamespace, values)
	return out, err
}

// renderRelease renders the chart with Helm's own packages, as `helm install --dry-run` would:
// the values checked against values.schema.json, the templates, the CRDs, and NOTES.txt.
func renderRelease(name, namespace string, values map[string]any) (objects, string, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, "", err
	}
	vals, err := chartutil.ToRenderValues(ch, values, common.ReleaseOptions{Name: name, Namespace: namespace, IsInstall: true}, common.DefaultCapabilities)
	if err != nil {
		return nil, "", err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, "", err
	}
	out := objects{}
	var notes string
	for file, content := range files {
		switch {
		case strings.HasSuffix(file, ".tpl"):
			continue
		case strings.HasSuffix(file, "/NOTES.txt"):
			notes = content
			continue
		}
		for _, doc := range strings.Split(content, "\n---") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return nil, "", fmt.Errorf("%s: %w", file, err)
			}
			if len(obj) == 0 {
				continue
			}
			out[objectKey(obj)] = obj
		}
	}
	for _, crd := range ch.CRDObjects() {
		var obj map[string]any
		if err := yaml.Unmarshal(crd.File.Data, &obj); err != nil {
			return nil, "", err
		}
		out[objectKey(obj)] = obj
	}
	return out, notes, nil
}

// kustomize builds a kustomization (a directory under config/), as `kubectl apply -k` would.
func kustomize(t *testing.T, dir string) resmap.ResMap {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	return res
}

func renderYAML(t *testing.T, dir string) string {
	t.Helper()
	b, err := kustomize(t, dir).AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func renderKustomize(t *testing.T, dir string) objects {
	t.Helper()
	res := kustomize(t, dir)
	out := objects{}
	for _, r := range res.Resources() {
		// Through YAML again, so numbers have the same Go types as in the Helm render.
		b, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		out[objectKey(m)] = m
	}
	return out
}

// kustomize's configMapGenerator appends a hash of the data to the name (so a change rolls the
// manager); the chart restarts it through an annotation instead and keeps the plain name.
var hashSuffix = regexp.MustCompile(`(apiconnector-runtime-images)-[a-z0-9]{10}\b`)

func withoutHashSuffix(t *testing.T, objs objects) objects {
	t.Helper()
	b, err := json.Marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	var out objects
	if err := json.Unmarshal(hashSuffix.ReplaceAll(b, []byte("$1")), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(m objects) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// container is the manager container of the rendered Deployment.
func container(objs objects) map[string]any {
	return podSpec(deployment(objs))["containers"].([]any)[0].(map[string]any)
}

// The chart and kustomize install the same operator: the same CRD, the same generated RBAC rules
// and bindings, the same admission policy, the same objects, the same manager arguments; cluster
// wide (config/default, no watchNamespaces) and namespaced (config/namespaced, watchNamespaces).
func TestHelmChartAgreesWithKustomize(t *testing.T) {
	for _, c := range []struct {
		name, dir string
		values    map[string]any
	}{
		{"cluster-wide", "default", nil},
		{"namespaced", "namespaced", map[string]any{"watchNamespaces": []any{"identity"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			helm := withoutInstanceSelector(t, renderChart(t, c.values))
			kust := withoutHashSuffix(t, renderKustomize(t, c.dir))

			// Both use the apiconnector- prefix and the same object names.
			var helmKinds, kustKinds []string
			for _, k := range keys(helm) {
				if !strings.HasPrefix(k, "ServiceMonitor/") {
					helmKinds = append(helmKinds, k)
				}
			}
			for _, k := range keys(kust) {
				if !strings.HasPrefix(k, "Namespace/") { // Helm installs into a namespace it is given
					kustKinds = append(kustKinds, k)
				}
			}
			if !reflect.DeepEqual(helmKinds, kustKinds) {
				t.Errorf("objects differ:\nhelm:      %v\nkustomize: %v", helmKinds, kustKinds)
			}

			crd := "CustomResourceDefinition/apiconnectors.apiconnector.dev"
			if !reflect.DeepEqual(helm[crd]["spec"], kust[crd]["spec"]) {
				t.Error("the chart's CRD differs from config/crd: run `make manifests`")
			}
			// RBAC, the admission policy, its binding and parameter, the metrics Service: equal but
			// for the labels Helm adds (the aggregation labels are checked below).
			for _, k := range helmKinds {
				kind := strings.SplitN(k, "/", 2)[0]
				if kind == "CustomResourceDefinition" || kind == "Deployment" || kust[k] == nil {
					continue
				}
				h, ku := withoutLabels(helm[k]), withoutLabels(kust[k])
				if !reflect.DeepEqual(h, ku) {
					hy, _ := yaml.Marshal(h)
					ky, _ := yaml.Marshal(ku)
					t.Errorf("%s differs:\nhelm:\n%s\nkustomize:\n%s", k, hy, ky)
				}
			}
			// The connector roles are aggregated into the built-in namespace roles.
			for role, want := range map[string][]string{
				"ClusterRole/apiconnector-editor-role": {"rbac.authorization.k8s.io/aggregate-to-admin", "rbac.authorization.k8s.io/aggregate-to-edit"},
				"ClusterRole/apiconnector-viewer-role": {"rbac.authorization.k8s.io/aggregate-to-view"},
			} {
				for _, objs := range []objects{helm, kust} {
					labels, _ := objs[role]["metadata"].(map[string]any)["labels"].(map[string]any)
					for _, l := range want {
						if labels[l] != "true" {
							t.Errorf("%s lacks the label %s=true: %v", role, l, labels)
						}
					}
				}
			}

			h, k := container(helm), container(kust)
			// The chart also passes explicitly what the manager defaults to: its tuning, its
			// logging, and the names of its hash-key Secret and leader-election Lease (which
			// follow the release name, and are the manager's defaults for this one).
			explicit := map[string]string{
				"--concurrency": "8", "--kube-api-qps": "200", "--kube-api-burst": "400",
				"--zap-log-level": "info", "--zap-encoder": "json",
				"--hash-key-secret": controllers.DefaultHashKeySecret, "--leader-election-id": controllers.LeaderElectionID,
			}
			var hs []any
			for _, a := range h["args"].([]any) {
				flag, value, _ := strings.Cut(a.(string), "=")
				want, ok := explicit[flag]
				if !ok {
					hs = append(hs, a)
					continue
				}
				if value != want {
					t.Errorf("the chart passes %s, want %s=%s", a, flag, want)
				}
				delete(explicit, flag)
			}
			for flag := range explicit {
				t.Errorf("the chart does not pass %s", flag)
			}
			if !reflect.DeepEqual(hs, k["args"]) {
				t.Errorf("manager arguments differ:\nhelm:      %v\nkustomize: %v", h["args"], k["args"])
			}
			if !reflect.DeepEqual(h["env"], k["env"]) {
				t.Errorf("manager environment differs:\nhelm:      %v\nkustomize: %v", h["env"], k["env"])
			}
		})
	}
}

// The chart's Service and Deployment also select by app.kubernetes.io/instance, so releases side
// by side in one namespace do not select each other's pods; config/default installs one operator.
func withoutInstanceSelector(t *testing.T, objs objects) objects {
	t.Helper()
	svc := objs["Service/apiconnector-controller-manager-metrics"]
	sel := svc["spec"].(map[string]any)["selector"].(map[string]any)
	if sel["app.kubernetes.io/instance"] != "apiconnector" {
		t.Errorf("the metrics Service does not select the release's pods: %v", sel)
	}
	delete(sel, "app.kubernetes.io/instance")
	return objs
}

func withoutLabels(obj map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range obj {
		out[k] = v
	}
	md := map[string]any{}
	for k, v := range obj["metadata"].(map[string]any) {
		if k != "labels" && k != "annotations" {
			md[k] = v
		}
	}
	out["metadata"] = md
	return out
}

func TestHelmValues(t *testing.T) {
	objs := renderChart(t, map[string]any{
		"watchNamespaces":         []any{"identity", "partners"},
		"leaderElection":          map[string]any{"enabled": false},
		"metrics":                 map[string]any{"serviceMonitor": map[string]any{"enabled": true, "insecureSkipVerify": true}},
		"runtimeImage":            map[string]any{"repository": "registry.example/runtime", "tag": "v1.2.3"},
		"runtimeEgressAllowCIDRs": []any{"169.254.0.0/16", "10.96.0.1/32"},
		"runtimeTracesEndpoint":   "http://otel-collector.observability.svc:4318",
		"allowedRuntimeImages":    []any{"registry.example/runtime:*", "registry.example/runtime@sha256:*"},
	})
	joined := ""
	for _, a := range container(objs)["args"].([]any) {
		joined += a.(string) + " "
	}
	for _, want := range []string{"--watch-namespaces=identity,partners", "--runtime-image=$(RUNTIME_IMAGE)",
		"--runtime-egress-allow-cidrs=169.254.0.0/16,10.96.0.1/32", "--allowed-runtime-images=$(ALLOWED_RUNTIME_IMAGES)",
		"--runtime-traces-endpoint=http://otel-collector.observability.svc:4318"} {
		if !strings.Contains(joined, want) {
			t.Errorf("args %q lack %s", joined, want)
		}
	}
	for _, absent := range []string{"--allowed-exposure-annotations", "--network-policies", "--ingress-namespace-selector", "--ingress-cidrs", "--metrics-namespace-selector"} {
		if strings.Contains(joined, absent) {
			t.Errorf("args %q set %s although its value was not given", joined, absent)
		}
	}
	// The manager and the admission policy read the runtime image and the patterns from here.
	data := objs["ConfigMap/apiconnector-runtime-images"]["data"]
	if want := map[string]any{"runtimeImage": "registry.example/runtime:v1.2.3", "allowedRuntimeImages": "registry.example/runtime:*,registry.example/runtime@sha256:*"}; !reflect.DeepEqual(data, want) {
		t.Errorf("runtime-images data = %v, want %v", data, want)
	}
	if strings.Contains(joined, "--leader-elect ") {
		t.Error("leader election was disabled but the flag is set")
	}
	if _, ok := objs["Role/apiconnector-leader-election-role"]; ok {
		t.Error("leader election Role rendered while disabled")
	}
	if _, ok := objs["ServiceMonitor/apiconnector-controller-manager"]; !ok {
		t.Error("ServiceMonitor not rendered when enabled")
	}
	// Namespaced: the manager's rules are bound in each watched namespace, never cluster-wide.
	for _, ns := range []string{"identity", "partners"} {
		rb := objs["RoleBinding/"+ns+"/apiconnector-manager-rolebinding"]
		if rb == nil || rb["roleRef"].(map[string]any)["name"] != "apiconnector-manager-role" {
			t.Errorf("no RoleBinding to the manager's rules in %s: %v", ns, rb)
		}
	}
	if _, ok := objs["ClusterRoleBinding/apiconnector-manager-rolebinding"]; ok {
		t.Error("the manager's rules are bound cluster-wide although watchNamespaces is set")
	}
}

// A pattern the manager would refuse at start fails the install instead.
func TestHelmRefusesUnsupportedImagePatterns(t *testing.T) {
	for _, p := range []string{"registry.example/*/runtime:v1", "registry.example/runtime:v?", "registry.example/runtime:[ab]", "a,b", `registry.example/runtime:\*`} {
		_, err := renderChartErr(map[string]any{"allowedRuntimeImages": []any{"registry.example/ok:*", p}})
		if err == nil || !strings.Contains(err.Error(), "allowedRuntimeImages") {
			t.Errorf("pattern %q: err %v, want one naming allowedRuntimeImages", p, err)
		}
	}
	if _, err := renderChartErr(map[string]any{"allowedRuntimeImages": []any{"registry.example/runtime:*", "mirror.example/apic/runtime@sha256:*", "pinned.example/runtime:v1"}}); err != nil {
		t.Errorf("supported patterns refused: %v", err)
	}
}

// The exposure annotation allow-list and the NetworkPolicy settings reach the manager: a list or
// selector as given, an empty list or selector as an empty flag (none allowed, every namespace),
// and nothing when left unset so the operator's documented defaults apply.
func TestHelmNetworkPolicyAndAnnotationValues(t *testing.T) {
	for _, c := range []struct {
		name   string
		values map[string]any
		want   []string
	}{
		{"given", map[string]any{
			"allowedExposureAnnotations": []any{"nginx.ingress.kubernetes.io/limit-*", "traefik.ingress.kubernetes.io/router.tls"},
			"networkPolicy": map[string]any{
				"enabled":                  false,
				"ingressNamespaceSelector": "kubernetes.io/metadata.name in (traefik, gateways)",
				"ingressCIDRs":             []any{"130.211.0.0/22", "35.191.0.0/16"},
				"metricsNamespaceSelector": "team=observability",
			},
		}, []string{
			"--allowed-exposure-annotations=nginx.ingress.kubernetes.io/limit-*,traefik.ingress.kubernetes.io/router.tls",
			"--network-policies=false",
			"--ingress-namespace-selector=kubernetes.io/metadata.name in (traefik, gateways)",
			"--ingress-cidrs=130.211.0.0/22,35.191.0.0/16",
			"--metrics-namespace-selector=team=observability",
		}},
		{"empty", map[string]any{
			"allowedExposureAnnotations": []any{},
			"networkPolicy":              map[string]any{"ingressNamespaceSelector": "", "metricsNamespaceSelector": ""},
		}, []string{"--allowed-exposure-annotations=", "--ingress-namespace-selector=", "--metrics-namespace-selector="}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := managerArgs(renderChart(t, c.values))
			for _, w := range c.want {
				if !slices.Contains(got, w) {
					t.Errorf("args %q lack %q", got, w)
				}
			}
		})
	}
}

func TestChartCopiesAreGenerated(t *testing.T) {
	for src, dst := range map[string]string{
		"crd/bases/apiconnector.dev_apiconnectors.yaml": chartDir + "/crds/apiconnector.dev_apiconnectors.yaml",
		"crd/bases/apiconnector.dev_entratenants.yaml":  chartDir + "/crds/apiconnector.dev_entratenants.yaml",
		"rbac/role.yaml":                            chartDir + "/files/role.yaml",
		"rbac/apiconnector_editor_role.yaml":        chartDir + "/files/apiconnector_editor_role.yaml",
		"rbac/apiconnector_viewer_role.yaml":        chartDir + "/files/apiconnector_viewer_role.yaml",
		"namespaced/manager_crd_role.yaml":          chartDir + "/files/manager_crd_role.yaml",
		"admission/runtime_image_policy.yaml":       chartDir + "/files/runtime_image_policy.yaml",
		"components/monitoring/prometheusrule.yaml": chartDir + "/files/prometheusrule.yaml",
		"components/monitoring/dashboard.json":      chartDir + "/files/dashboard.json",
	} {
		a, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s differs from %s: run `make manifests`", dst, src)
		}
	}
}
