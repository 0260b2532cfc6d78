package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apiconnector/operator/controllers"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/hack/localcp"
	"github.com/apiconnector/operator/internal/version"
)

func TestFlagLists(t *testing.T) {
	if got, err := networkCIDRs("35.191.0.0/16, 2600:1900::/28"); err != nil || !slices.Equal(got, []string{"35.191.0.0/16", "2600:1900::/28"}) {
		t.Errorf("networkCIDRs = %v, %v", got, err)
	}
	if _, err := networkCIDRs("10.0.0.1/8"); err == nil || !strings.Contains(err.Error(), "did you mean 10.0.0.0/8") {
		t.Errorf("a range with host bits set must be refused at start, naming the network: %v", err)
	}
	if _, err := networkCIDRs("10.0.0.0"); err == nil {
		t.Error("an address without a prefix length must be refused")
	}

	if got, err := patterns(strings.Join(controllers.DefaultAllowedExposureAnnotations, ",")); err != nil || !slices.Equal(got, controllers.DefaultAllowedExposureAnnotations) {
		t.Errorf("the default allow-list does not parse back: %v, %v", got, err)
	}
	if got, err := patterns(""); err != nil || got == nil || len(got) != 0 {
		t.Errorf(`patterns("") = %#v, %v; want an empty list (nothing allowed)`, got, err)
	}
	if _, err := patterns("nginx.ingress.kubernetes.io/[limit"); err == nil {
		t.Error("a malformed pattern must be refused")
	}

	for _, v := range []string{children.DefaultIngressNamespaces, children.DefaultMetricsNamespaces, ""} {
		if _, err := namespaceSelector("--x", v); err != nil {
			t.Errorf("selector %q: %v", v, err)
		}
	}
	if _, err := namespaceSelector("--ingress-namespace-selector", "in (traefik"); err == nil || !strings.Contains(err.Error(), "--ingress-namespace-selector") {
		t.Errorf("a malformed selector must be refused naming the flag: %v", err)
	}
}

// A manager built with the release's -ldflags reports that version with --version and in its
// apiconnector_build_info metric, scraped from the running binary against a real API server.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the manager and starts kube-apiserver")
	}
	cp, err := localcp.Start(".", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Stop)
	const want = "v9.8.7-stamp.1"
	bin, err := cp.Build(".", ".", "manager", "-trimpath", "-ldflags=-X "+version.Symbol+"="+want)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || string(out) != want+"\n" {
		t.Fatalf("manager --version = %q, %v; want %q", out, err, want)
	}

	var logs bytes.Buffer
	mgr, err := cp.StartManager(t.Context(), bin, &logs, "--runtime-image=registry.example/apiconnector-runtime:"+want)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mgr.Stop)
	metric := fmt.Sprintf("apiconnector_build_info{go_version=%q,version=%q} 1\n", runtime.Version(), want)
	var body []byte
	for deadline := time.Now().Add(time.Minute); !bytes.Contains(body, []byte(metric)); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never had %q:\n%s\nmanager logs:\n%s", metric, body, logs.String())
		}
		if res, err := http.Get("http://" + mgr.MetricsAddr + "/metrics"); err == nil {
			body, _ = io.ReadAll(res.Body)
			res.Body.Close()
		}
	}
}
