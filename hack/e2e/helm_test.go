//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/apiconnector/operator/controllers/children"
)

// helmConnector is the connector the Helm-installed operator serves: a sample with documented cases.
const helmConnector = "signup"

// helmInstall is the second install path, last because it replaces the operator: the install.yaml
// install is deleted (`kubectl delete -f install.yaml`: the CRD, and with it every connector), then
// the release's chart is installed from the registry, where the release pushed it as an OCI
// artifact (oci://<registry>/charts/apiconnector-operator, the version of
// dist/apiconnector-operator-<X.Y.Z>.tgz), with `helm install` (hack/tools/helm, the Helm version
// the chart is packaged with), the two NetworkPolicy settings as chart values.
// The operator then serves a connector: Current, routed, its documented cases answered, its runtime
// pulled from the registry by the digest the chart pins.
func (s *suite) helmInstall(t *testing.T) {
	dist := os.Getenv("APIC_E2E_DIST")
	if dist == "" {
		t.Fatal("APIC_E2E_DIST is not set: run through make e2e (or eval $(go run ./hack/cluster env))")
	}
	var before appsv1.Deployment
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: "apiconnector-system", Name: "apiconnector-controller-manager"}, &before); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// --wait: until every object is gone, the CRD and the namespace included.
	if out, err := exec.CommandContext(s.ctx, "kubectl", "delete", "--wait", "--timeout=2m", "-f", filepath.Join(dist, "install.yaml")).CombinedOutput(); err != nil {
		t.Fatalf("kubectl delete -f install.yaml: %v\n%s", err, out)
	}
	s.timings["helm: install.yaml uninstalled"] = time.Since(start)
	// The connector is re-created below under the same name: its old children, controlled by the
	// deleted connector, must be gone first (a child has one controller).
	u := s.connectors[helmConnector].DeepCopy()
	s.waitChildrenGone(t, typed(t, u), false)

	charts, _ := filepath.Glob(filepath.Join(dist, "apiconnector-operator-*.tgz"))
	if len(charts) != 1 {
		t.Fatalf("want one chart in %s, found %v", dist, charts)
	}
	namespace := "apiconnector-system"
	// What hack/cluster/operator-settings.json patches into the install.yaml install, as values.
	start = time.Now()
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(charts[0]), "apiconnector-operator-"), ".tgz")
	chart := "oci://" + registryAddr(t) + "/charts/apiconnector-operator"
	if out, err := exec.CommandContext(s.ctx, "helm", "install", "apiconnector", chart, "--version", version, "--plain-http", "-n", namespace, "--create-namespace",
		"--set", "networkPolicy.ingressCIDRs={"+os.Getenv("APIC_E2E_HOST_IP")+"/32}",
		"--set", "networkPolicy.metricsNamespaceSelector=kubernetes.io/metadata.name="+svcNS,
		"--wait", "--timeout=3m").CombinedOutput(); err != nil {
		t.Fatalf("helm install %s --version %s: %v\n%s", chart, version, err, out)
	}
	s.timings["helm: chart installed, operator available"] = time.Since(start)

	var deps appsv1.DeploymentList
	if err := s.c.List(s.ctx, &deps, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/instance": "apiconnector"}); err != nil || len(deps.Items) != 1 {
		t.Fatalf("the chart's operator Deployment: %v, %d found", err, len(deps.Items))
	}
	after := deps.Items[0]
	// The chart pins the same images as install.yaml.
	if got, want := after.Spec.Template.Spec.Containers[0].Image, before.Spec.Template.Spec.Containers[0].Image; got != want {
		t.Fatalf("the chart's operator image %s, install.yaml's %s", got, want)
	}
	s.pulledImages(t, &after, registryAddr(t)+"/apiconnector-operator@sha256:")

	for _, f := range []string{"resourceVersion", "uid", "managedFields", "generation"} {
		unstructured.RemoveNestedField(u.Object, "metadata", f)
	}
	start = time.Now()
	s.apply(u)
	s.waitCurrent(t, helmConnector, 2*time.Minute)
	s.waitRouted(t, s.entraClient(), helmConnector, "the ingress")
	s.timings["helm: connector Ready and routed after apply"] = time.Since(start)
	var rd appsv1.Deployment
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: u.GetNamespace(), Name: children.DeploymentName(typed(t, u))}, &rd); err != nil {
		t.Fatal(err)
	}
	s.pulledImages(t, &rd, registryAddr(t)+"/apiconnector-runtime@sha256:")
	cases, _ := s.documentedCases(t)
	if len(cases[helmConnector]) == 0 {
		t.Fatalf("no documented case of %s", helmConnector)
	}
	for _, tc := range cases[helmConnector] {
		t.Run(tc.Name, func(t *testing.T) {
			a := s.entra(t, helmConnector, tc.Claims)
			expectAction(t, a, string(tc.Expect.Action), deref(tc.Expect.UserMessage), tc.Expect.Claims)
		})
	}
	t.Logf("chart %s %s installed with helm from the registry; %s answered its %d documented cases",
		chart, version, helmConnector, len(cases[helmConnector]))
}
