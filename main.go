// Command manager runs the apiconnector operator: it reconciles APIConnectors into runtime
// Deployments, Services, Ingresses and cert-manager Certificates.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/internal/version"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr, probeAddr, runtimeImage, namespaces string
		hashKeySecret, hashKeyNamespace, leaderElectID   string
		leaderElect, secureMetrics, enableHTTP2          bool
		concurrency                                      int
		qps                                              float64
		burst                                            int
		egressAllow, allowedImages                       []string
		netpol                                           children.NetworkPolicyOptions
		podMonitor                                       children.PodMonitorOptions
	)
	flag.StringVar(&metricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint (:8443 for HTTPS, 0 to disable).")
	flag.BoolVar(&secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorization through the API server.")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.BoolVar(&leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles.")
	flag.StringVar(&leaderElectID, "leader-election-id", controllers.LeaderElectionID,
		"Name of the Lease, in the operator's namespace, the replicas elect their leader with; operators installed side by side in one namespace need different ones.")
	flag.BoolVar(&enableHTTP2, "enable-http2", false, "Serve metrics over HTTP/2 (off: mitigates HTTP/2 rapid-reset attacks).")
	flag.StringVar(&runtimeImage, "runtime-image", "", "Runtime image used by connectors that do not set spec.runtime.image (required).")
	flag.StringVar(&namespaces, "watch-namespaces", "", "Comma-separated namespaces to reconcile; empty means all.")
	flag.IntVar(&concurrency, "concurrency", 8, "Connectors reconciled in parallel.")
	flag.Func("allowed-runtime-images", "Comma-separated patterns a connector's spec.runtime.image must match: an exact reference, or a prefix ending in * that matches any characters but / (e.g. registry.example/apiconnector-runtime:*); default: the repository of --runtime-image only.", func(v string) (err error) {
		allowedImages, err = controllers.ParseImagePatterns(v)
		return err
	})
	flag.Func("runtime-egress-allow-cidrs", "Comma-separated address ranges the runtime's calls and events may reach although its egress guard refuses them (loopback, link-local, metadata, the API server).", func(v string) error {
		c, err := cidrs(v)
		egressAllow = append(egressAllow, c...)
		return err
	})
	var tracesEndpoint string
	flag.Func("runtime-traces-endpoint", "OTLP/HTTP endpoint (http or https URL, e.g. http://otel-collector.observability.svc:4318) runtime pods export traces to (OTEL_EXPORTER_OTLP_ENDPOINT); their NetworkPolicy admits its port. Empty: no tracing.", func(v string) error {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" {
			return errors.New("want an http or https URL with a host, no user information or query")
		}
		tracesEndpoint = v
		return nil
	})
	allowedAnnotations := flag.String("allowed-exposure-annotations", strings.Join(controllers.DefaultAllowedExposureAnnotations, ","),
		"Comma-separated patterns (path.Match globs on the key) every key of a connector's spec.exposure.annotations must match; empty allows none. "+
			"Keys that inject configuration into the ingress controller (*-snippet and others, see docs/exposure.md) are refused whatever this says.")
	flag.BoolVar(&netpol.Enabled, "network-policies", true, "Fence every connector's runtime pods with a NetworkPolicy unless the connector sets spec.runtime.networkPolicy.enabled: false.")
	ingressNamespaces := flag.String("ingress-namespace-selector", children.DefaultIngressNamespaces,
		"Label selector of the namespaces whose pods (ingress controllers, Gateways) the NetworkPolicies admit to the connector port; empty selects every namespace.")
	metricsNamespaces := flag.String("metrics-namespace-selector", children.DefaultMetricsNamespaces,
		"Label selector of the namespaces whose pods (metrics scrapers) the NetworkPolicies admit to the metrics port; empty selects every namespace.")
	flag.Func("ingress-cidrs", "Comma-separated address ranges the NetworkPolicies also admit to the connector port: load balancers that send to pod addresses directly (GKE container-native, AWS ALB in IP mode).", func(v string) error {
		c, err := networkCIDRs(v)
		netpol.IngressCIDRs = append(netpol.IngressCIDRs, c...)
		return err
	})
	flag.BoolVar(&podMonitor.Enabled, "pod-monitors", false, "Create a Prometheus Operator PodMonitor <name> for every connector's runtime pods, once the PodMonitor CRD is installed (docs/operations.md).")
	flag.Func("pod-monitor-labels", "Comma-separated key=value labels added to every PodMonitor, e.g. the ones your Prometheus selects PodMonitors by (release=prometheus).", func(v string) error {
		set, err := labels.ConvertSelectorToLabelsMap(v)
		podMonitor.Labels = set
		return err
	})
	flag.StringVar(&hashKeySecret, "hash-key-secret", controllers.DefaultHashKeySecret,
		"Secret holding the key of the connectors' config hash; created with a random key if missing.")
	flag.StringVar(&hashKeyNamespace, "hash-key-namespace", "",
		"Namespace of --hash-key-secret (default: $POD_NAMESPACE, else the namespace of the pod's service account).")
	// The API server protects itself with priority and fairness; the client-side limit only has to
	// let 1 000 connectors settle within a minute (hack/bench/controller: ~15 requests each).
	flag.Float64Var(&qps, "kube-api-qps", 200, "Requests per second to the API server (client-side limit).")
	flag.IntVar(&burst, "kube-api-burst", 400, "Burst of requests to the API server above --kube-api-qps.")
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Get())
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if runtimeImage == "" {
		return fmt.Errorf("--runtime-image is required")
	}
	annotations, err := patterns(*allowedAnnotations)
	if err != nil {
		return fmt.Errorf("--allowed-exposure-annotations: %w", err)
	}
	if netpol.IngressNamespaces, err = namespaceSelector("--ingress-namespace-selector", *ingressNamespaces); err != nil {
		return err
	}
	if netpol.MetricsNamespaces, err = namespaceSelector("--metrics-namespace-selector", *metricsNamespaces); err != nil {
		return err
	}
	if hashKeyNamespace == "" {
		hashKeyNamespace = operatorNamespace()
	}
	if hashKeyNamespace == "" {
		return fmt.Errorf("--hash-key-namespace is required outside a pod (or set POD_NAMESPACE)")
	}

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiv1.AddToScheme, apiextensionsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return err
		}
	}

	var tlsOpts []func(*tls.Config)
	if !enableHTTP2 {
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: metricsAddr, SecureServing: secureMetrics, TLSOpts: tlsOpts}
	if secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	var watched []string
	for _, ns := range strings.Split(namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			watched = append(watched, ns)
		}
	}

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	restConfig.QPS, restConfig.Burst = float32(qps), burst
	restConfig.UserAgent = "apiconnector-operator"

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsOpts,
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              leaderElectID,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(watched),
		Client:                        controllers.ClientOptions(),
		Controller:                    config.Controller{RecoverPanic: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}

	ctx := ctrl.SetupSignalHandler()
	hashKey, err := controllers.EnsureHashKey(ctx, mgr.GetClient(), mgr.GetAPIReader(), client.ObjectKey{Namespace: hashKeyNamespace, Name: hashKeySecret})
	if err != nil {
		return err
	}
	r := controllers.NewReconciler(mgr, children.Options{RuntimeImage: runtimeImage, HashKey: hashKey, EgressAllow: egressAllow,
		AllowedRuntimeImages: allowedImages, AllowedExposureAnnotations: annotations, NetworkPolicy: netpol, PodMonitor: podMonitor,
		TracesEndpoint: tracesEndpoint})
	if err := r.SetupWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: concurrency}); err != nil {
		return fmt.Errorf("set up controller: %w", err)
	}
	if err := r.SetupEntraTenantWithManager(ctx, mgr, controller.Options{MaxConcurrentReconciles: 2}); err != nil {
		return fmt.Errorf("set up EntraTenant controller: %w", err)
	}
	if err := ctrlmetrics.Registry.Register(version.Collector()); err != nil {
		return err
	}
	if err := r.RegisterMetrics(ctrlmetrics.Registry); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("starting manager", "version", version.Get(), "runtimeImage", runtimeImage, "namespaces", namespaces)
	return mgr.Start(ctx)
}

// patterns splits a comma-separated list of path.Match patterns, checking each.
func patterns(v string) ([]string, error) {
	out := []string{}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// namespaceSelector parses a label selector flag (kubectl's syntax: a=b,c in (d,e)).
func namespaceSelector(flagName, v string) (metav1.LabelSelector, error) {
	sel, err := metav1.ParseToLabelSelector(v)
	if err != nil {
		return metav1.LabelSelector{}, fmt.Errorf("%s: %w", flagName, err)
	}
	return *sel, nil
}

// cidrs splits a comma-separated list of address ranges, checking each.
func cidrs(v string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(v, ",") {
		c = strings.TrimSpace(c)
		if _, err := netip.ParsePrefix(c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// networkCIDRs splits a comma-separated list of network addresses: the API server refuses a
// NetworkPolicy ipBlock with host bits set, which would fail every connector's reconcile.
func networkCIDRs(v string) ([]string, error) {
	c, err := cidrs(v)
	if err != nil {
		return nil, err
	}
	for _, s := range c {
		if p := netip.MustParsePrefix(s); p != p.Masked() {
			return nil, fmt.Errorf("%s has host bits set; did you mean %s?", s, p.Masked())
		}
	}
	return c, nil
}

// operatorNamespace is where the operator runs: $POD_NAMESPACE (the manifests set it from the
// downward API), else the namespace of the mounted service account token.
func operatorNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
