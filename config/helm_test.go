package config_test

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const chartDir = "charts/apiconnector-operator"

// renderChart renders the chart with Helm's own packages, as `helm template` would.
func renderChart(t *testing.T, values map[string]any) map[string]map[string]any {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartutil.ReleaseOptions{Name: "apiconnector", Namespace: "apiconnector-system", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("render chart: %v", err)
	}
	out := map[string]map[string]any{}
	for name, content := range files {
		if strings.HasSuffix(name, ".tpl") {
			continue
		}
		for _, doc := range strings.Split(content, "\n---") {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			if len(obj) == 0 {
				continue
			}
			md := obj["metadata"].(map[string]any)
			out[obj["kind"].(string)+"/"+md["name"].(string)] = obj
		}
	}
	for _, crd := range ch.CRDObjects() {
		var obj map[string]any
		if err := yaml.Unmarshal(crd.File.Data, &obj); err != nil {
			t.Fatal(err)
		}
		out["CustomResourceDefinition/"+obj["metadata"].(map[string]any)["name"].(string)] = obj
	}
	return out
}

func renderKustomize(t *testing.T) map[string]map[string]any {
	t.Helper()
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), "default")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]any{}
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
		out[r.GetKind()+"/"+r.GetName()] = m
	}
	return out
}

func keys(m map[string]map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// The chart and `kubectl apply -k config/default` install the same operator: the same CRD, the
// same generated RBAC rules, the same objects, the same manager arguments.
func TestHelmChartAgreesWithKustomize(t *testing.T) {
	helm := renderChart(t, nil)
	kust := renderKustomize(t)

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
	for _, role := range []string{"ClusterRole/apiconnector-manager-role", "ClusterRole/apiconnector-editor-role", "ClusterRole/apiconnector-viewer-role"} {
		if !reflect.DeepEqual(helm[role]["rules"], kust[role]["rules"]) {
			t.Errorf("the chart's %s rules differ from config/rbac:\nhelm: %v\nkustomize: %v", role, helm[role]["rules"], kust[role]["rules"])
		}
	}
	// The connector roles are aggregated into the built-in namespace roles.
	for role, want := range map[string][]string{
		"ClusterRole/apiconnector-editor-role": {"rbac.authorization.k8s.io/aggregate-to-admin", "rbac.authorization.k8s.io/aggregate-to-edit"},
		"ClusterRole/apiconnector-viewer-role": {"rbac.authorization.k8s.io/aggregate-to-view"},
	} {
		for _, objs := range []map[string]map[string]any{helm, kust} {
			labels, _ := objs[role]["metadata"].(map[string]any)["labels"].(map[string]any)
			for _, l := range want {
				if labels[l] != "true" {
					t.Errorf("%s lacks the label %s=true: %v", role, l, labels)
				}
			}
		}
	}

	// As the kubelet expands them: config/manager passes the runtime image through $(RUNTIME_IMAGE).
	args := func(objs map[string]map[string]any) []any {
		b, err := yaml.Marshal(objs["Deployment/apiconnector-controller-manager"])
		if err != nil {
			t.Fatal(err)
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal(b, &d); err != nil {
			t.Fatal(err)
		}
		var out []any
		for _, a := range expandArgs(d.Spec.Template.Spec.Containers[0]) {
			out = append(out, a)
		}
		return out
	}
	h, k := args(helm), args(kust)
	// The chart also passes its tuning defaults explicitly.
	var hs []any
	for _, a := range h {
		s := a.(string)
		if !strings.HasPrefix(s, "--concurrency=") && !strings.HasPrefix(s, "--kube-api-") {
			hs = append(hs, a)
		}
	}
	if !reflect.DeepEqual(hs, k) {
		t.Errorf("manager arguments differ:\nhelm:      %v\nkustomize: %v", h, k)
	}
}

func TestHelmValues(t *testing.T) {
	objs := renderChart(t, map[string]any{
		"watchNamespaces":         []any{"identity", "partners"},
		"leaderElection":          map[string]any{"enabled": false},
		"metrics":                 map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		"runtimeImage":            map[string]any{"repository": "registry.example/runtime", "tag": "v1.2.3"},
		"runtimeEgressAllowCIDRs": []any{"169.254.0.0/16", "10.96.0.1/32"},
		"allowedRuntimeImages":    []any{"registry.example/runtime:*"},
	})
	d := objs["Deployment/apiconnector-controller-manager"]
	spec := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	args := spec["containers"].([]any)[0].(map[string]any)["args"].([]any)
	joined := ""
	for _, a := range args {
		joined += a.(string) + " "
	}
	for _, want := range []string{"--watch-namespaces=identity,partners", "--runtime-image=registry.example/runtime:v1.2.3",
		"--runtime-egress-allow-cidrs=169.254.0.0/16,10.96.0.1/32", "--allowed-runtime-images=registry.example/runtime:*"} {
		if !strings.Contains(joined, want) {
			t.Errorf("args %q lack %s", joined, want)
		}
	}
	for _, absent := range []string{"--allowed-exposure-annotations", "--network-policies", "--ingress-namespace-selector", "--ingress-cidrs", "--metrics-namespace-selector"} {
		if strings.Contains(joined, absent) {
			t.Errorf("args %q set %s although its value was not given", joined, absent)
		}
	}
	if strings.Contains(joined, "--leader-elect") {
		t.Error("leader election was disabled but the flag is set")
	}
	if _, ok := objs["Role/apiconnector-leader-election-role"]; ok {
		t.Error("leader election Role rendered while disabled")
	}
	if _, ok := objs["ServiceMonitor/apiconnector-controller-manager"]; !ok {
		t.Error("ServiceMonitor not rendered when enabled")
	}
}

// The exposure annotation allow-list and the NetworkPolicy settings reach the manager: a list or
// selector as given, an empty list or selector as an empty flag (none allowed, every namespace),
// and nothing when left unset so the operator's documented defaults apply.
func TestHelmNetworkPolicyAndAnnotationValues(t *testing.T) {
	args := func(values map[string]any) []string {
		objs := renderChart(t, values)
		d := objs["Deployment/apiconnector-controller-manager"]
		spec := d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
		var out []string
		for _, a := range spec["containers"].([]any)[0].(map[string]any)["args"].([]any) {
			out = append(out, a.(string))
		}
		return out
	}
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
			got := args(c.values)
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
		"rbac/role.yaml": chartDir + "/files/role.yaml",
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
