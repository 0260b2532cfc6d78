package controllers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/internal/graph/graphtest"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"go.uber.org/zap/zapcore"
)

// The suite runs the real manager against a real kube-apiserver and etcd (built from source by
// hack/envtest-assets.sh). There is no kube-controller-manager: tests write Deployment status as
// it would, and there is no garbage collector: tests check owner references instead.

var (
	k8s     client.Client
	testEnv *envtest.Environment
	cfg     *rest.Config
	counter = &reconcileCounter{counts: map[types.NamespacedName]int{}}
	// operatorRegistry holds the suite's reconciler's metrics (RegisterMetrics).
	operatorRegistry = prometheus.NewRegistry()
	// entraStandIn stands in for Microsoft Graph and the identity platform (internal/graph/graphtest):
	// the suite's operator registers connectors with spec.entra there.
	entraStandIn *graphtest.Server
)

const (
	runtimeImage      = "apiconnector-runtime:test"
	operatorNamespace = "apiconnector-system"
)

// reconcileCounter counts reconciles per connector, to prove a settled connector is left alone.
type reconcileCounter struct {
	mu     sync.Mutex
	counts map[types.NamespacedName]int
	next   reconcile.Reconciler
}

func (c *reconcileCounter) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	c.mu.Lock()
	c.counts[req.NamespacedName]++
	c.mu.Unlock()
	return c.next.Reconcile(ctx, req)
}

func (c *reconcileCounter) get(key types.NamespacedName) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[key]
}

func TestMain(m *testing.M) {
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test` (it builds kube-apiserver and etcd from source)")
		return 1
	}
	for _, v := range []string{"CERT_MANAGER_CRDS", "GATEWAY_API_CRDS", "PROMETHEUS_OPERATOR_CRDS"} {
		if os.Getenv(v) == "" {
			fmt.Fprintf(os.Stderr, "%s is not set: run `make test` (it reads the CRDs from their Go modules)\n", v)
			return 1
		}
	}
	ctrl.SetLogger(zap.New(zap.UseDevMode(true), zap.Level(zapLevel())))
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		return 1
	}
	defer func() {
		if err := testEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop envtest:", err)
		}
	}()

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = apiv1.AddToScheme(scheme)
	_ = apiextensionsv1.AddToScheme(scheme)

	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
		return 1
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   CacheOptions(nil),
		Client:  ClientOptions(),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, "operator namespace:", err)
		return 1
	}
	hashKey, err := EnsureHashKey(ctx, k8s, k8s, client.ObjectKey{Namespace: operatorNamespace, Name: DefaultHashKeySecret})
	if err != nil {
		fmt.Fprintln(os.Stderr, "hash key:", err)
		return 1
	}
	// The manager's defaults (main.go): the default annotation allow-list and NetworkPolicies on.
	ingressNamespaces, err := metav1.ParseToLabelSelector(children.DefaultIngressNamespaces)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingress namespaces:", err)
		return 1
	}
	metricsNamespaces, err := metav1.ParseToLabelSelector(children.DefaultMetricsNamespaces)
	if err != nil {
		fmt.Fprintln(os.Stderr, "metrics namespaces:", err)
		return 1
	}
	r := NewReconciler(mgr, children.Options{RuntimeImage: runtimeImage, HashKey: hashKey,
		AllowedExposureAnnotations: DefaultAllowedExposureAnnotations,
		NetworkPolicy:              children.NetworkPolicyOptions{Enabled: true, IngressNamespaces: *ingressNamespaces, MetricsNamespaces: *metricsNamespaces},
		// --pod-monitors: PodMonitors once TestPodMonitorAbsentThenInstalled installs the CRDs.
		PodMonitor: children.PodMonitorOptions{Enabled: true, Labels: map[string]string{"release": "prometheus"}}})
	entraStandIn = graphtest.Start()
	defer entraStandIn.Close()
	endpoints := entraStandIn.Endpoints()
	r.Entra = EntraOptions{Endpoints: &endpoints, HTTPClient: entraStandIn.HTTPClient(),
		Retry:             &policy.RetryOptions{MaxRetries: 2, RetryDelay: 50 * time.Millisecond, MaxRetryDelay: 500 * time.Millisecond},
		ConsistencyWindow: 8 * time.Second}
	counter.next = r
	if err := r.RegisterMetrics(operatorRegistry); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		return 1
	}
	if err := r.setup(ctx, mgr, controller.Options{MaxConcurrentReconciles: 2, SkipNameValidation: ptrTrue()}, counter); err != nil {
		fmt.Fprintln(os.Stderr, "setup:", err)
		return 1
	}
	if err := r.SetupEntraTenantWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 2, SkipNameValidation: ptrTrue()}); err != nil {
		fmt.Fprintln(os.Stderr, "setup EntraTenant:", err)
		return 1
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager stopped:", err)
	}
	return code
}

func ptrTrue() *bool { b := true; return &b }

func zapLevel() zapcore.Level {
	if os.Getenv("TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// eventually polls until check returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = check(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

func runtimeDefaultConverter(obj any) (map[string]any, error) {
	return runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
}
