package config_test

import (
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"sigs.k8s.io/yaml"
)

// The chart on its own: its values schema, the checks of its templates, names that follow the
// release, the values around the manager's pod, the ServiceMonitor, and Helm's linter.

// everything sets every optional feature of the chart.
func everything() map[string]any {
	return map[string]any{
		"replicas":          2,
		"watchNamespaces":   []any{"shared"},
		"imagePullSecrets":  []any{map[string]any{"name": "regcred"}},
		"podAnnotations":    map[string]any{"example.com/team": "identity"},
		"podLabels":         map[string]any{"example.com/cost-center": "42"},
		"priorityClassName": "system-cluster-critical",
		"nodeSelector":      map[string]any{"kubernetes.io/os": "linux"},
		"tolerations":       []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "operators", "effect": "NoSchedule"}},
		"affinity": map[string]any{"podAntiAffinity": map[string]any{"preferredDuringSchedulingIgnoredDuringExecution": []any{map[string]any{
			"weight": 100, "podAffinityTerm": map[string]any{"topologyKey": "kubernetes.io/hostname",
				"labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "apiconnector-operator"}}}}}}},
		"topologySpreadConstraints": []any{map[string]any{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
			"labelSelector": map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "apiconnector-operator"}}}},
		"serviceAccount": map[string]any{"annotations": map[string]any{"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"}},
		"logLevel":       "debug",
		"logFormat":      "console",
		"extraArgs":      []any{"--zap-time-encoding=rfc3339"},
		"metrics": map[string]any{
			"certificate":    map[string]any{"certManager": map[string]any{"enabled": true}},
			"serviceMonitor": map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
		},
		"monitoring": map[string]any{
			"podMonitors":      map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus", "team": "identity"}},
			"prometheusRule":   map[string]any{"enabled": true, "labels": map[string]any{"release": "prometheus"}},
			"grafanaDashboard": map[string]any{"enabled": true, "namespace": "grafana", "labels": map[string]any{"team": "identity"}},
		},
	}
}

// The monitoring values: PodMonitors made by the manager, the alerts and the dashboard as the
// kustomize component ships them.
func TestChartMonitoring(t *testing.T) {
	objs := renderChart(t, nil)
	if args := managerArgs(objs); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--pod-monitor") }) {
		t.Errorf("PodMonitors by default: %q", args)
	}
	if objs["PrometheusRule/apiconnector-alerts"] != nil || objs["ConfigMap/apiconnector-grafana-dashboard"] != nil {
		t.Error("alerts or dashboard installed by default")
	}
	objs = renderChart(t, everything())
	args := managerArgs(objs)
	for _, want := range []string{"--pod-monitors", "--pod-monitor-labels=release=prometheus,team=identity"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	rule := objs["PrometheusRule/apiconnector-alerts"]
	if rule == nil {
		t.Fatal("no PrometheusRule")
	}
	if rule["metadata"].(map[string]any)["labels"].(map[string]any)["release"] != "prometheus" {
		t.Errorf("PrometheusRule labels = %v", rule["metadata"])
	}
	if !equalJSON(t, rule["spec"], ruleGroups(t)) {
		t.Error("the chart's PrometheusRule differs from config/components/monitoring/prometheusrule.yaml")
	}
	cm := objs["ConfigMap/grafana/apiconnector-grafana-dashboard"]
	if cm == nil {
		t.Fatalf("no dashboard ConfigMap: %v", keys(objs))
	}
	md := cm["metadata"].(map[string]any)
	if l := md["labels"].(map[string]any); md["namespace"] != "grafana" || l["grafana_dashboard"] != "1" || l["team"] != "identity" {
		t.Errorf("dashboard ConfigMap metadata = %v", md)
	}
	dash, err := os.ReadFile("components/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if got := cm["data"].(map[string]any)["apiconnector.json"]; got != strings.TrimSuffix(string(dash), "\n") {
		t.Error("the ConfigMap does not hold dashboard.json as it is")
	}
}

// Values the schema refuses fail `helm install` before anything renders, naming the value.
func TestChartSchemaRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"replicas not a number", map[string]any{"replicas": "abc"}, "at '/replicas': got string, want integer"},
		{"negative replicas", map[string]any{"replicas": -1}, "at '/replicas'"},
		{"misspelt top-level key", map[string]any{"replica": 2}, "additional properties 'replica' not allowed"},
		{"misspelt nested key", map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"enable": true}}}, "at '/metrics/serviceMonitor': additional properties 'enable' not allowed"},
		{"unknown log level", map[string]any{"logLevel": "verbose"}, "at '/logLevel': value must be one of 'debug', 'info', 'error'"},
		{"unknown pull policy", map[string]any{"image": map[string]any{"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"},
		{"port out of range", map[string]any{"metrics": map[string]any{"port": 70000}}, "at '/metrics/port'"},
		{"issuer without a name", map[string]any{"metrics": map[string]any{"certificate": map[string]any{"certManager": map[string]any{"issuerRef": map[string]any{"kind": "ClusterIssuer"}}}}}, "at '/metrics/certificate/certManager/issuerRef': missing property 'name'"},
		{"extra argument not a flag", map[string]any{"extraArgs": []any{"zap-log-level=debug"}}, "at '/extraArgs/0'"},
		{"pull secret as a string", map[string]any{"imagePullSecrets": []any{"regcred"}}, "at '/imagePullSecrets/0': got string, want object"},
		{"watched namespace not a name", map[string]any{"watchNamespaces": []any{"Identity"}}, "at '/watchNamespaces/0'"},
		{"long fullnameOverride", map[string]any{"fullnameOverride": strings.Repeat("a", 37)}, "at '/fullnameOverride'"},
		{"a value removed", map[string]any{"image": nil}, "missing property 'image'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := renderChartErr(c.values)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	// The defaults, and every feature at once, are valid.
	for _, values := range []map[string]any{nil, everything()} {
		if _, err := renderChartErr(values); err != nil {
			t.Errorf("%v: %v", values, err)
		}
	}
}

// values.yaml has every value the schema knows but the optional fields of issuerRef and
// resources (so README.md, generated from values.yaml, documents them all), and the schema
// closes every object the chart owns.
func TestChartSchemaMatchesValues(t *testing.T) {
	read := func(file string, into any) {
		b, err := os.ReadFile(chartDir + "/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
	var schema, values map[string]any
	read("values.schema.json", &schema)
	read("values.yaml", &values)
	var walk func(path string, s, v map[string]any)
	walk = func(path string, s, v map[string]any) {
		props, _ := s["properties"].(map[string]any)
		if s["additionalProperties"] != false {
			return // a Kubernetes type (resources, affinity, ...) or a free map
		}
		required, _ := s["required"].([]any)
		for _, k := range slices.Sorted(maps.Keys(props)) {
			// Optional fields (of issuerRef, resources) are described with their parent; a value
			// that may be null is in values.yaml as null.
			types, _ := props[k].(map[string]any)["type"].([]any)
			if !slices.Contains(required, any(k)) && !slices.Contains(types, any("null")) {
				continue
			}
			val, ok := v[k]
			if !ok {
				t.Errorf("values.yaml lacks %s%s, which the schema allows", path, k)
				continue
			}
			if sub, ok := val.(map[string]any); ok {
				walk(path+k+".", props[k].(map[string]any), sub)
			}
		}
	}
	if schema["additionalProperties"] != false {
		t.Fatal("the schema allows unknown top-level values")
	}
	walk("", schema, values)
}

// More than one replica without leader election would have every replica reconcile every
// connector; the chart refuses it.
func TestChartLeaderElectionWithReplicas(t *testing.T) {
	_, err := renderChartErr(map[string]any{"replicas": 2, "leaderElection": map[string]any{"enabled": false}})
	if err == nil || !strings.Contains(err.Error(), "replicas: 2 needs leaderElection.enabled: true") {
		t.Errorf("err = %v, want the combination refused", err)
	}
	for _, c := range []struct {
		replicas int
		elect    bool
	}{{2, true}, {1, false}, {0, false}} {
		objs, err := renderChartErr(map[string]any{"replicas": c.replicas, "leaderElection": map[string]any{"enabled": c.elect}})
		if err != nil {
			t.Errorf("replicas %d, leader election %v: %v", c.replicas, c.elect, err)
			continue
		}
		if got := slices.Contains(managerArgs(objs), "--leader-elect"); got != c.elect {
			t.Errorf("replicas %d: --leader-elect passed: %v, want %v", c.replicas, got, c.elect)
		}
	}
}

// The values around the manager's pod reach it.
func TestChartPodValues(t *testing.T) {
	objs := renderChart(t, everything())
	d := deployment(objs)
	pod := d["spec"].(map[string]any)["template"].(map[string]any)
	spec := pod["spec"].(map[string]any)
	v := everything()
	for field, want := range map[string]any{
		"imagePullSecrets":          v["imagePullSecrets"],
		"priorityClassName":         v["priorityClassName"],
		"nodeSelector":              v["nodeSelector"],
		"tolerations":               v["tolerations"],
		"affinity":                  v["affinity"],
		"topologySpreadConstraints": v["topologySpreadConstraints"],
	} {
		if !equalJSON(t, spec[field], want) {
			t.Errorf("pod %s = %v, want %v", field, spec[field], want)
		}
	}
	md := pod["metadata"].(map[string]any)
	if l := md["labels"].(map[string]any); l["example.com/cost-center"] != "42" || l["app.kubernetes.io/instance"] != "apiconnector" {
		t.Errorf("pod labels %v lack podLabels or the chart's own", l)
	}
	if a := md["annotations"].(map[string]any); a["example.com/team"] != "identity" || a["checksum/runtime-images"] == nil {
		t.Errorf("pod annotations %v lack podAnnotations or the chart's own", a)
	}
	sa := objs["ServiceAccount/apiconnector-controller-manager"]
	if a := sa["metadata"].(map[string]any)["annotations"]; !equalJSON(t, a, map[string]any{"azure.workload.identity/client-id": "00000000-0000-0000-0000-000000000000"}) {
		t.Errorf("ServiceAccount annotations = %v", a)
	}
	args := managerArgs(objs)
	for _, want := range []string{"--zap-log-level=debug", "--zap-encoder=console", "--zap-time-encoding=rfc3339"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}

	// A label the Deployment selects by cannot be replaced.
	_, err := renderChartErr(map[string]any{"podLabels": map[string]any{"app.kubernetes.io/instance": "other"}})
	if err == nil || !strings.Contains(err.Error(), "podLabels: app.kubernetes.io/instance is a label the chart sets") {
		t.Errorf("err = %v, want podLabels refused", err)
	}
}

// With serviceAccount.create false the manager runs as, and the rules are bound to, the named
// ServiceAccount; without a name the chart refuses rather than bind them to "default".
func TestChartExistingServiceAccount(t *testing.T) {
	_, err := renderChartErr(map[string]any{"serviceAccount": map[string]any{"create": false}})
	if err == nil || !strings.Contains(err.Error(), "serviceAccount.name is required when serviceAccount.create is false") {
		t.Errorf("err = %v, want the missing name refused", err)
	}
	objs := renderChart(t, map[string]any{"serviceAccount": map[string]any{"create": false, "name": "operator"}})
	for k, o := range objs {
		if o["kind"] == "ServiceAccount" {
			t.Errorf("%s rendered although serviceAccount.create is false", k)
		}
		for _, s := range subjects(o) {
			if s["kind"] == "ServiceAccount" && s["name"] != "operator" {
				t.Errorf("%s binds %v, want the ServiceAccount operator", k, s)
			}
		}
	}
	if got := podSpec(deployment(objs))["serviceAccountName"]; got != "operator" {
		t.Errorf("serviceAccountName = %v", got)
	}
}

// Releases side by side, in other namespaces or the same one, share no object: namespaced
// objects differ by namespace or name, cluster-scoped ones by name; and every name an object
// refers to is the one of its own release.
func TestChartReleasesSideBySide(t *testing.T) {
	releases := []struct{ name, namespace string }{{"apic-a", "team-a"}, {"apic-b", "team-b"}, {"apic-c", "team-a"}}
	owner := map[string]string{}
	rendered := map[string]objects{}
	for _, r := range releases {
		objs, _, err := renderRelease(r.name, r.namespace, everything())
		if err != nil {
			t.Fatal(err)
		}
		rendered[r.name] = objs
		for _, o := range objs {
			if o["kind"] == "CustomResourceDefinition" {
				continue // crds/: installed by the first release, left alone by the others
			}
			key := identity(o)
			if prev, ok := owner[key]; ok {
				t.Errorf("%s is rendered by both %s and %s", key, prev, r.name)
			}
			owner[key] = r.name
		}
		checkReferences(t, r.name, r.namespace, objs)
	}
	// Releases in one namespace: distinct Leases, hash-key Secrets, and pods selected.
	a, c := rendered["apic-a"], rendered["apic-c"]
	for _, flag := range []string{"--leader-election-id", "--hash-key-secret"} {
		if argValue(a, flag) == argValue(c, flag) {
			t.Errorf("apic-a and apic-c in one namespace share %s=%s", flag, argValue(a, flag))
		}
	}
	if labelsMatch(serviceOf(a)["spec"].(map[string]any)["selector"], podLabels(deployment(c))) {
		t.Error("apic-a's metrics Service selects apic-c's pods")
	}

	// Helm itself limits a release name to 53 characters; the chart's names need it shorter.
	_, _, err := renderRelease(strings.Repeat("a", 37), "team-a", nil)
	if err == nil || !strings.Contains(err.Error(), "set fullnameOverride") {
		t.Errorf("err = %v, want a too long release name refused", err)
	}
	objs, _, err := renderRelease(strings.Repeat("a", 37), "team-a", map[string]any{"fullnameOverride": "apic"})
	if err != nil {
		t.Fatal(err)
	}
	checkReferences(t, "apic", "team-a", objs)
}

// checkReferences checks that the names objs refer to are objects of the same render (or, for
// the manager's hash-key Secret and Lease, named after the release).
func checkReferences(t *testing.T, prefix, namespace string, objs objects) {
	t.Helper()
	byID := map[string]map[string]any{}
	for _, o := range objs {
		byID[identity(o)] = o
	}
	has := func(kind, ns, name string) bool {
		_, ok := byID[kind+"/"+ns+"/"+name]
		return ok
	}
	for _, o := range objs {
		md := o["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		ns, _ := md["namespace"].(string)
		if o["kind"] != "CustomResourceDefinition" && !strings.HasPrefix(name, prefix+"-") {
			t.Errorf("%s is not named after the release %s", identity(o), prefix)
		}
		if ref, ok := o["roleRef"].(map[string]any); ok {
			refNS := ns
			if ref["kind"] == "ClusterRole" {
				refNS = ""
			}
			if !has(ref["kind"].(string), refNS, ref["name"].(string)) {
				t.Errorf("%s refers to the missing %v", identity(o), ref)
			}
		}
		for _, s := range subjects(o) {
			if !has("ServiceAccount", s["namespace"].(string), s["name"].(string)) {
				t.Errorf("%s binds the missing %v", identity(o), s)
			}
		}
	}
	for _, o := range objs {
		spec, _ := o["spec"].(map[string]any)
		switch o["kind"] {
		case "ValidatingAdmissionPolicyBinding":
			p := spec["paramRef"].(map[string]any)
			if !has("ValidatingAdmissionPolicy", "", spec["policyName"].(string)) || !has("ConfigMap", p["namespace"].(string), p["name"].(string)) {
				t.Errorf("%s refers to a missing policy or parameter: %v", identity(o), spec)
			}
		case "Deployment":
			pod := podSpec(o)
			if !has("ServiceAccount", namespace, pod["serviceAccountName"].(string)) {
				t.Errorf("the manager runs as the missing ServiceAccount %v", pod["serviceAccountName"])
			}
			for _, e := range container(objs)["env"].([]any) {
				if ref, ok := e.(map[string]any)["valueFrom"].(map[string]any)["configMapKeyRef"].(map[string]any); ok && !has("ConfigMap", namespace, ref["name"].(string)) {
					t.Errorf("the manager reads the missing ConfigMap %v", ref["name"])
				}
			}
			vols, _ := pod["volumes"].([]any)
			for _, v := range vols {
				secret := v.(map[string]any)["secret"].(map[string]any)["secretName"]
				if cert := byID["Certificate/"+namespace+"/"+prefix+"-metrics-cert"]; cert == nil || cert["spec"].(map[string]any)["secretName"] != secret {
					t.Errorf("the manager mounts the Secret %v, which no Certificate of the release writes", secret)
				}
			}
			if !labelsMatch(spec["selector"].(map[string]any)["matchLabels"], podLabels(o)) {
				t.Error("the Deployment does not select its pods")
			}
		case "Service":
			if !labelsMatch(spec["selector"], podLabels(deployment(objs))) {
				t.Errorf("%s does not select the manager's pods", identity(o))
			}
		case "ServiceMonitor":
			ep := spec["endpoints"].([]any)[0].(map[string]any)
			svc := serviceOf(objs)
			if !labelsMatch(spec["selector"].(map[string]any)["matchLabels"], svc["metadata"].(map[string]any)["labels"]) {
				t.Error("the ServiceMonitor does not select the metrics Service")
			}
			cred := ep["authorization"].(map[string]any)["credentials"].(map[string]any)
			token := byID["Secret/"+namespace+"/"+cred["name"].(string)]
			if token == nil || token["type"] != "kubernetes.io/service-account-token" || cred["key"] != "token" {
				t.Errorf("the scrape's bearer token is not a ServiceAccount token of the release: %v", cred)
			} else if sa := token["metadata"].(map[string]any)["annotations"].(map[string]any)["kubernetes.io/service-account.name"].(string); !has("ServiceAccount", namespace, sa) {
				t.Errorf("the scrape token is for the missing ServiceAccount %s", sa)
			}
			tls := ep["tlsConfig"].(map[string]any)
			cert := byID["Certificate/"+namespace+"/"+prefix+"-metrics-cert"]["spec"].(map[string]any)
			svcName := svc["metadata"].(map[string]any)["name"].(string) + "." + namespace + ".svc"
			if tls["ca"].(map[string]any)["secret"].(map[string]any)["name"] != cert["secretName"] || tls["serverName"] != svcName ||
				!slices.Contains(cert["dnsNames"].([]any), any(svcName)) {
				t.Errorf("the ServiceMonitor does not verify the metrics certificate (%v) for %s: %v", cert, svcName, tls)
			}
		case "Role":
			for _, r := range o["rules"].([]any) {
				if names, ok := r.(map[string]any)["resourceNames"].([]any); ok && !slices.Equal(names, []any{argValue(objs, "--hash-key-secret")}) {
					t.Errorf("%s grants %v, but the manager's hash-key Secret is %s", identity(o), names, argValue(objs, "--hash-key-secret"))
				}
			}
		}
	}
	if !strings.HasPrefix(argValue(objs, "--leader-election-id"), prefix+"-") || !strings.HasPrefix(argValue(objs, "--hash-key-secret"), prefix+"-") {
		t.Errorf("the manager's Lease or hash-key Secret is not named after the release: %v", managerArgs(objs))
	}
}

// The ServiceMonitor authenticates with a ServiceAccount token from a Secret (never a file in
// the Prometheus pod) and verifies the metrics certificate, unless insecureSkipVerify says not
// to; without a certificate to verify it refuses to render.
func TestChartServiceMonitor(t *testing.T) {
	_, err := renderChartErr(map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true}}})
	if err == nil || !strings.Contains(err.Error(), "metrics.serviceMonitor.insecureSkipVerify: true to scrape without verifying") {
		t.Errorf("err = %v, want a ServiceMonitor without a certificate to verify refused", err)
	}
	_, err = renderChartErr(map[string]any{"metrics": map[string]any{"enabled": false, "serviceMonitor": map[string]any{"enabled": true, "insecureSkipVerify": true}}})
	if err == nil || !strings.Contains(err.Error(), "need metrics.enabled: true") {
		t.Errorf("err = %v, want a ServiceMonitor without metrics refused", err)
	}

	endpoint := func(objs objects) map[string]any {
		sm := objs["ServiceMonitor/apiconnector-controller-manager"]
		if sm == nil {
			t.Fatal("no ServiceMonitor")
		}
		b, _ := yaml.Marshal(sm)
		if strings.Contains(string(b), "bearerTokenFile") || strings.Contains(string(b), "bearerTokenSecret") {
			t.Errorf("the ServiceMonitor uses a deprecated field:\n%s", b)
		}
		return sm["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
	}

	// cert-manager, self-signed: checked by checkReferences in TestChartReleasesSideBySide.
	objs := renderChart(t, everything())
	if objs["Issuer/apiconnector-selfsigned"] == nil {
		t.Error("no self-signed Issuer without an issuerRef")
	}
	if l := objs["ServiceMonitor/apiconnector-controller-manager"]["metadata"].(map[string]any)["labels"].(map[string]any); l["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v lack serviceMonitor.labels", l)
	}

	// cert-manager with a given issuer.
	v := everything()
	v["metrics"].(map[string]any)["certificate"] = map[string]any{"certManager": map[string]any{"enabled": true, "issuerRef": map[string]any{"name": "internal-ca", "kind": "ClusterIssuer"}}}
	objs = renderChart(t, v)
	if objs["Issuer/apiconnector-selfsigned"] != nil {
		t.Error("a self-signed Issuer although issuerRef is given")
	}
	if ref := objs["Certificate/apiconnector-metrics-cert"]["spec"].(map[string]any)["issuerRef"]; !equalJSON(t, ref, map[string]any{"name": "internal-ca", "kind": "ClusterIssuer"}) {
		t.Errorf("issuerRef = %v", ref)
	}

	// A Secret made otherwise.
	objs = renderChart(t, map[string]any{"metrics": map[string]any{"certificate": map[string]any{"secretName": "metrics-tls"}, "serviceMonitor": map[string]any{"enabled": true}}})
	if objs["Certificate/apiconnector-metrics-cert"] != nil {
		t.Error("a Certificate although metrics.certificate.secretName is given")
	}
	tls := endpoint(objs)["tlsConfig"].(map[string]any)
	if !equalJSON(t, tls, map[string]any{"ca": map[string]any{"secret": map[string]any{"name": "metrics-tls", "key": "ca.crt"}},
		"serverName": "apiconnector-controller-manager-metrics.apiconnector-system.svc"}) {
		t.Errorf("tlsConfig = %v", tls)
	}
	if vol := podSpec(deployment(objs))["volumes"].([]any)[0].(map[string]any)["secret"].(map[string]any)["secretName"]; vol != "metrics-tls" {
		t.Errorf("the manager serves metrics from %v, want metrics-tls", vol)
	}

	// Opted out of verifying.
	objs, notes, err := renderRelease("apiconnector", operatorNamespace, map[string]any{"metrics": map[string]any{"serviceMonitor": map[string]any{"enabled": true, "insecureSkipVerify": true}}})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(objs)
	if !equalJSON(t, ep["tlsConfig"], map[string]any{"insecureSkipVerify": true}) {
		t.Errorf("tlsConfig = %v", ep["tlsConfig"])
	}
	if !equalJSON(t, ep["authorization"], map[string]any{"type": "Bearer", "credentials": map[string]any{"name": "apiconnector-metrics-scraper-token", "key": "token"}}) {
		t.Errorf("authorization = %v", ep["authorization"])
	}
	if !strings.Contains(notes, "WARNING: the ServiceMonitor scrapes without verifying") {
		t.Errorf("NOTES.txt does not warn of insecureSkipVerify:\n%s", notes)
	}
	if _, ok := podSpec(deployment(objs))["volumes"]; ok {
		t.Error("the manager mounts a metrics certificate although none is given")
	}
}

// NOTES.txt names what was installed, how to check it, how to start, and what an upgrade needs.
func TestChartNotes(t *testing.T) {
	_, notes, err := renderRelease("apic", "operators", map[string]any{"watchNamespaces": []any{"identity"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"release apic in namespace operators",
		"in the namespaces identity",
		"kubectl -n operators rollout status deployment/apic-controller-manager",
		"kubectl apply -f config/samples/input-validation.yaml",
		"kubectl apply --server-side -f <chart directory>/crds/",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
}

// `helm lint --strict`: no warning or error, with the defaults and with every feature on.
func TestChartLintStrict(t *testing.T) {
	for name, values := range map[string]map[string]any{"defaults": nil, "everything": everything()} {
		t.Run(name, func(t *testing.T) {
			l := lint.RunAll(chartDir, values, operatorNamespace)
			for _, m := range l.Messages {
				if m.Severity >= support.WarningSev {
					t.Error(m)
				}
			}
		})
	}
}

// identity is kind/namespace/name ("" for a cluster-scoped object).
func identity(o map[string]any) string {
	md := o["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	return o["kind"].(string) + "/" + ns + "/" + md["name"].(string)
}

func subjects(o map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := o["subjects"].([]any)
	for _, s := range list {
		out = append(out, s.(map[string]any))
	}
	return out
}

// deployment is the manager's Deployment, the chart's only one.
func deployment(objs objects) map[string]any {
	for _, o := range objs {
		if o["kind"] == "Deployment" {
			return o
		}
	}
	return nil
}

// serviceOf is the metrics Service, the chart's only one.
func serviceOf(objs objects) map[string]any {
	for _, o := range objs {
		if o["kind"] == "Service" {
			return o
		}
	}
	return nil
}

func podSpec(d map[string]any) map[string]any {
	return d["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

func podLabels(d map[string]any) map[string]any {
	return d["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any)
}

// labelsMatch tells whether the selector (a map of labels) selects labels.
func labelsMatch(selector any, labels any) bool {
	sel, _ := selector.(map[string]any)
	l, _ := labels.(map[string]any)
	for k, v := range sel {
		if l[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func managerArgs(objs objects) []string {
	var out []string
	for _, a := range container(objs)["args"].([]any) {
		out = append(out, a.(string))
	}
	return out
}

// argValue is the value of the manager's --flag=value.
func argValue(objs objects, flag string) string {
	for _, a := range managerArgs(objs) {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// equalJSON compares a rendered value with a Go value as their JSON (numbers and empty lists alike).
func equalJSON(t *testing.T, got, want any) bool {
	t.Helper()
	norm := func(v any) any {
		b, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := yaml.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	return reflect.DeepEqual(norm(got), norm(want))
}

// README.md (generated by `make chart-docs`; `make verify-generated` fails when it is stale)
// describes every value.
func TestChartReadmeDescribesEveryValue(t *testing.T) {
	b, err := os.ReadFile(chartDir + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "## Values")
	if !ok {
		t.Fatal("README.md has no Values section: run `make chart-docs`")
	}
	rows := 0
	for _, line := range strings.Split(table, "\n") {
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| ") || len(cells) < 4 || cells[0] == "| Key" {
			continue
		}
		rows++
		if desc := strings.TrimSuffix(strings.TrimSpace(cells[len(cells)-1]), "|"); strings.TrimSpace(desc) == "" {
			t.Errorf("%s has no description in values.yaml (a `# --` comment)", cells[0])
		}
	}
	if rows < 40 {
		t.Errorf("README.md lists %d values: run `make chart-docs`", rows)
	}
}
