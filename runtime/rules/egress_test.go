package rules

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// The default client refuses loopback, link-local, unspecified and multicast addresses and the
// API server's Service address, on the address it dials (a name resolving to loopback is refused
// too), unless a range allows it.
func TestEgressGuard(t *testing.T) {
	g := egressGuard{apiServer: netip.MustParseAddr("10.96.0.1")}
	for addr, want := range map[string]string{
		"127.0.0.1": "loopback", "::1": "loopback", "169.254.169.254": "link-local", "fe80::1": "link-local",
		"0.0.0.0": "unspecified", "239.1.2.3": "multicast", "10.96.0.1": "API server",
		"fd00:ec2::254": "metadata", "100.100.100.200": "metadata", "168.63.129.16": "metadata",
		"10.96.0.2": "", "203.0.113.7": "", "2001:db8::1": "",
	} {
		got := g.refuses(netip.MustParseAddr(addr))
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
	g.allow = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}
	if why := g.refuses(netip.MustParseAddr("169.254.169.254")); why != "" {
		t.Errorf("allowed range refused: %s", why)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "{}") }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	for _, url := range []string{srv.URL, "http://localhost" + port} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		_, err := NewHTTPClient(nil).Do(req)
		if err == nil || !strings.Contains(err.Error(), "refused: loopback address") {
			t.Errorf("%s: %v, want the guard's refusal", url, err)
		}
		res, err := NewHTTPClient([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}).Do(req)
		if err != nil {
			t.Errorf("%s with loopback allowed: %v", url, err)
		} else {
			res.Body.Close()
		}
	}
}
