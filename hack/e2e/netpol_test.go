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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
)

const (
	fwdName = "fwd-check"
	// denyTarget is the sample connector a deny-all policy is put on, then taken off.
	denyTarget = "signup"
	// The services play the ingress controller (approvals, selected by the forwarded connector's
	// ingress selectors) and another workload (verify).
	ingressRole = "approvals"
	otherRole   = "verify"
)

// applyForwardedConnector adds a connector that trusts a client certificate forwarded by the
// ingress controller: the operator fences it with a NetworkPolicy admitting only the pods its
// ingress selectors name (here the approvals service's pod) to the runtime's port.
func (s *suite) applyForwardedConnector() {
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
    host: fwd.contoso.example
    path: /check
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

// typed converts a connector as applied into the API type the operator's builders take.
func typed(t *testing.T, u *unstructured.Unstructured) *apiv1.APIConnector {
	c := &apiv1.APIConnector{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// networkPolicy proves that NetworkPolicy objects are enforced in this cluster (kube-router's
// policy controller on the node, see hack/cluster) and that the operator's policies let through
// what they must:
//  1. every connector that wants a NetworkPolicy has one, controlled by the connector;
//  2. a deny-all-ingress policy on a sample connector's pods refuses new connections that worked
//     before, from a pod in another namespace and from the host, until it is deleted;
//  3. the forwarded-certificate connector's runtime port answers the pod its ingress selectors
//     name and refuses another pod and the host; its ops port stays open.
func (s *suite) networkPolicy(t *testing.T) {
	if err := netpolHealthy(); err != nil {
		t.Fatalf("NetworkPolicy enforcement (kube-router) is not running: %v", err)
	}
	wanted := 0
	for name, u := range s.connectors {
		c := typed(t, u)
		if !children.WantsNetworkPolicy(c) {
			continue
		}
		wanted++
		var np netv1.NetworkPolicy
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: c.Namespace, Name: children.NetworkPolicyName(c)}, &np); err != nil {
			t.Fatalf("connector %s: NetworkPolicy: %v", name, err)
		}
		if ref := metav1.GetControllerOf(&np); ref == nil || ref.Kind != "APIConnector" || ref.Name != name {
			t.Errorf("NetworkPolicy %s/%s is not controlled by connector %s: %+v", np.Namespace, np.Name, name, ref)
		}
	}
	if s.connectors[fwdName] == nil || wanted == 0 {
		t.Fatalf("no connector with a NetworkPolicy (%d wanted)", wanted)
	}
	t.Logf("%d of %d connectors have their NetworkPolicy", wanted, len(s.connectors))

	// 2. A plain deny on a connector that serves.
	target := s.connectors[denyTarget]
	if target == nil {
		t.Fatalf("sample connector %s not present", denyTarget)
	}
	tc := typed(t, target)
	ips := s.podIPs(t, tc)
	hc := s.entraClient()
	for _, ip := range ips {
		if ok, why := s.reaches(t, otherRole, ip, children.HTTPPort); !ok {
			t.Fatalf("before any policy, %s pod -> %s pod %s: %s", otherRole, denyTarget, ip, why)
		}
		if err := dialHost(ip, children.HTTPPort); err != nil {
			t.Fatalf("before any policy, host -> %s pod %s: %v", denyTarget, ip, err)
		}
	}
	s.waitRouted(t, hc, denyTarget, "the ingress")
	deny := &netv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-deny-all", Namespace: tc.Namespace},
		Spec: netv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: children.SelectorLabels(tc)},
			PolicyTypes: []netv1.PolicyType{netv1.PolicyTypeIngress},
		},
	}
	start := time.Now()
	s.apply(deny)
	eventually(t, s.ctx, time.Minute, "deny policy enforced on "+denyTarget, func() error {
		for _, ip := range ips {
			if ok, _ := s.reaches(t, otherRole, ip, children.HTTPPort); ok {
				return fmt.Errorf("%s pod still reaches %s", otherRole, ip)
			}
			if dialHost(ip, children.HTTPPort) == nil {
				return fmt.Errorf("the host still reaches %s", ip)
			}
		}
		return nil
	})
	// Not checked through Traefik: like any conntrack-based enforcement, kube-router lets
	// established connections live, and Traefik keeps its connections to the pods open.
	s.timings["deny NetworkPolicy enforced after apply"] = time.Since(start)
	if err := s.c.Delete(s.ctx, deny); err != nil {
		t.Fatal(err)
	}
	eventually(t, s.ctx, time.Minute, "deny policy lifted on "+denyTarget, func() error {
		for _, ip := range ips {
			if ok, why := s.reaches(t, otherRole, ip, children.HTTPPort); !ok {
				return errors.New(why)
			}
		}
		return nil
	})
	s.waitRouted(t, hc, denyTarget, "the ingress")

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
		if ok, why := s.reaches(t, otherRole, ip, children.OpsPort); !ok {
			t.Errorf("%s pod -> %s's ops port: %s (probes and metrics must stay open)", otherRole, fwdName, why)
		}
	}
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
