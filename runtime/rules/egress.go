package rules

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// NewHTTPClient is the client calls and events use unless Options.HTTPClient is set. It ignores
// proxy environment variables (an outbound call going through a proxy nobody configured for this
// connector is a surprise), bounds every phase (per-call timeouts come from the context), does
// not follow redirects (a redirected POST to an approval system is more likely a
// misconfiguration than intended: the redirect status is the answer), and guards egress.
//
// The egress guard refuses connections to addresses a connector author has no business reaching
// from the runtime: loopback (the pod itself), link-local (cloud metadata services at
// 169.254.169.254), unspecified and multicast addresses, and the Kubernetes API server's Service
// address (KUBERNETES_SERVICE_HOST), and the cloud metadata addresses outside the link-local range
// (metadataAddresses). It checks the address actually dialled, after DNS, so a name
// that resolves to one of them is refused too. allow lists ranges to let through anyway.
func NewHTTPClient(allow []netip.Prefix) *http.Client {
	guard := egressGuard{allow: allow}
	if ip, err := netip.ParseAddr(os.Getenv("KUBERNETES_SERVICE_HOST")); err == nil {
		guard.apiServer = ip.Unmap()
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: guard.control}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = dialer.DialContext
	t.ResponseHeaderTimeout = 10 * time.Second
	// Keep-alive pool: enough idle connections per dependency for the most an Entra tenant sends
	// (200 requests per second across all its connectors) with calls of half a second, 100 in
	// flight, so a busy connector does not pay handshakes; no limit across hosts beyond that.
	t.MaxIdleConnsPerHost = 100
	t.MaxIdleConns = 0
	return &http.Client{
		Transport:     t,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type egressGuard struct {
	allow     []netip.Prefix
	apiServer netip.Addr
}

// control runs before each connection is made, with the resolved address.
func (g egressGuard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress guard: cannot read address %q", address)
	}
	if why := g.refuses(ap.Addr().Unmap()); why != "" {
		return fmt.Errorf("egress to %s refused: %s", ap.Addr(), why)
	}
	return nil
}

// refuses says why ip may not be reached, "" when it may.
func (g egressGuard) refuses(ip netip.Addr) string {
	for _, p := range g.allow {
		if p.Contains(ip) {
			return ""
		}
	}
	switch {
	case ip.IsLoopback():
		return "loopback address"
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast():
		return "link-local address (cloud metadata services live there)"
	case ip.IsUnspecified():
		return "unspecified address"
	case ip.IsMulticast():
		return "multicast address"
	case g.apiServer.IsValid() && ip == g.apiServer:
		return "the Kubernetes API server"
	case metadataAddresses[ip]:
		return "a cloud metadata address"
	}
	return ""
}

// metadataAddresses are cloud metadata and host agent endpoints outside the link-local ranges:
// AWS's over IPv6, Alibaba Cloud's and Azure's WireServer.
var metadataAddresses = map[netip.Addr]bool{
	netip.MustParseAddr("fd00:ec2::254"):   true,
	netip.MustParseAddr("100.100.100.200"): true,
	netip.MustParseAddr("168.63.129.16"):   true,
}
