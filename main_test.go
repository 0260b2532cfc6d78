package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/apiconnector/operator/controllers"
	"github.com/apiconnector/operator/controllers/children"
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
