package config_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// The envtest tests install what config/ and the chart render on a real kube-apiserver and etcd
// (built from source by hack/envtest-assets.sh), started once for the package and only by the
// tests that need it.

var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
	scheme  = runtime.NewScheme()
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiv1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
		}
	}
	os.Exit(code)
}

// apiServer is the package's API server (started on first use) with the operator's CRD and
// cert-manager's and the Gateway API's, and an admin client.
func apiServer(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	envOnce.Do(func() {
		for _, v := range []string{"KUBEBUILDER_ASSETS", "CERT_MANAGER_CRDS", "GATEWAY_API_CRDS", "PROMETHEUS_OPERATOR_CRDS"} {
			if os.Getenv(v) == "" {
				envErr = fmt.Errorf("%s is not set: run `make test` (it builds kube-apiserver and etcd and reads the CRDs from their Go modules)", v)
				return
			}
		}
		env = &envtest.Environment{
			// The PodMonitor CRD: the manager's role has a rule for the PodMonitors it makes.
			CRDDirectoryPaths: []string{"crd/bases", os.Getenv("CERT_MANAGER_CRDS"), os.Getenv("GATEWAY_API_CRDS"),
				filepath.Join(os.Getenv("PROMETHEUS_OPERATOR_CRDS"), "monitoring.coreos.com_podmonitors.yaml")},
			ErrorIfCRDPathMissing: true,
		}
		envCfg, envErr = env.Start()
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	c, err := client.New(envCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return envCfg, c
}

// ensureNamespace creates the namespace unless it exists.
func ensureNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	err := c.Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// install creates the rendered objects of the given kinds and deletes them when the test ends.
// Strict, as `kubectl apply --server-side` is: a field the API server does not know is an error
// here, not silently dropped.
func install(t *testing.T, c client.Client, objs objects, kinds ...string) {
	t.Helper()
	want := map[string]bool{}
	for _, k := range kinds {
		want[k] = true
	}
	for _, k := range keys(objs) {
		if !want[objs[k]["kind"].(string)] {
			continue
		}
		u := &unstructured.Unstructured{Object: objs[k]}
		if err := c.Create(t.Context(), u, client.FieldValidation("Strict")); err != nil {
			t.Fatalf("install %s: %v", k, err)
		}
		t.Cleanup(func() {
			if err := c.Delete(context.Background(), u); client.IgnoreNotFound(err) != nil {
				t.Errorf("uninstall %s: %v", k, err)
			}
		})
	}
}

// sample reads the Secret and the APIConnector of a file in config/samples, moved to namespace.
func sample(t *testing.T, file, namespace string) (*corev1.Secret, *apiv1.APIConnector) {
	t.Helper()
	b, err := os.ReadFile("samples/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var secret *corev1.Secret
	var conn *apiv1.APIConnector
	for _, doc := range strings.Split(string(b), "\n---") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		var obj client.Object
		switch meta.Kind {
		case "Secret":
			secret = &corev1.Secret{}
			obj = secret
		case "APIConnector":
			conn = &apiv1.APIConnector{}
			obj = conn
		default:
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatal(err)
		}
		obj.SetNamespace(namespace)
	}
	if secret == nil || conn == nil {
		t.Fatalf("samples/%s lacks a Secret or an APIConnector", file)
	}
	return secret, conn
}

// eventually polls until check returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	err := errors.New("not checked")
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}
