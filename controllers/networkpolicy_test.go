package controllers

import (
	"fmt"
	"strings"
	"testing"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// describePolicy writes a NetworkPolicy's rules in one line, for comparisons:
// "in 8080/TCP from [ns a=b]; out 53/UDP,53/TCP to []".
func describePolicy(np *networkingv1.NetworkPolicy) string {
	peers := func(ps []networkingv1.NetworkPolicyPeer) string {
		var out []string
		for _, p := range ps {
			var s []string
			if p.NamespaceSelector != nil {
				s = append(s, "ns "+metav1.FormatLabelSelector(p.NamespaceSelector))
			}
			if p.PodSelector != nil {
				s = append(s, "pods "+metav1.FormatLabelSelector(p.PodSelector))
			}
			if p.IPBlock != nil {
				s = append(s, p.IPBlock.CIDR)
			}
			out = append(out, strings.Join(s, " & "))
		}
		return "[" + strings.Join(out, ", ") + "]"
	}
	ports := func(ps []networkingv1.NetworkPolicyPort) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Port.String()+"/"+string(ptr.Deref(p.Protocol, "")))
		}
		return strings.Join(out, ",")
	}
	var parts []string
	for _, r := range np.Spec.Ingress {
		parts = append(parts, "in "+ports(r.Ports)+" from "+peers(r.From))
	}
	for _, r := range np.Spec.Egress {
		parts = append(parts, "out "+ports(r.Ports)+" to "+peers(r.To))
	}
	return strings.Join(parts, "; ")
}

// formatSelector is how describePolicy writes the operator's selector flag value.
func formatSelector(t *testing.T, s string) string {
	t.Helper()
	sel, err := metav1.ParseToLabelSelector(s)
	if err != nil {
		t.Fatal(err)
	}
	return metav1.FormatLabelSelector(sel)
}

// waitPolicy waits until the connector's NetworkPolicy reads want.
func waitPolicy(t *testing.T, key types.NamespacedName, want string) *networkingv1.NetworkPolicy {
	t.Helper()
	np := &networkingv1.NetworkPolicy{}
	eventually(t, timeout, func() error {
		if err := get(t, key, np); err != nil {
			return err
		}
		if got := describePolicy(np); got != want {
			return fmt.Errorf("policy\n got  %s\n want %s", got, want)
		}
		return nil
	})
	return np
}

// Every connector's pods are fenced: the connector port from the ingress controllers' namespaces,
// the metrics port from the scrapers', out DNS and the ports of its calls (for an in-cluster
// Service, the port of its pods, followed when the Service changes). Opting out removes the
// policy.
func TestNetworkPolicyFollowsTheConnector(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "fenced")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)

	in := "in 8080/TCP from [ns " + formatSelector(t, children.DefaultIngressNamespaces) + "]; " +
		"in 9090/TCP from [ns " + formatSelector(t, children.DefaultMetricsNamespaces) + "]; " +
		"out 53/UDP,53/TCP to []"
	np := waitPolicy(t, key, in)
	if !metav1.IsControlledBy(np, connectorOf(t, key)) {
		t.Errorf("the NetworkPolicy is not controlled by the connector: %+v", np.OwnerReferences)
	}
	if got := np.Spec.PodSelector.MatchLabels; got["app.kubernetes.io/instance"] != "fenced" || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("podSelector %v, policyTypes %v: want the connector's pods, Ingress and Egress", got, np.Spec.PolicyTypes)
	}

	// A call to an in-cluster Service (of another namespace) whose port 80 sends to the pods'
	// 8081, and one outside the cluster.
	svcNS := newNamespace(t)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: svcNS, Name: "approvals"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8081)}}},
	}
	create(t, svc)
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Calls = []apiv1.Call{
			{Name: "approvals", URL: "http://approvals." + svcNS + ".svc/status"},
			{Name: "kyc", URL: "https://kyc.contoso.example:8443/verify"},
		}
	})
	out := " to [0.0.0.0/0, ::/0, ns <none>]"
	waitPolicy(t, key, in+"; out 8081/TCP,8443/TCP"+out)

	// The Service's target port changes: so does the policy, without touching the connector.
	eventually(t, timeout, func() error {
		if err := get(t, client.ObjectKeyFromObject(svc), svc); err != nil {
			return err
		}
		svc.Spec.Ports[0].TargetPort = intstr.FromString("approvals")
		return k8s.Update(t.Context(), svc)
	})
	waitPolicy(t, key, in+"; out 8443/TCP,approvals/TCP"+out)

	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Runtime.NetworkPolicy = &apiv1.RuntimeNetworkPolicy{Enabled: ptr.To(false)}
	})
	eventually(t, timeout, func() error {
		if err := get(t, key, &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("NetworkPolicy still there after opting out (err %v)", err)
		}
		return nil
	})
}
