package children

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// connector loads testdata/<name>.input.yaml.
func connector(t *testing.T, name string) *apiv1.APIConnector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".input.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c apiv1.APIConnector
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &c
}

func golden(t *testing.T, name string, objs ...any) {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	path := filepath.Join("testdata", name+".golden.yaml")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./controllers/children -update` to create it)", err)
	}
	if !bytes.Equal(want, buf.Bytes()) {
		t.Errorf("%s differs from the golden file; if the change is intended run `go test ./controllers/children -update`\n--- got:\n%s", path, buf.String())
	}
}

// testNetworkPolicy are the operator's NetworkPolicy settings in the golden files.
var testNetworkPolicy = NetworkPolicyOptions{
	Enabled:           true,
	IngressNamespaces: metav1.LabelSelector{MatchLabels: map[string]string{NamespaceLabel: "traefik"}},
	IngressCIDRs:      []string{"35.191.0.0/16"},
	MetricsNamespaces: metav1.LabelSelector{MatchLabels: map[string]string{NamespaceLabel: "monitoring"}},
}

// testTargetPorts stand for what the reconciler reads from the Services of in-cluster calls:
// approvals.identity.svc:80 sends to the pods' port named http, crm.sales.svc...:8081 to 9000.
var testTargetPorts = map[Destination]intstr.IntOrString{
	{Host: "approvals.identity.svc", Port: 80}:        intstr.FromString("http"),
	{Host: "crm.sales.svc.cluster.local", Port: 8081}: intstr.FromInt32(9000),
	{Host: "not-called.identity.svc", Port: 80}:       intstr.FromInt32(1234),
}

func TestGolden(t *testing.T) {
	opts := Options{RuntimeImage: "apiconnector-runtime:v0.1.0", NetworkPolicy: testNetworkPolicy}
	// One connector shows the PodMonitor the operator creates with --pod-monitors.
	podMonitors := Options{PodMonitor: PodMonitorOptions{Enabled: true, Labels: map[string]string{"release": "prometheus", "app.kubernetes.io/name": "ignored"}}}
	for _, name := range []string{"basic", "full", "client-certificate", "loadbalancer", "gateway", "bearer", "forwarded", "secret-values", "in-cluster", "autoscaling", "entra-basic"} {
		t.Run(name, func(t *testing.T) {
			c := connector(t, name)
			resolved := map[string][]string{}
			for _, l := range c.Spec.Lists {
				if l.ConfigMapRef != nil {
					resolved[l.Name] = []string{"contoso.com", "fabrikam.com"}
				}
			}
			config, err := RenderConfig(c, resolved)
			if err != nil {
				t.Fatal(err)
			}
			hash := ConfigHash(testKey, config, map[string]map[string][]byte{"entra-basic": {"username": []byte("u"), "password": []byte("p")}})
			objs := []any{MakeConfigMap(c, config), MakeDeployment(c, opts, hash), MakeService(c), MakeMetricsService(c)}
			if WantsIngress(c) {
				objs = append(objs, MakeIngress(c))
			}
			if WantsPodDisruptionBudget(c) {
				objs = append(objs, MakePodDisruptionBudget(c))
			}
			if hpa := MakeHorizontalPodAutoscaler(c); hpa != nil {
				objs = append(objs, hpa)
			}
			if pm := MakePodMonitor(c, opts); pm != nil {
				t.Error("a PodMonitor without --pod-monitors")
			}
			if name == "autoscaling" {
				objs = append(objs, MakePodMonitor(c, podMonitors).Object)
			}
			if np := MakeNetworkPolicy(c, opts, testTargetPorts); np != nil {
				objs = append(objs, np)
			}
			if cert := MakeCertificate(c); cert != nil {
				objs = append(objs, cert.Object)
			}
			if route := MakeRoute(c); route != nil {
				objs = append(objs, route.Object)
			}
			golden(t, name, objs...)
		})
	}
}

func TestRenderConfigResolvesListsAndDropsRuntime(t *testing.T) {
	c := connector(t, "full")
	if _, err := RenderConfig(c, nil); err == nil || !strings.Contains(err.Error(), `list "allowedDomains"`) {
		t.Fatalf("an unresolved ConfigMap list must be an error naming the list, got %v", err)
	}
	out, err := RenderConfig(c, map[string][]string{"allowedDomains": {"contoso.com"}})
	if err != nil {
		t.Fatal(err)
	}
	var back apiv1.APIConnector
	if err := yaml.UnmarshalStrict(out, &back); err != nil {
		t.Fatalf("the rendered config must load back with the same schema: %v", err)
	}
	for _, l := range back.Spec.Lists {
		if l.ConfigMapRef != nil {
			t.Errorf("list %s still references a ConfigMap", l.Name)
		}
	}
	if back.Spec.Runtime.Replicas != nil {
		t.Error("runtime settings must not be part of the runtime config (a replica change would roll pods)")
	}
	again, _ := RenderConfig(c, map[string][]string{"allowedDomains": {"contoso.com"}})
	if !bytes.Equal(out, again) {
		t.Error("rendering is not deterministic")
	}

	// The Entra registration is the operator's business, not the runtime's.
	e := connector(t, "entra-basic")
	if e.Spec.Entra == nil {
		t.Fatal("entra-basic.input.yaml has no spec.entra")
	}
	withEntra, err := RenderConfig(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Spec.Entra = nil
	without, _ := RenderConfig(e, nil)
	if !bytes.Equal(withEntra, without) {
		t.Errorf("spec.entra reaches the runtime config (a change of user flows would roll pods):\n%s", withEntra)
	}
}

// Only a Basic connector with spec.entra mounts the credential registered in Entra, optionally
// (the operator writes it after the registration), under registered/ of the secrets directory.
func TestRegisteredBasicCredentialProjection(t *testing.T) {
	registered := func(c *apiv1.APIConnector) []string {
		var out []string
		for _, p := range secretProjections(c) {
			if p.Secret == nil || *p.Secret.Name != EntraBasicSecretName(c) {
				continue
			}
			if p.Secret.Optional == nil || !*p.Secret.Optional {
				t.Errorf("%s: the registered credential's projection is not optional", c.Name)
			}
			for _, it := range p.Secret.Items {
				out = append(out, *it.Key+"->"+*it.Path)
			}
		}
		return out
	}
	want := []string{"username->" + RegisteredSecretsDir + "/username", "password->" + RegisteredSecretsDir + "/password"}
	if got := registered(connector(t, "entra-basic")); !slices.Equal(got, want) {
		t.Errorf("basic with spec.entra: %v, want %v", got, want)
	}
	if got := registered(connector(t, "basic")); got != nil {
		t.Errorf("basic without spec.entra: %v", got)
	}
	cert := connector(t, "client-certificate")
	cert.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}}
	if got := registered(cert); got != nil {
		t.Errorf("client certificate with spec.entra: %v", got)
	}
	bearer := connector(t, "bearer")
	bearer.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}}
	if got := registered(bearer); got != nil {
		t.Errorf("bearer with spec.entra: %v", got)
	}
}

// testKey stands for the operator's hash key.
var testKey = bytes.Repeat([]byte{0x5a}, HashKeySize)

func TestConfigHashChangesWithEveryInput(t *testing.T) {
	base := ConfigHash(testKey, []byte("a"), map[string]map[string][]byte{"s": {"k": []byte("v")}})
	otherKey := bytes.Repeat([]byte{0xa5}, HashKeySize)
	for name, h := range map[string]string{
		"config":     ConfigHash(testKey, []byte("b"), map[string]map[string][]byte{"s": {"k": []byte("v")}}),
		"value":      ConfigHash(testKey, []byte("a"), map[string]map[string][]byte{"s": {"k": []byte("w")}}),
		"key":        ConfigHash(testKey, []byte("a"), map[string]map[string][]byte{"s": {"j": []byte("v")}}),
		"secret":     ConfigHash(testKey, []byte("a"), map[string]map[string][]byte{"t": {"k": []byte("v")}}),
		"boundaries": ConfigHash(testKey, []byte("a"), map[string]map[string][]byte{"s": {"k": []byte("v"), "": nil}}),
		"hash key":   ConfigHash(otherKey, []byte("a"), map[string]map[string][]byte{"s": {"k": []byte("v")}}),
	} {
		if h == base {
			t.Errorf("changing the %s did not change the hash", name)
		}
	}
	if ConfigHash(testKey, []byte("a"), map[string]map[string][]byte{"s": {"k": []byte("v")}}) != base {
		t.Error("the hash is not stable")
	}
}

// unkeyedHash is what anyone could compute from what the connector publishes (the rendered config
// in its ConfigMap) and a guessed Secret value, if the hash were a plain digest: the scheme before
// the hash was keyed.
func unkeyedHash(config []byte, secrets map[string]map[string][]byte) string {
	h := sha256.New()
	WriteHashInput(h, config, secrets)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// Whoever reads the published hash and the rendered config cannot test password guesses against
// it: even the right password does not reproduce it without the operator's key.
func TestConfigHashCannotBeRecomputedFromTheSecretValue(t *testing.T) {
	config := []byte("spec: {}\n")
	secrets := map[string]map[string][]byte{"entra-basic": {"username": []byte("entra"), "password": []byte("correct horse battery staple")}}
	published := ConfigHash(testKey, config, secrets)
	if guess := unkeyedHash(config, secrets); guess == published {
		t.Fatal("the published hash is a plain SHA-256 of the config and the Secret's values: passwords can be guessed offline")
	}
	for _, key := range [][]byte{nil, {}, make([]byte, HashKeySize)} {
		if ConfigHash(key, config, secrets) == published {
			t.Errorf("a guessable key (%d bytes) reproduces the published hash", len(key))
		}
	}
}

func TestChildrenNeverCopyConnectorLabels(t *testing.T) {
	c := connector(t, "full")
	c.Labels = map[string]string{"app.kubernetes.io/instance": "argo-app", "team": "identity"}
	c.Annotations = map[string]string{"argocd.argoproj.io/tracking-id": "app:apiconnector.dev/APIConnector:ns/x"}
	d := MakeDeployment(c, Options{RuntimeImage: "img"}, "h")
	for k := range d.Labels {
		if k == "team" {
			t.Error("connector labels leaked onto the Deployment")
		}
	}
	if d.Labels["app.kubernetes.io/instance"] != c.Name {
		t.Errorf("instance label = %q, want the connector name", d.Labels["app.kubernetes.io/instance"])
	}
	if _, ok := d.Annotations["argocd.argoproj.io/tracking-id"]; ok {
		t.Error("Argo CD tracking annotation leaked onto the Deployment")
	}
}

func TestSecretNames(t *testing.T) {
	got := strings.Join(SecretNames(connector(t, "full")), ",")
	if want := "entra-basic,approvals-token,audit-basic"; got != want {
		t.Errorf("SecretNames = %s, want %s", got, want)
	}
	got = strings.Join(SecretNames(connector(t, "secret-values")), ",")
	if want := "risk-token,approvals-key,audit-key"; got != want {
		t.Errorf("SecretNames = %s, want %s", got, want)
	}
	got = strings.Join(SecretNames(connector(t, "client-certificate")), ",")
	if want := "entra-client-ca,connector-tls"; got != want {
		t.Errorf("SecretNames = %s, want %s", got, want)
	}
}

// The operator's --runtime-egress-allow-cidrs reaches the runtime as --egress-allow-cidr.
func TestEgressAllowReachesTheRuntime(t *testing.T) {
	c := &apiv1.APIConnector{}
	c.Name, c.Namespace = "x", "y"
	args := func(opts Options) string {
		d := MakeDeployment(c, opts, "h")
		return strings.Join(d.Spec.Template.Spec.Containers[0].Args, " ")
	}
	if got := args(Options{RuntimeImage: "img"}); strings.Contains(got, "egress") {
		t.Errorf("args without ranges: %s", got)
	}
	if got := args(Options{RuntimeImage: "img", EgressAllow: []string{"10.0.0.0/8", "fd00::/8"}}); !strings.Contains(got, "--egress-allow-cidr=10.0.0.0/8,fd00::/8") {
		t.Errorf("args: %s", got)
	}
}

// The API server accepts names up to apiv1.MaxNameLength (CRD validation); every name and label
// value derived from such a name must still be valid, or children would be half-created.
func TestDerivedNamesFitTheirLimits(t *testing.T) {
	c := connector(t, "basic")
	c.Name = "a" + strings.Repeat("-b", (apiv1.MaxNameLength-1)/2)
	if len(c.Name) != apiv1.MaxNameLength {
		t.Fatalf("test name has %d characters, want %d", len(c.Name), apiv1.MaxNameLength)
	}
	check := func(what string, errs []string) {
		t.Helper()
		if len(errs) > 0 {
			t.Errorf("%s: %s", what, strings.Join(errs, "; "))
		}
	}
	for _, name := range []string{ServiceName(c), MetricsServiceName(c)} {
		check("Service "+name, validation.IsDNS1035Label(name))
	}
	for _, name := range []string{DeploymentName(c), NetworkPolicyName(c), IngressName(c), PDBName(c), HPAName(c), PodMonitorName(c), ConfigMapName(c), CertificateName(c), EntraBasicSecretName(c)} {
		check(name, validation.IsDNS1123Subdomain(name))
	}
	for k, v := range Labels(c) {
		check("label "+k, validation.IsValidLabelValue(v))
	}
	for k, v := range SelectorLabels(c) {
		check("selector label "+k, validation.IsValidLabelValue(v))
	}
}

// The PodDisruptionBudget follows the fewest replicas the connector runs: replicas, or the
// autoscaler's minReplicas (replicas is then ignored).
func TestPodDisruptionBudgetFollowsMinReplicas(t *testing.T) {
	for _, c := range []struct {
		replicas *int32
		auto     *apiv1.RuntimeAutoscaling
		want     bool
	}{
		{nil, nil, true},
		{ptr.To[int32](1), nil, false},
		{ptr.To[int32](0), nil, false},
		{ptr.To[int32](3), nil, true},
		{ptr.To[int32](3), &apiv1.RuntimeAutoscaling{MinReplicas: 1, MaxReplicas: 5}, false},
		{ptr.To[int32](1), &apiv1.RuntimeAutoscaling{MinReplicas: 2, MaxReplicas: 5}, true},
	} {
		conn := connector(t, "basic")
		conn.Spec.Runtime.Replicas, conn.Spec.Runtime.Autoscaling = c.replicas, c.auto
		if got := WantsPodDisruptionBudget(conn); got != c.want {
			t.Errorf("replicas %v autoscaling %+v: WantsPodDisruptionBudget = %v, want %v", ptr.Deref(c.replicas, -1), c.auto, got, c.want)
		}
		_, fixed := Replicas(conn)
		d := MakeDeployment(conn, Options{}, "h")
		if (d.Spec.Replicas != nil) != fixed || fixed == (c.auto != nil) {
			t.Errorf("autoscaling %+v: the Deployment's replicas are %v, want set only without autoscaling", c.auto, d.Spec.Replicas)
		}
	}
}

// A connector is fenced by default, opts out with spec.runtime.networkPolicy.enabled: false, and
// cannot opt out while it trusts a forwarded client certificate; the operator's default decides
// for connectors that say nothing.
func TestWantsNetworkPolicy(t *testing.T) {
	on, off := Options{NetworkPolicy: NetworkPolicyOptions{Enabled: true}}, Options{}
	for _, c := range []struct {
		input   string
		enabled *bool
		opts    Options
		want    bool
	}{
		{"basic", nil, on, true},
		{"basic", nil, off, false},
		{"basic", ptr.To(false), on, false},
		{"basic", ptr.To(true), off, true},
		{"forwarded", ptr.To(false), on, true},
		{"forwarded", nil, off, true},
	} {
		conn := connector(t, c.input)
		if c.enabled != nil {
			conn.Spec.Runtime.NetworkPolicy = &apiv1.RuntimeNetworkPolicy{Enabled: c.enabled}
		}
		if got := WantsNetworkPolicy(conn, c.opts); got != c.want {
			t.Errorf("%s with enabled %v and operator default %v: WantsNetworkPolicy = %v, want %v",
				c.input, ptr.Deref(c.enabled, false), c.opts.NetworkPolicy.Enabled, got, c.want)
		}
		if np := MakeNetworkPolicy(conn, c.opts, nil); (np != nil) != c.want {
			t.Errorf("%s: MakeNetworkPolicy returned %v, want a policy: %v", c.input, np, c.want)
		}
	}
}

func TestDestinations(t *testing.T) {
	c := connector(t, "in-cluster")
	c.Spec.Authentication = apiv1.Authentication{Bearer: &apiv1.BearerAuth{TenantID: "AAAABBBB-0000-cccc-1111-dddd2222eeee", Audience: "a"}}
	// A fully qualified name with its trailing dot is the same host (and Service).
	c.Spec.Calls = append(c.Spec.Calls, apiv1.Call{Name: "crmRooted", URL: "http://CRM.sales.svc.cluster.local.:8081/orders"})
	var got []string
	for _, d := range Destinations(c) {
		got = append(got, fmt.Sprintf("%s:%d", d.Host, d.Port))
	}
	want := "approvals.identity.svc:80 audit.contoso.example:443 crm.sales.svc.cluster.local:8081 kyc.contoso.example:8443 login.microsoftonline.com:443"
	if strings.Join(got, " ") != want {
		t.Errorf("Destinations = %s\nwant          %s", strings.Join(got, " "), want)
	}
	c.Spec.Authentication.Bearer.OpenIDConfigurationURL = "https://keys.contoso.example:9443/.well-known/openid-configuration"
	if d := Destinations(c); !slices.Contains(d, Destination{"keys.contoso.example", 9443}) {
		t.Errorf("the OpenID configuration's own port is missing: %v", d)
	}
}

func TestClusterServiceHost(t *testing.T) {
	for host, want := range map[string]string{
		"approvals.identity.svc":               "identity/approvals",
		"approvals.identity.svc.cluster.local": "identity/approvals",
		"approvals.svc":                        "",
		"a.b.c.svc":                            "",
		".identity.svc":                        "",
		"approvals.identity.example":           "",
		"svc":                                  "",
	} {
		ns, name, ok := apiv1.ClusterServiceHost(host)
		got := ""
		if ok {
			got = ns + "/" + name
		}
		if got != want {
			t.Errorf("ClusterServiceHost(%q) = %q, want %q", host, got, want)
		}
	}
}

// The keys of passwordDecryption are mounted, hashed and watched like the other Secret keys: the
// runtime reads them at <outbound>/secret-keys/<Secret>/<key>.
func TestPasswordDecryptionKeysAreSecretKeys(t *testing.T) {
	c := &apiv1.APIConnector{}
	c.Spec.Step = apiv1.StepOnPasswordSubmit
	c.Spec.Authentication.Bearer = &apiv1.BearerAuth{TenantID: "aaaabbbb-0000-cccc-1111-dddd2222eeee", Audience: "a"}
	c.Spec.PasswordDecryption = &apiv1.PasswordDecryption{Keys: []apiv1.SecretKeySelector{{Name: "jit", Key: "current.pem"}, {Name: "jit", Key: "next.pem"}}}
	if got := SecretKeyRefs(c); len(got) != 2 || got[1].Key != "next.pem" {
		t.Errorf("SecretKeyRefs = %v", got)
	}
	if got := strings.Join(SecretNames(c), ","); got != "jit" {
		t.Errorf("SecretNames = %s", got)
	}
}

// The operator's --runtime-traces-endpoint reaches the runtime as OTEL_EXPORTER_OTLP_ENDPOINT,
// and the connector's NetworkPolicy admits the endpoint's port; without it, neither.
func TestTracesEndpointReachesTheRuntime(t *testing.T) {
	conn := connector(t, "basic")
	env := func(opts Options) map[string]string {
		out := map[string]string{}
		for _, e := range MakeDeployment(conn, opts, "h").Spec.Template.Spec.Containers[0].Env {
			out[*e.Name] = ptr.Deref(e.Value, "")
		}
		return out
	}
	egress := func(opts Options) []string {
		var out []string
		for _, r := range MakeNetworkPolicy(conn, opts, nil).Spec.Egress {
			for _, p := range r.Ports {
				out = append(out, p.Port.String())
			}
		}
		return out
	}
	opts := Options{RuntimeImage: "img", NetworkPolicy: NetworkPolicyOptions{Enabled: true}}
	if _, ok := env(opts)["OTEL_EXPORTER_OTLP_ENDPOINT"]; ok || slices.Contains(egress(opts), "4318") {
		t.Errorf("without an endpoint: env %v, egress ports %v", env(opts), egress(opts))
	}
	opts.TracesEndpoint = "http://otel-collector.observability.svc:4318"
	if got := env(opts)["OTEL_EXPORTER_OTLP_ENDPOINT"]; got != opts.TracesEndpoint {
		t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT = %q, want %q", got, opts.TracesEndpoint)
	}
	if got := egress(opts); !slices.Contains(got, "4318") {
		t.Errorf("egress ports %v do not admit the traces endpoint's 4318", got)
	}
}
