//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	netv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
)

const (
	fwdName  = "fwd-check"
	fwdHost  = "fwd.contoso.example"
	fwdTLS   = "fwd-contoso-example-tls"
	egrName  = "egress-check"
	egrHost  = "egress.contoso.example"
	egrTLS   = "egress-contoso-example-tls"
	egrBasic = "egress-check-basic"
	egrFail  = "The egress check call failed."
	// The services play the ingress controller (approvals, selected by the forwarded connector's
	// ingress selectors) and another workload (verify), whose namespace the e2e operator's
	// --metrics-namespace-selector names (hack/cluster/operator-settings.json).
	ingressRole = "approvals"
	otherRole   = "verify"
)

// operatorOptions are the settings WantsNetworkPolicy reads as the e2e operator runs them
// (hack/cluster/operator-settings.json): --network-policies is left at its default, on.
var operatorOptions = children.Options{NetworkPolicy: children.NetworkPolicyOptions{Enabled: true}}

// applyForwardedConnector adds a connector that trusts a client certificate forwarded by the
// ingress controller: the operator fences it with a NetworkPolicy admitting only the pods its
// ingress selectors name (here the approvals service's pod) to the runtime's port.
func (s *suite) applyForwardedConnector() {
	s.applySecret(ns, fwdTLS, corev1.SecretTypeTLS, s.serverCert(fwdHost))
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: `+fwdName+`, namespace: `+ns+`}
spec:
  step: PostFederationSignup
  authentication:
    clientCertificate:
      secretRef: {name: mtls-client-ca}
      allowedSubjects: [entra-trusted]
      forwarded:
        header: X-Forwarded-Tls-Client-Cert
        trustedProxies: [10.244.0.0/24]
        ingressNamespaceSelector: {matchLabels: {kubernetes.io/metadata.name: `+svcNS+`}}
        ingressPodSelector: {matchLabels: {app: `+ingressRole+`}}
  exposure:
    host: `+fwdHost+`
    path: /check
    tls: {secretName: `+fwdTLS+`}
  rules:
    - name: blocked-domain
      when: "claims.?email.orValue('').endsWith('@blocked.example')"
      block: {message: Sign-ups from this domain are closed.}
`), &u.Object); err != nil {
		s.t.Fatal(err)
	}
	s.connectors[fwdName] = u
	s.apply(u)
}

// applyEgressConnector adds a connector that calls the sink by its ClusterIP, which users must
// not do: its NetworkPolicy admits the URL's port 443, but the connection reaches the sink's pod
// on 8443 after the Service's address translation, so the policy refuses it. Called by its
// cluster DNS name, the controller would have admitted the target port.
func (s *suite) applyEgressConnector() {
	s.applySecret(ns, egrTLS, corev1.SecretTypeTLS, s.serverCert(egrHost))
	s.passwords[egrBasic] = randomString()
	s.applySecret(ns, egrBasic, corev1.SecretTypeOpaque, map[string]string{"username": "entra", "password": s.passwords[egrBasic]})
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: `+egrName+`, namespace: `+ns+`}
spec:
  step: PostAttributeCollection
  authentication:
    basic: {secretRef: {name: `+egrBasic+`}}
  exposure:
    host: `+egrHost+`
    path: /check
    tls: {secretName: `+egrTLS+`}
  calls:
    - name: sink
      url: https://`+s.svcIP["sink"]+`/api/egress-check
      method: POST
      body: "{'email': claims.?email.orValue('')}"
      timeout: 3s
      failurePolicy: Fail
  claims:
    extension_EgressStatus: "string(calls.sink.status)"
  failureMessage: `+egrFail+`
`), &u.Object); err != nil {
		s.t.Fatal(err)
	}
	s.connectors[egrName] = u
	s.apply(u)
}

// typed converts a connector as applied into the API type the operator's builders take.
func typed(t *testing.T, u *unstructured.Unstructured) *apiv1.APIConnector {
	c := &apiv1.APIConnector{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// networkPolicy proves that the operator's NetworkPolicies are enforced in this cluster
// (kube-router's policy controller on the node, see hack/cluster) before any connector is called,
// so every later step's traffic (Entra-like calls through Traefik, calls to the services, events)
// passes them:
//  1. every connector has its NetworkPolicy (the operator's default), controlled by the connector;
//  2. on every connector's pods the connector port admits the host (Traefik's source, the e2e
//     operator's --ingress-cidrs) and refuses the verify service's pod, which is no ingress
//     controller; LoadBalancer connectors admit both. The metrics port admits that pod (its
//     namespace is the e2e operator's metrics namespace);
//  3. the forwarded-certificate connector's port admits only the pod its ingress selectors name;
//  4. egress: a call the policy does not admit (the sink's ClusterIP, translated to a port the
//     policy does not name) is refused and the connector answers its failureMessage, until the
//     connector opts out (spec.runtime.networkPolicy.enabled: false): the controller deletes the
//     policy and the same call, and the verify pod, get through.
func (s *suite) networkPolicy(t *testing.T) {
	if err := netpolHealthy(); err != nil {
		t.Fatalf("NetworkPolicy enforcement (kube-router) is not running: %v", err)
	}
	// 1.
	for name, u := range s.connectors {
		c := typed(t, u)
		if !children.WantsNetworkPolicy(c, operatorOptions) {
			t.Errorf("connector %s does not want a NetworkPolicy: every connector gets one by default", name)
			continue
		}
		var np netv1.NetworkPolicy
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: c.Namespace, Name: children.NetworkPolicyName(c)}, &np); err != nil {
			t.Fatalf("connector %s: NetworkPolicy: %v", name, err)
		}
		if ref := metav1.GetControllerOf(&np); ref == nil || ref.Kind != "APIConnector" || ref.Name != name {
			t.Errorf("NetworkPolicy %s/%s is not controlled by connector %s: %+v", np.Namespace, np.Name, name, ref)
		}
	}
	t.Logf("all %d connectors have their NetworkPolicy", len(s.connectors))

	// 2. Refusals first, with time for kube-router to program pods that just started.
	start := time.Now()
	checked := 0
	for name, u := range s.connectors {
		c := typed(t, u)
		if name == fwdName {
			continue
		}
		// A LoadBalancer keeps no pod address: its connector port admits every source.
		open := c.Spec.Exposure.Type == apiv1.ExposureLoadBalancer
		want := "refused"
		if open {
			want = "admitted"
		}
		for _, ip := range s.podIPs(t, c) {
			checked++
			eventually(t, s.ctx, time.Minute, fmt.Sprintf("%s pod -> %s %s:%d %s", otherRole, name, ip, children.HTTPPort, want), func() error {
				if ok, why := s.reaches(t, otherRole, ip, children.HTTPPort); ok != open {
					return fmt.Errorf("connected: %v %s", ok, why)
				}
				return nil
			})
			if err := dialHost(ip, children.HTTPPort); err != nil {
				t.Errorf("the host (Traefik's source) -> %s %s:%d: %v", name, ip, children.HTTPPort, err)
			}
			if ok, why := s.reaches(t, otherRole, ip, children.OpsPort); !ok {
				t.Errorf("%s (metrics namespace) -> %s's metrics port: %s", otherRole, name, why)
			}
		}
	}
	s.timings["connectors' NetworkPolicies enforced (checked)"] = time.Since(start)
	t.Logf("%d runtime pods: connector port refused to a non-ingress pod (admitted for LoadBalancer), admitted to the host; metrics port admitted to the metrics namespace", checked)

	// 3. The forwarded-certificate connector's own policy.
	fc := typed(t, s.connectors[fwdName])
	for _, ip := range s.podIPs(t, fc) {
		eventually(t, s.ctx, time.Minute, "the ingress pod reaches "+fwdName, func() error {
			if ok, why := s.reaches(t, ingressRole, ip, children.HTTPPort); !ok {
				return errors.New(why)
			}
			return nil
		})
		if ok, why := s.reaches(t, otherRole, ip, children.HTTPPort); ok {
			t.Errorf("%s pod reached %s's runtime port %s:%d: its NetworkPolicy admits only the ingress pods", otherRole, fwdName, ip, children.HTTPPort)
		} else {
			t.Logf("refused as it must be: %s", why)
		}
		if err := dialHost(ip, children.HTTPPort); err == nil {
			t.Errorf("the host reached %s's runtime port %s:%d", fwdName, ip, children.HTTPPort)
		}
	}

	// 4. Egress.
	claims := map[string]any{"email": "egress@contoso.example"}
	expectAction(t, s.entra(t, egrName, claims), "ShowBlockPage", egrFail, nil)
	if n := len(s.sinkRecords(t, "/api/egress-check")); n != 0 {
		t.Fatalf("the sink received %d calls the NetworkPolicy must refuse", n)
	}
	u := s.connectors[egrName].DeepCopy()
	if err := unstructured.SetNestedField(u.Object, false, "spec", "runtime", "networkPolicy", "enabled"); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	s.apply(u)
	s.connectors[egrName] = u
	eventually(t, s.ctx, time.Minute, "NetworkPolicy of "+egrName+" deleted", func() error {
		err := s.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: children.NetworkPolicyName(typed(t, u))}, &netv1.NetworkPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	eventually(t, s.ctx, time.Minute, egrName+"'s call gets through without its policy", func() error {
		a := s.entra(t, egrName, claims)
		if a.status != 200 || a.body["action"] != "Continue" {
			return fmt.Errorf("answer %s", a)
		}
		expectAction(t, a, "Continue", "", map[string]string{"extension_EgressStatus": "202"})
		return nil
	})
	s.timings["egress admitted after opting out of the NetworkPolicy"] = time.Since(start)
	if n := len(s.sinkRecords(t, "/api/egress-check")); n == 0 {
		t.Error("the sink saw no call after the opt-out")
	}
	for _, ip := range s.podIPs(t, typed(t, u)) {
		if ok, why := s.reaches(t, otherRole, ip, children.HTTPPort); !ok {
			t.Errorf("without its NetworkPolicy, %s is still fenced: %s", egrName, why)
		}
	}
	s.waitCurrent(t, egrName, time.Minute)
}

// netpolHealthy asks kube-router's health endpoint (APIC_E2E_NETPOL_HEALTH from `cluster env`).
func netpolHealthy() error {
	u := os.Getenv("APIC_E2E_NETPOL_HEALTH")
	if u == "" {
		return errors.New("APIC_E2E_NETPOL_HEALTH is not set: run through make e2e (or eval $(go run ./hack/cluster env))")
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return nil
}

// podIPs returns the IPs of the connector's ready runtime pods.
func (s *suite) podIPs(t *testing.T, c *apiv1.APIConnector) []string {
	var ips []string
	eventually(t, s.ctx, time.Minute, "ready pods of "+c.Name, func() error {
		var pods corev1.PodList
		if err := s.c.List(s.ctx, &pods, client.InNamespace(c.Namespace), client.MatchingLabels(children.SelectorLabels(c))); err != nil {
			return err
		}
		ips = nil
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && p.Status.PodIP != "" && podReady(&p) {
				ips = append(ips, p.Status.PodIP)
			}
		}
		if len(ips) == 0 {
			return errors.New("none")
		}
		return nil
	})
	return ips
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// reaches reports whether the pod of an e2e service opens a TCP connection to ip:port (its
// /admin/dial), and why not; the test fails when the service cannot be asked.
func (s *suite) reaches(t *testing.T, role, ip string, port int32) (bool, string) {
	addr := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + s.svcIP[role] + "/admin/dial?addr=" + url.QueryEscape(addr))
	if err != nil {
		t.Fatalf("ask %s to dial %s: %v", role, addr, err)
	}
	defer resp.Body.Close()
	var out struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, ""
	case http.StatusBadGateway:
		return false, fmt.Sprintf("%s pod -> %s: %s", role, addr, out.Error)
	}
	t.Fatalf("ask %s to dial %s: %s", role, addr, resp.Status)
	return false, ""
}

// dialHost opens a TCP connection from the host (the e2e client) to ip:port.
func dialHost(ip string, port int32) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))), 3*time.Second)
	if err == nil {
		conn.Close()
	}
	return err
}
