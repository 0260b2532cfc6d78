package children

import (
	"cmp"
	"net/url"
	"slices"
	"strconv"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	netv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
)

// NetworkPolicyOptions are the operator-wide settings of the connectors' NetworkPolicies.
type NetworkPolicyOptions struct {
	// Enabled is what a connector without spec.runtime.networkPolicy.enabled gets.
	Enabled bool
	// IngressNamespaces select the namespaces of the ingress controllers' (and Gateways') pods,
	// admitted to the connector port. An empty selector selects every namespace.
	IngressNamespaces metav1.LabelSelector
	// IngressCIDRs are admitted to the connector port too: load balancers that send to pod
	// addresses directly from outside the cluster.
	IngressCIDRs []string
	// MetricsNamespaces select the namespaces of the pods that scrape the metrics port. An empty
	// selector selects every namespace.
	MetricsNamespaces metav1.LabelSelector
}

// The operator's defaults for NetworkPolicyOptions, as label selectors on namespaces: where the
// common ingress controllers and Gateway implementations install themselves (k3s and RKE2 run
// theirs in kube-system), and where the common Prometheus installations run.
const (
	DefaultIngressNamespaces = "kubernetes.io/metadata.name in (ingress-nginx,traefik,haproxy-controller,kube-system,envoy-gateway-system,istio-ingress,istio-system,nginx-gateway,app-routing-system)"
	DefaultMetricsNamespaces = "kubernetes.io/metadata.name in (monitoring,prometheus,observability,openshift-monitoring,openshift-user-workload-monitoring)"
)

// NamespaceLabel is the label the API server sets on every namespace to its name.
const NamespaceLabel = "kubernetes.io/metadata.name"

// WantsNetworkPolicy reports whether the connector's pods are fenced: always when it trusts a
// forwarded client certificate (the header is a bearer credential, only the ingress controller
// may send it), else as spec.runtime.networkPolicy.enabled says, else as the operator says.
func WantsNetworkPolicy(c *apiv1.APIConnector, opts Options) bool {
	if cc := c.Spec.Authentication.ClientCertificate; cc != nil && cc.Forwarded != nil {
		return true
	}
	if np := c.Spec.Runtime.NetworkPolicy; np != nil && np.Enabled != nil {
		return *np.Enabled
	}
	return opts.NetworkPolicy.Enabled
}

// Destination is a host and TCP port the runtime connects to.
type Destination struct {
	Host string
	Port int32
}

// Destinations are where the runtime connects: every call, every event sink and, for bearer
// connectors, the OpenID configuration. Sorted, without duplicates. URLs that do not parse are
// left out: the rules compiler refuses them before anything is applied.
func Destinations(c *apiv1.APIConnector) []Destination {
	var urls []string
	for _, call := range c.Spec.Calls {
		urls = append(urls, call.URL)
	}
	for _, ev := range c.Spec.Events {
		urls = append(urls, ev.Sink.URL)
	}
	if b := c.Spec.Authentication.Bearer; b != nil {
		urls = append(urls, b.DiscoveryURL())
	}
	var out []Destination
	for _, raw := range urls {
		if d, ok := destination(raw); ok && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b Destination) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// destination is the host and port an http or https URL connects to.
func destination(raw string) (Destination, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return Destination{}, false
	}
	port := map[string]int32{"http": 80, "https": 443}[u.Scheme]
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return Destination{}, false
		}
		port = int32(n)
	}
	if port == 0 {
		return Destination{}, false
	}
	// A fully qualified name may end in a dot (written so to skip the resolver's search list):
	// the same host, and the same Service for apiv1.ClusterServiceHost.
	return Destination{Host: strings.TrimSuffix(strings.ToLower(u.Hostname()), "."), Port: port}, true
}

// MakeNetworkPolicy fences the connector's runtime pods. Nil when the connector is not fenced
// (WantsNetworkPolicy).
//
// In: the connector port (8080) only from the pods spec.authentication.clientCertificate.forwarded
// selects when it is set; from anywhere with exposure type LoadBalancer (the load balancer keeps
// no pod address, and the runtime terminates TLS and authenticates every request); otherwise from
// the ingress controllers' namespaces, opts.NetworkPolicy.IngressCIDRs and the namespaces of the
// connector's Gateways. The metrics port (9090) only from the metrics scrapers' namespaces. The
// kubelet's probes come from the node, which NetworkPolicies always admit.
//
// Out: DNS (UDP and TCP 53) to any address, so CoreDNS and node-local caches both work; and the
// ports of Destinations to any address: a NetworkPolicy cannot name hosts, and the runtime's
// egress guard refuses loopback, link-local, metadata and API server addresses itself. Policies
// apply after a Service's address translation, so for an in-cluster Service host targetPorts
// gives the port of the Service's pods (the reconciler reads it from the Service).
func MakeNetworkPolicy(c *apiv1.APIConnector, opts Options, targetPorts map[Destination]intstr.IntOrString) *netv1ac.NetworkPolicyApplyConfiguration {
	if !WantsNetworkPolicy(c, opts) {
		return nil
	}
	o := opts.NetworkPolicy
	serving := netv1ac.NetworkPolicyIngressRule().WithPorts(tcpPort(intstr.FromInt32(HTTPPort)))
	switch cc := c.Spec.Authentication.ClientCertificate; {
	case cc != nil && cc.Forwarded != nil:
		serving.WithFrom(netv1ac.NetworkPolicyPeer().
			WithNamespaceSelector(labelSelector(cc.Forwarded.IngressNamespaceSelector)).
			WithPodSelector(labelSelector(cc.Forwarded.IngressPodSelector)))
	case c.Spec.Exposure.Type == apiv1.ExposureLoadBalancer:
		// No from: every source.
	default:
		serving.WithFrom(netv1ac.NetworkPolicyPeer().WithNamespaceSelector(labelSelector(o.IngressNamespaces)))
		for _, cidr := range o.IngressCIDRs {
			serving.WithFrom(netv1ac.NetworkPolicyPeer().WithIPBlock(netv1ac.IPBlock().WithCIDR(cidr)))
		}
		for _, ns := range gatewayNamespaces(c) {
			serving.WithFrom(namespacePeer(ns))
		}
	}
	metrics := netv1ac.NetworkPolicyIngressRule().
		WithFrom(netv1ac.NetworkPolicyPeer().WithNamespaceSelector(labelSelector(o.MetricsNamespaces))).
		WithPorts(tcpPort(intstr.FromInt32(OpsPort)))

	dns := netv1ac.NetworkPolicyEgressRule().WithPorts(
		netv1ac.NetworkPolicyPort().WithProtocol(corev1.ProtocolUDP).WithPort(intstr.FromInt32(53)),
		tcpPort(intstr.FromInt32(53)))
	spec := netv1ac.NetworkPolicySpec().
		WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(c))).
		WithPolicyTypes(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress).
		WithIngress(serving, metrics).
		WithEgress(dns)
	if ports := egressPorts(c, opts, targetPorts); len(ports) > 0 {
		spec.WithEgress(netv1ac.NetworkPolicyEgressRule().
			WithTo(
				netv1ac.NetworkPolicyPeer().WithIPBlock(netv1ac.IPBlock().WithCIDR("0.0.0.0/0")),
				netv1ac.NetworkPolicyPeer().WithIPBlock(netv1ac.IPBlock().WithCIDR("::/0")),
				// Some network plugins do not match pod addresses with ipBlock: in-cluster
				// Services are admitted by namespace.
				netv1ac.NetworkPolicyPeer().WithNamespaceSelector(metav1ac.LabelSelector())).
			WithPorts(ports...))
	}
	return netv1ac.NetworkPolicy(NetworkPolicyName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithSpec(spec)
}

// egressPorts are the TCP ports of the connector's destinations and of the traces endpoint,
// numbers in order then names. The traces endpoint's port is its URL's: an in-cluster collector's
// Service must listen on its pods' port (the OpenTelemetry Collector's 4318 does).
func egressPorts(c *apiv1.APIConnector, opts Options, targetPorts map[Destination]intstr.IntOrString) []*netv1ac.NetworkPolicyPortApplyConfiguration {
	var ports []intstr.IntOrString
	for _, d := range Destinations(c) {
		p, ok := targetPorts[d]
		if !ok {
			p = intstr.FromInt32(d.Port)
		}
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	if d, ok := destination(opts.TracesEndpoint); ok && !slices.Contains(ports, intstr.FromInt32(d.Port)) {
		ports = append(ports, intstr.FromInt32(d.Port))
	}
	slices.SortFunc(ports, func(a, b intstr.IntOrString) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.IntVal, b.IntVal), cmp.Compare(a.StrVal, b.StrVal))
	})
	out := make([]*netv1ac.NetworkPolicyPortApplyConfiguration, 0, len(ports))
	for _, p := range ports {
		out = append(out, tcpPort(p))
	}
	return out
}

// gatewayNamespaces are the namespaces of the Gateways the connector's route attaches to: their
// proxies run there with most implementations.
func gatewayNamespaces(c *apiv1.APIConnector) []string {
	if !WantsRoute(c) {
		return nil
	}
	var out []string
	for _, p := range c.Spec.Exposure.Gateway.ParentRefs {
		ns := ParentNamespace(c, p)
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

func namespacePeer(ns string) *netv1ac.NetworkPolicyPeerApplyConfiguration {
	return netv1ac.NetworkPolicyPeer().WithNamespaceSelector(metav1ac.LabelSelector().WithMatchLabels(map[string]string{NamespaceLabel: ns}))
}

func tcpPort(p intstr.IntOrString) *netv1ac.NetworkPolicyPortApplyConfiguration {
	return netv1ac.NetworkPolicyPort().WithProtocol(corev1.ProtocolTCP).WithPort(p)
}
