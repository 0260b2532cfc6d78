// Package children builds the objects an APIConnector is reconciled into. Every builder is a pure
// function of the connector and the operator's options, so the shapes are tested alone with golden
// files and the reconciler only fetches inputs and applies what these return.
package children

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Well-known names, labels, paths and ports shared by the children and the runtime's command line.
const (
	ManagedBy       = "apiconnector-operator"
	ConfigKey       = "connector.yaml"
	ConfigDir       = "/etc/apiconnector/config"
	SecretsDir      = "/etc/apiconnector/secrets"
	TLSDir          = "/etc/apiconnector/tls"
	HTTPPort        = 8080
	OpsPort         = 9090
	RuntimeUser     = 65532
	ConfigHashKey   = "apiconnector.dev/config-hash"
	DefaultReplicas = 2

	// FieldOwner is the server-side apply field manager of every child.
	FieldOwner = "apiconnector-operator"
	// ReplicasHandoverOwner holds a Deployment's spec.replicas between the operator letting go of
	// it (spec.runtime.autoscaling) and the HorizontalPodAutoscaler's first change.
	ReplicasHandoverOwner = "apiconnector-operator-autoscaling"
)

// Options are the operator-wide settings the builders need.
type Options struct {
	// RuntimeImage is the runtime image used unless a connector overrides it.
	RuntimeImage string
	// HashKey keys the config hash (ConfigHash); HashKeySize random bytes only the operator holds.
	HashKey []byte
	// AllowedRuntimeImages are the patterns spec.runtime.image must match (controllers.ImageAllowed);
	// empty: the repository of RuntimeImage only (the reconciler checks, the builders use what it
	// allowed).
	AllowedRuntimeImages []string
	// AllowedExposureAnnotations are the path.Match patterns every key of
	// spec.exposure.annotations must match (the reconciler checks, see
	// controllers.DefaultAllowedExposureAnnotations); empty allows none.
	AllowedExposureAnnotations []string
	// NetworkPolicy are the settings of the connectors' NetworkPolicies.
	NetworkPolicy NetworkPolicyOptions
	// PodMonitor are the settings of the connectors' PodMonitors.
	PodMonitor PodMonitorOptions
	// EgressAllow are address ranges (CIDRs) the runtime's calls and events may reach although its
	// egress guard refuses them (serve --egress-allow-cidr).
	EgressAllow []string
	// TracesEndpoint is the OTLP/HTTP endpoint (an http or https URL) runtime pods export traces
	// to, given to them as OTEL_EXPORTER_OTLP_ENDPOINT; their NetworkPolicy admits its port. Empty
	// leaves tracing off.
	TracesEndpoint string
}

// Names of a connector's children. Kept in one place so the reconciler, the builders and the
// watches agree.
func DeploymentName(c *apiv1.APIConnector) string { return c.Name }
func ServiceName(c *apiv1.APIConnector) string    { return c.Name }
func MetricsServiceName(c *apiv1.APIConnector) string {
	return c.Name + "-metrics"
}
func NetworkPolicyName(c *apiv1.APIConnector) string { return c.Name }
func IngressName(c *apiv1.APIConnector) string       { return c.Name }
func PDBName(c *apiv1.APIConnector) string           { return c.Name }
func HPAName(c *apiv1.APIConnector) string           { return c.Name }
func PodMonitorName(c *apiv1.APIConnector) string    { return c.Name }
func ConfigMapName(c *apiv1.APIConnector) string     { return c.Name + "-config" }
func CertificateName(c *apiv1.APIConnector) string {
	return c.Name + "-tls"
}

// EntraBasicSecretName is the operator's Secret (keys username and password) holding the Basic
// credential registered in Entra for a connector with authentication.basic and spec.entra. The
// runtime accepts it next to the connector's own while a rotated credential is being registered;
// it is projected under RegisteredSecretsDir.
func EntraBasicSecretName(c *apiv1.APIConnector) string {
	return c.Name + "-entra-basic"
}

// RegisteredSecretsDir is the sub-directory of SecretsDir the EntraBasicSecretName Secret is
// projected into: the runtime's server.RegisteredDir.
const RegisteredSecretsDir = "registered"

// TLSSecretName is the Secret holding the endpoint's certificate: the user's, or the one
// cert-manager writes for the Certificate we create. Empty when the connector has no TLS.
func TLSSecretName(c *apiv1.APIConnector) string {
	tls := c.Spec.Exposure.TLS
	switch {
	case tls == nil:
		return ""
	case tls.SecretName != "":
		return tls.SecretName
	default:
		return CertificateName(c)
	}
}

// Path is the endpoint path: the user's, or /<namespace>/<name>.
func Path(c *apiv1.APIConnector) string {
	if c.Spec.Exposure.Path != "" {
		return c.Spec.Exposure.Path
	}
	return "/" + c.Namespace + "/" + c.Name
}

// ParentNamespace is the namespace of one of the connector's parent Gateways: the reference's own,
// or the connector's.
func ParentNamespace(c *apiv1.APIConnector, p apiv1.GatewayParentReference) string {
	if p.Namespace != "" {
		return p.Namespace
	}
	return c.Namespace
}

// ServesTLS says whether the connector's own children serve TLS: an Ingress or a LoadBalancer
// with a certificate, or a TLSRoute to the runtime's TLS listener. Behind an HTTPRoute, TLS is the
// Gateway listener's business, which the reconciler checks on the Gateway.
func ServesTLS(c *apiv1.APIConnector) bool {
	if WantsRoute(c) && RouteKind(c) == HTTPRouteKind {
		return false
	}
	return TLSSecretName(c) != ""
}

// Endpoint is the URL to configure in Entra ID: https when TLS is served (https) or terminated in
// front of the cluster (spec.exposure.externalTLS).
func Endpoint(c *apiv1.APIConnector, https bool) string {
	scheme := "http://"
	if https || c.Spec.Exposure.ExternalTLS {
		scheme = "https://"
	}
	return scheme + c.Spec.Exposure.Host + Path(c)
}

// Labels are the standard labels of every child. The connector's own labels and annotations are
// never copied: GitOps tools track resources by them and would adopt or prune our children.
func Labels(c *apiv1.APIConnector) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":       "apiconnector",
		"app.kubernetes.io/instance":   c.Name,
		"app.kubernetes.io/component":  "runtime",
		"app.kubernetes.io/managed-by": ManagedBy,
	}
}

// SelectorLabels select the connector's runtime pods; they never change after creation.
func SelectorLabels(c *apiv1.APIConnector) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":     "apiconnector",
		"app.kubernetes.io/instance": c.Name,
	}
}

// RenderConfig is the runtime's configuration: the connector with ConfigMap-backed lists replaced
// by their values, so the runtime needs no Kubernetes access. resolved maps list name to values.
// The output is deterministic, so its hash only changes when the configuration does.
func RenderConfig(c *apiv1.APIConnector, resolved map[string][]string) ([]byte, error) {
	spec := c.Spec.DeepCopy()
	for i := range spec.Lists {
		l := &spec.Lists[i]
		if l.ConfigMapRef == nil {
			continue
		}
		values, ok := resolved[l.Name]
		if !ok {
			return nil, fmt.Errorf("list %q: values from ConfigMap %q were not resolved", l.Name, l.ConfigMapRef.Name)
		}
		l.ConfigMapRef = nil
		l.Values = append([]string{}, values...)
	}
	// The runtime does not use these; leaving them out keeps replica changes and changes of the
	// Entra registration (user flows, applications, display name) from rolling pods.
	spec.Runtime = apiv1.RuntimeSpec{}
	spec.Entra = nil
	out := apiv1.APIConnector{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiv1.GroupVersion.String(), Kind: "APIConnector"},
		ObjectMeta: metav1.ObjectMeta{Name: c.Name, Namespace: c.Namespace},
		Spec:       *spec,
	}
	b, err := yaml.Marshal(&out)
	if err != nil {
		return nil, fmt.Errorf("render runtime config: %w", err)
	}
	return b, nil
}

// HashKeySize is the size of the operator's config-hash key, in bytes.
const HashKeySize = 32

// ConfigHash identifies a rollout: the rendered config plus the data of every referenced Secret.
// Secrets are hashed by key and value in sorted order; their metadata never matters, so relabelling
// a Secret does not roll the pods while changing a value does.
//
// The hash is published in the connector's status and the pod template, both readable by anyone
// with view access, so it is an HMAC-SHA256 keyed by a key only the operator holds (a Secret in
// its own namespace, see controllers.EnsureHashKey): an unsalted digest of a Secret's value would
// let anyone who can read it test password guesses offline. A hash of the Secrets' UIDs and
// resourceVersions would leak nothing either, but every metadata change (a label, an annotation
// some tool writes on each sync) would roll the pods.
func ConfigHash(key, config []byte, secrets map[string]map[string][]byte) string {
	h := hmac.New(sha256.New, key)
	WriteHashInput(h, config, secrets)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// WriteHashInput writes what ConfigHash hashes: the config and the Secrets' keys and values,
// sorted and length-prefixed so no two inputs write the same bytes.
func WriteHashInput(h io.Writer, config []byte, secrets map[string]map[string][]byte) {
	fmt.Fprintf(h, "config %d\n", len(config))
	h.Write(config)
	names := make([]string, 0, len(secrets))
	for n := range secrets {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		data := secrets[n]
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(h, "secret %q %d\n", n, len(keys))
		for _, k := range keys {
			fmt.Fprintf(h, "%q %d\n", k, len(data[k]))
			h.Write(data[k])
		}
	}
}
