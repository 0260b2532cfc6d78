package v1alpha1

import (
	"net/netip"
	"strings"
)

// Hosts a call or event sink may reach over plain http with credentials, because the traffic
// stays inside the cluster (its Services) or the pod (loopback). The CRD's documentation, the
// runtime's TLS check and the operator's NetworkPolicy builder read them from here.

// clusterServiceSuffixes are the DNS suffixes of the cluster's Services, longest first.
var clusterServiceSuffixes = []string{".svc.cluster.local", ".svc"}

// IsClusterServiceHost reports whether host is in the cluster's Service domain (*.svc,
// *.svc.cluster.local; a fully qualified name's trailing dot is ignored).
func IsClusterServiceHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, s := range clusterServiceSuffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// ClusterServiceHost splits a cluster Service's DNS name, <service>.<namespace>.svc or
// <service>.<namespace>.svc.cluster.local (a trailing dot ignored); ok is false for other hosts.
func ClusterServiceHost(host string) (namespace, name string, ok bool) {
	host = strings.TrimSuffix(host, ".")
	for _, suffix := range clusterServiceSuffixes {
		if rest, found := strings.CutSuffix(host, suffix); found {
			name, namespace, ok = strings.Cut(rest, ".")
			if !ok || name == "" || namespace == "" || strings.Contains(namespace, ".") {
				return "", "", false
			}
			return namespace, name, true
		}
	}
	return "", "", false
}

// IsLoopbackHost reports whether host is localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
