package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Three releases with every feature on, two of them in one namespace, install side by side on a
// real API server: every object is valid (strict field validation, with cert-manager's and the
// Prometheus Operator's real CRDs), none collides, and each release's RBAC grants its own
// manager and scraper what they need, and not the other release's hash-key Secret.
func TestChartReleasesInstallSideBySide(t *testing.T) {
	cfg, c := apiServer(t)
	crds := os.Getenv("PROMETHEUS_OPERATOR_CRDS")
	if crds == "" {
		t.Fatal("PROMETHEUS_OPERATOR_CRDS is not set: run `make test` (it reads the CRDs from the Prometheus Operator's Go module)")
	}
	// The PrometheusRule of every release is checked by the real CRD's schema.
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{
		filepath.Join(crds, "monitoring.coreos.com_servicemonitors.yaml"), filepath.Join(crds, "monitoring.coreos.com_prometheusrules.yaml"),
	}, ErrorIfPathMissing: true}); err != nil {
		t.Fatal(err)
	}
	ensureNamespace(t, c, "shared")  // everything() watches it
	ensureNamespace(t, c, "grafana") // and puts the dashboard there
	releases := []struct{ name, namespace string }{{"apic-a", "team-a"}, {"apic-b", "team-b"}, {"apic-c", "team-a"}}
	for _, r := range releases {
		ensureNamespace(t, c, r.namespace)
		objs, _, err := renderRelease(r.name, r.namespace, everything())
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, o := range objs {
			switch o["kind"] {
			case "CustomResourceDefinition": // installed with the API server
			default:
				kinds = append(kinds, o["kind"].(string))
			}
		}
		install(t, c, objs, kinds...)
	}

	sa := func(namespace, name string) string { return "system:serviceaccount:" + namespace + ":" + name }
	allowed := func(user string, res *authorizationv1.ResourceAttributes, nonRes *authorizationv1.NonResourceAttributes) bool {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: user, ResourceAttributes: res, NonResourceAttributes: nonRes}}
		if err := c.Create(t.Context(), sar); err != nil {
			t.Fatal(err)
		}
		return sar.Status.Allowed
	}
	// The authorizer reads RBAC from an informer.
	eventually(t, 10*time.Second, func() error {
		if !allowed(sa("team-a", "apic-c-controller-manager"), &authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Name: "apic-c-operator-hash-key", Namespace: "team-a"}, nil) {
			return fmt.Errorf("the RBAC is not in force yet")
		}
		return nil
	})
	for _, check := range []struct {
		user string
		attr authorizationv1.ResourceAttributes
		want bool
	}{
		{sa("team-a", "apic-a-controller-manager"), authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Name: "apic-a-operator-hash-key", Namespace: "team-a"}, true},
		{sa("team-a", "apic-a-controller-manager"), authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Name: "apic-c-operator-hash-key", Namespace: "team-a"}, false},
		{sa("team-b", "apic-b-controller-manager"), authorizationv1.ResourceAttributes{Verb: "create", Group: "coordination.k8s.io", Resource: "leases", Namespace: "team-b"}, true},
		{sa("team-b", "apic-b-controller-manager"), authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets", Namespace: "shared"}, true},
		{sa("team-b", "apic-b-controller-manager"), authorizationv1.ResourceAttributes{Verb: "list", Resource: "secrets", Namespace: "team-a"}, false},
	} {
		if got := allowed(check.user, &check.attr, nil); got != check.want {
			t.Errorf("%s %+v: allowed %v, want %v", check.user, check.attr, got, check.want)
		}
	}
	// Each release's scraper may read the metrics endpoint (what the manager's authorization
	// filter asks the API server).
	for _, r := range releases {
		if !allowed(sa(r.namespace, r.name+"-metrics-scraper"), nil, &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}) {
			t.Errorf("the scraper of %s may not get /metrics", r.name)
		}
	}
}
