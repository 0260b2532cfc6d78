package children

import (
	"slices"
	"strconv"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/rules"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	netv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/utils/ptr"
)

// ownerRef makes the connector the controller of a child, so deleting the connector garbage
// collects it and the manager's Owns watches map events back to the connector.
func ownerRef(c *apiv1.APIConnector) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(apiv1.GroupVersion.String()).
		WithKind("APIConnector").
		WithName(c.Name).
		WithUID(c.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// MakeConfigMap holds the rendered runtime config the pods mount.
func MakeConfigMap(c *apiv1.APIConnector, config []byte) *corev1ac.ConfigMapApplyConfiguration {
	return corev1ac.ConfigMap(ConfigMapName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithData(map[string]string{ConfigKey: string(config)})
}

// RuntimeTerminatesTLS says whether the runtime serves TLS itself: for client-certificate
// connectors (only the runtime can check certificates against the connector's trusted bundle,
// whatever the ingress controller) and for LoadBalancer exposure.
func RuntimeTerminatesTLS(c *apiv1.APIConnector) bool {
	if TLSSecretName(c) == "" {
		return false
	}
	if c.Spec.Exposure.Type == apiv1.ExposureLoadBalancer {
		return true
	}
	cc := c.Spec.Authentication.ClientCertificate
	return cc != nil && cc.Forwarded == nil
}

// WantsIngress reports whether the connector is published through an Ingress.
func WantsIngress(c *apiv1.APIConnector) bool {
	t := c.Spec.Exposure.Type
	return t == "" || t == apiv1.ExposureIngress
}

// WantsRoute reports whether the connector is published through a Gateway API route.
func WantsRoute(c *apiv1.APIConnector) bool {
	return c.Spec.Exposure.Type == apiv1.ExposureGateway && c.Spec.Exposure.Gateway != nil
}

// MakeDeployment runs the shared runtime image for one connector. configHash covers the rendered
// config and every referenced Secret's data, so any change rolls the pods.
func MakeDeployment(c *apiv1.APIConnector, opts Options, configHash string) *appsv1ac.DeploymentApplyConfiguration {
	image := opts.RuntimeImage
	if c.Spec.Runtime.Image != "" {
		image = c.Spec.Runtime.Image
	}
	args := []string{
		"serve",
		"--connector=" + ConfigDir + "/" + ConfigKey,
		"--secrets-dir=" + SecretsDir,
		// Outbound credentials are projected into the same volume under calls/ and events/.
		"--outbound-secrets-dir=" + SecretsDir,
		"--listen=:" + strconv.Itoa(HTTPPort),
		"--ops-listen=:" + strconv.Itoa(OpsPort),
		// Keep serving after readiness turns false until the ingress controller has dropped the
		// pod from its endpoints (Traefik, for one, applies endpoint changes after 2s).
		"--shutdown-delay=5s",
	}
	if len(opts.EgressAllow) > 0 {
		args = append(args, "--egress-allow-cidr="+strings.Join(opts.EgressAllow, ","))
	}
	mounts := []*corev1ac.VolumeMountApplyConfiguration{
		corev1ac.VolumeMount().WithName("config").WithMountPath(ConfigDir).WithReadOnly(true),
		corev1ac.VolumeMount().WithName("secrets").WithMountPath(SecretsDir).WithReadOnly(true),
	}
	volumes := []*corev1ac.VolumeApplyConfiguration{
		corev1ac.Volume().WithName("config").WithConfigMap(
			corev1ac.ConfigMapVolumeSource().WithName(ConfigMapName(c)).WithDefaultMode(0o444)),
		secretsVolume(c),
	}
	if RuntimeTerminatesTLS(c) {
		args = append(args, "--tls-cert="+TLSDir+"/tls.crt", "--tls-key="+TLSDir+"/tls.key")
		mounts = append(mounts, corev1ac.VolumeMount().WithName("tls").WithMountPath(TLSDir).WithReadOnly(true))
		volumes = append(volumes, corev1ac.Volume().WithName("tls").WithSecret(
			corev1ac.SecretVolumeSource().WithSecretName(TLSSecretName(c)).WithDefaultMode(0o440)))
	}

	probe := func(path string, period, failures int32) *corev1ac.ProbeApplyConfiguration {
		return corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString("ops"))).
			WithPeriodSeconds(period).
			WithTimeoutSeconds(min(period, 2)).
			WithFailureThreshold(failures)
	}

	container := corev1ac.Container().
		WithName("runtime").
		WithImage(image).
		WithImagePullPolicy(corev1.PullIfNotPresent).
		WithArgs(args...).
		WithPorts(
			corev1ac.ContainerPort().WithName("http").WithContainerPort(HTTPPort).WithProtocol(corev1.ProtocolTCP),
			corev1ac.ContainerPort().WithName("ops").WithContainerPort(OpsPort).WithProtocol(corev1.ProtocolTCP),
		).
		// A new pod's first readiness probe tends to come before the runtime listens (it starts
		// in ~30 ms); the next came 5 s later, so a rollout of the same code took 2 s or 12 s
		// (make bench-rollout). Until it answers, kubelet probes every second instead, and runs
		// the readiness probe as soon as it has.
		WithStartupProbe(probe("/healthz", 1, 60)).
		WithReadinessProbe(probe("/readyz", 5, 3)).
		WithLivenessProbe(probe("/healthz", 5, 3)).
		WithResources(resources(c)).
		WithEnv(runtimeEnv(opts)...).
		WithVolumeMounts(mounts...).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(RuntimeUser).
			WithRunAsGroup(RuntimeUser).
			WithReadOnlyRootFilesystem(true).
			WithAllowPrivilegeEscalation(false).
			WithPrivileged(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))

	pod := corev1ac.PodSpec().
		WithContainers(container).
		WithVolumes(volumes...).
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		// Longer than the runtime's shutdown delay (5s) plus drain timeout (25s): in-flight requests
		// finish before the kubelet kills the pod.
		WithTerminationGracePeriodSeconds(45).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithFSGroup(RuntimeUser).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithTopologySpreadConstraints(corev1ac.TopologySpreadConstraint().
			WithMaxSkew(1).
			WithTopologyKey(corev1.LabelHostname).
			WithWhenUnsatisfiable(corev1.ScheduleAnyway).
			WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(c))))
	if len(c.Spec.Runtime.NodeSelector) > 0 {
		pod.WithNodeSelector(c.Spec.Runtime.NodeSelector)
	}
	for i := range c.Spec.Runtime.Tolerations {
		pod.WithTolerations(toleration(c.Spec.Runtime.Tolerations[i]))
	}

	spec := appsv1ac.DeploymentSpec()
	if replicas, ok := Replicas(c); ok {
		// With autoscaling the field is left out, so the operator does not own it and the
		// HorizontalPodAutoscaler's changes stay.
		spec.WithReplicas(replicas)
	}
	return appsv1ac.Deployment(DeploymentName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithSpec(spec.
			WithRevisionHistoryLimit(3).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(c))).
			// Never fewer serving pods than asked for during a rollout: Entra gives a request one retry.
			WithStrategy(appsv1ac.DeploymentStrategy().
				WithType("RollingUpdate").
				WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
					WithMaxUnavailable(intstr.FromInt32(0)).
					WithMaxSurge(intstr.FromInt32(1)))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(Labels(c)).
				WithAnnotations(map[string]string{ConfigHashKey: configHash}).
				WithSpec(pod)))
}

// secretsVolume holds the credentials. A bearer-token connector with no outbound credentials has
// none: its keys come from Entra's OpenID configuration, so the directory is an empty one.
func secretsVolume(c *apiv1.APIConnector) *corev1ac.VolumeApplyConfiguration {
	v := corev1ac.Volume().WithName("secrets")
	sources := secretProjections(c)
	if len(sources) == 0 {
		return v.WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithMedium(corev1.StorageMediumMemory).WithSizeLimit(resource.MustParse("1Mi")))
	}
	return v.WithProjected(corev1ac.ProjectedVolumeSource().WithDefaultMode(0o440).WithSources(sources...))
}

// secretProjections project every referenced Secret into one directory: the inbound credentials
// at the top (username/password or ca.crt; with spec.entra, the Basic credential registered in
// Entra under registered/), outbound ones under calls/<name>/ and events/<name>/,
// and the keys of secretHeaders and secretQueryParams under secret-keys/<Secret name>/<key>, the
// layout the runtime's --secrets-dir and --outbound-secrets-dir expect. The last are placed by
// Secret and key rather than by header: a pod that reloads a newer configuration before it is
// replaced then finds a key it does not have missing, never another key's value.
func secretProjections(c *apiv1.APIConnector) []*corev1ac.VolumeProjectionApplyConfiguration {
	projectSecret := func(secret string, keys []string, dir string, optional bool) *corev1ac.VolumeProjectionApplyConfiguration {
		src := corev1ac.SecretProjection().WithName(secret).WithOptional(optional)
		for _, k := range keys {
			src.WithItems(corev1ac.KeyToPath().WithKey(k).WithPath(dir + k))
		}
		return corev1ac.VolumeProjection().WithSecret(src)
	}
	project := func(secret string, keys []string, dir string) *corev1ac.VolumeProjectionApplyConfiguration {
		return projectSecret(secret, keys, dir, false)
	}
	outboundKeys := func(a *apiv1.OutboundAuth) []string {
		if a.Type == apiv1.OutboundAuthBearer {
			return []string{"token"}
		}
		return []string{"username", "password"}
	}
	var out []*corev1ac.VolumeProjectionApplyConfiguration
	auth := c.Spec.Authentication
	switch {
	case auth.Basic != nil:
		out = append(out, project(auth.Basic.SecretRef.Name, []string{"username", "password"}, ""))
		if c.Spec.Entra != nil {
			// The credential registered in Entra, accepted too while a rotated one is registered.
			// Optional: the operator creates the Secret once the registration exists, and a pod
			// must not wait for it.
			out = append(out, projectSecret(EntraBasicSecretName(c), []string{"username", "password"}, RegisteredSecretsDir+"/", true))
		}
	case auth.ClientCertificate != nil:
		out = append(out, project(auth.ClientCertificate.SecretRef.Name, []string{"ca.crt"}, ""))
	}
	for _, call := range c.Spec.Calls {
		if call.Auth != nil {
			out = append(out, project(call.Auth.SecretRef.Name, outboundKeys(call.Auth), "calls/"+call.Name+"/"))
		}
	}
	for _, ev := range c.Spec.Events {
		if ev.Sink.Auth != nil {
			out = append(out, project(ev.Sink.Auth.SecretRef.Name, outboundKeys(ev.Sink.Auth), "events/"+ev.Name+"/"))
		}
	}
	// Each Secret key once: a projected volume refuses two sources writing the same path.
	keys := map[string][]string{}
	var names []string
	for _, ref := range SecretKeyRefs(c) {
		if keys[ref.Name] == nil {
			names = append(names, ref.Name)
		}
		if !slices.Contains(keys[ref.Name], ref.Key) {
			keys[ref.Name] = append(keys[ref.Name], ref.Key)
		}
	}
	for _, name := range names {
		out = append(out, project(name, keys[name], rules.SecretKeyDir+"/"+name+"/"))
	}
	return out
}

// SecretKeyRefs lists the Secret keys of every call's and sink's secretHeaders and
// secretQueryParams and of passwordDecryption, in spec order, repetitions included.
func SecretKeyRefs(c *apiv1.APIConnector) []apiv1.SecretKeySelector {
	var out []apiv1.SecretKeySelector
	if pd := c.Spec.PasswordDecryption; pd != nil {
		out = append(out, pd.Keys...)
	}
	add := func(sv apiv1.SecretValues) {
		for _, h := range sv.SecretHeaders {
			out = append(out, h.ValueFrom.SecretKeyRef)
		}
		for _, q := range sv.SecretQueryParams {
			out = append(out, q.ValueFrom.SecretKeyRef)
		}
	}
	for _, call := range c.Spec.Calls {
		add(call.SecretValues)
	}
	for _, ev := range c.Spec.Events {
		add(ev.Sink.SecretValues)
	}
	return out
}

// SecretNames lists every Secret the connector references, for hashing and for the watch index.
func SecretNames(c *apiv1.APIConnector) []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	auth := c.Spec.Authentication
	if auth.Basic != nil {
		add(auth.Basic.SecretRef.Name)
	}
	if auth.ClientCertificate != nil {
		add(auth.ClientCertificate.SecretRef.Name)
	}
	for _, call := range c.Spec.Calls {
		if call.Auth != nil {
			add(call.Auth.SecretRef.Name)
		}
	}
	for _, ev := range c.Spec.Events {
		if ev.Sink.Auth != nil {
			add(ev.Sink.Auth.SecretRef.Name)
		}
	}
	for _, ref := range SecretKeyRefs(c) {
		add(ref.Name)
	}
	if RuntimeTerminatesTLS(c) {
		add(TLSSecretName(c))
	}
	return out
}

// ConfigMapNames lists the ConfigMaps the connector's lists read.
func ConfigMapNames(c *apiv1.APIConnector) []string {
	seen := map[string]bool{}
	var out []string
	for _, l := range c.Spec.Lists {
		if l.ConfigMapRef != nil && !seen[l.ConfigMapRef.Name] {
			seen[l.ConfigMapRef.Name] = true
			out = append(out, l.ConfigMapRef.Name)
		}
	}
	return out
}

func resources(c *apiv1.APIConnector) *corev1ac.ResourceRequirementsApplyConfiguration {
	r := corev1ac.ResourceRequirements()
	if rr := c.Spec.Runtime.Resources; rr != nil {
		if len(rr.Requests) > 0 {
			r.WithRequests(rr.Requests)
		}
		if len(rr.Limits) > 0 {
			r.WithLimits(rr.Limits)
		}
		return r
	}
	// Measured need is a few MiB; the limit protects the node from a pathological config.
	return r.
		WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")}).
		WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")})
}

func toleration(t corev1.Toleration) *corev1ac.TolerationApplyConfiguration {
	out := corev1ac.Toleration()
	if t.Key != "" {
		out.WithKey(t.Key)
	}
	if t.Operator != "" {
		out.WithOperator(t.Operator)
	}
	if t.Value != "" {
		out.WithValue(t.Value)
	}
	if t.Effect != "" {
		out.WithEffect(t.Effect)
	}
	if t.TolerationSeconds != nil {
		out.WithTolerationSeconds(*t.TolerationSeconds)
	}
	return out
}

// MakeService fronts the runtime pods' connector port. With LoadBalancer exposure it is published
// as 443. The ops port (/metrics, /healthz, /readyz) is never on it: a LoadBalancer Service would
// publish it to the internet, and an ingress or Gateway could be pointed at it; MakeMetricsService
// carries it inside the cluster.
func MakeService(c *apiv1.APIConnector) *corev1ac.ServiceApplyConfiguration {
	name, port, typ := "http", int32(HTTPPort), corev1.ServiceTypeClusterIP
	if RuntimeTerminatesTLS(c) {
		name = "https"
	}
	if c.Spec.Exposure.Type == apiv1.ExposureLoadBalancer {
		port, typ = 443, corev1.ServiceTypeLoadBalancer
	}
	return corev1ac.Service(ServiceName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(typ).
			WithSelector(SelectorLabels(c)).
			WithPorts(
				corev1ac.ServicePort().WithName(name).WithPort(port).WithTargetPort(intstr.FromString("http")).WithProtocol(corev1.ProtocolTCP),
			))
}

// MetricsLabels label the metrics Service, so a ServiceMonitor can select every connector's
// metrics Service (and only those) with app.kubernetes.io/component: metrics.
func MetricsLabels(c *apiv1.APIConnector) map[string]string {
	l := Labels(c)
	l["app.kubernetes.io/component"] = "metrics"
	return l
}

// MakeMetricsService is a ClusterIP Service for the runtime's ops port (port name metrics), the
// one to scrape, whatever the connector's exposure type.
func MakeMetricsService(c *apiv1.APIConnector) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(MetricsServiceName(c), c.Namespace).
		WithLabels(MetricsLabels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(SelectorLabels(c)).
			WithPorts(
				corev1ac.ServicePort().WithName("metrics").WithPort(OpsPort).WithTargetPort(intstr.FromString("ops")).WithProtocol(corev1.ProtocolTCP),
			))
}

// labelSelector converts a typed selector into its apply configuration.
func labelSelector(s metav1.LabelSelector) *metav1ac.LabelSelectorApplyConfiguration {
	out := metav1ac.LabelSelector()
	if len(s.MatchLabels) > 0 {
		out.WithMatchLabels(s.MatchLabels)
	}
	for _, e := range s.MatchExpressions {
		out.WithMatchExpressions(metav1ac.LabelSelectorRequirement().
			WithKey(e.Key).WithOperator(e.Operator).WithValues(e.Values...))
	}
	return out
}

// MakeIngress routes https://<host><path> to the Service. The user's annotations are passed on;
// TLS uses the user's Secret or the one our Certificate fills. When the runtime terminates TLS
// (client certificates), the backend is its https port and the ingress controller must pass TLS
// through (an annotation the user sets, see docs/exposure.md).
func MakeIngress(c *apiv1.APIConnector) *netv1ac.IngressApplyConfiguration {
	port := "http"
	if RuntimeTerminatesTLS(c) {
		port = "https"
	}
	spec := netv1ac.IngressSpec().
		WithRules(netv1ac.IngressRule().
			WithHost(c.Spec.Exposure.Host).
			WithHTTP(netv1ac.HTTPIngressRuleValue().WithPaths(
				netv1ac.HTTPIngressPath().
					WithPath(Path(c)).
					WithPathType("Prefix").
					WithBackend(netv1ac.IngressBackend().WithService(
						netv1ac.IngressServiceBackend().WithName(ServiceName(c)).WithPort(
							netv1ac.ServiceBackendPort().WithName(port)))))))
	if cls := c.Spec.Exposure.IngressClassName; cls != nil {
		spec.WithIngressClassName(*cls)
	}
	if secret := TLSSecretName(c); secret != "" {
		spec.WithTLS(netv1ac.IngressTLS().WithHosts(c.Spec.Exposure.Host).WithSecretName(secret))
	}
	ing := netv1ac.Ingress(IngressName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithSpec(spec)
	if len(c.Spec.Exposure.Annotations) > 0 {
		ing.WithAnnotations(c.Spec.Exposure.Annotations)
	}
	return ing
}

// Replicas is the Deployment's replica count the connector asks for; false with autoscaling,
// where the HorizontalPodAutoscaler sets it.
func Replicas(c *apiv1.APIConnector) (int32, bool) {
	if c.Spec.Runtime.Autoscaling != nil {
		return 0, false
	}
	return ptr.Deref(c.Spec.Runtime.Replicas, DefaultReplicas), true
}

// MinReplicas is the fewest runtime pods the connector runs outside a rollout: spec.runtime.replicas,
// or spec.runtime.autoscaling.minReplicas.
func MinReplicas(c *apiv1.APIConnector) int32 {
	if a := c.Spec.Runtime.Autoscaling; a != nil {
		return a.MinReplicas
	}
	r, _ := Replicas(c)
	return r
}

// WantsAutoscaler reports whether the connector's replicas are set by a HorizontalPodAutoscaler.
func WantsAutoscaler(c *apiv1.APIConnector) bool {
	return c.Spec.Runtime.Autoscaling != nil
}

// MakeHorizontalPodAutoscaler scales the runtime Deployment on the pods' CPU use, in percent of
// the runtime container's CPU request, between the connector's bounds. Nil without autoscaling.
func MakeHorizontalPodAutoscaler(c *apiv1.APIConnector) *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	a := c.Spec.Runtime.Autoscaling
	if a == nil {
		return nil
	}
	return autoscalingv2ac.HorizontalPodAutoscaler(HPAName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec().
			WithScaleTargetRef(autoscalingv2ac.CrossVersionObjectReference().
				WithAPIVersion("apps/v1").WithKind("Deployment").WithName(DeploymentName(c))).
			WithMinReplicas(a.MinReplicas).
			WithMaxReplicas(a.MaxReplicas).
			WithMetrics(autoscalingv2ac.MetricSpec().
				WithType(autoscalingv2.ResourceMetricSourceType).
				WithResource(autoscalingv2ac.ResourceMetricSource().
					WithName(corev1.ResourceCPU).
					WithTarget(autoscalingv2ac.MetricTarget().
						WithType(autoscalingv2.UtilizationMetricType).
						WithAverageUtilization(a.TargetCPUUtilizationPercentage)))))
}

// MakePodDisruptionBudget keeps one pod serving during voluntary disruptions. Only meaningful with
// more than one replica (autoscaling: more than one at the least); the reconciler deletes it
// otherwise.
func MakePodDisruptionBudget(c *apiv1.APIConnector) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(PDBName(c), c.Namespace).
		WithLabels(Labels(c)).
		WithOwnerReferences(ownerRef(c)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(SelectorLabels(c))))
}

// WantsPodDisruptionBudget reports whether the connector always runs more than one replica.
func WantsPodDisruptionBudget(c *apiv1.APIConnector) bool {
	return MinReplicas(c) > 1
}

// cert-manager's Certificate is built unstructured so the operator does not depend on
// cert-manager's Go module and runs without cert-manager installed.
const (
	CertificateAPIVersion = "cert-manager.io/v1"
	CertificateKind       = "Certificate"
)

// MakeCertificate asks cert-manager for the endpoint's certificate. Nil when the connector does not
// reference an issuer.
func MakeCertificate(c *apiv1.APIConnector) *unstructured.Unstructured {
	tls := c.Spec.Exposure.TLS
	if tls == nil || tls.IssuerRef == nil {
		return nil
	}
	kind := tls.IssuerRef.Kind
	if kind == "" {
		kind = "ClusterIssuer"
	}
	return ownedUnstructured(c, CertificateAPIVersion, CertificateKind, CertificateName(c), map[string]any{
		"secretName": CertificateName(c),
		"dnsNames":   []any{c.Spec.Exposure.Host},
		"issuerRef": map[string]any{
			"name":  tls.IssuerRef.Name,
			"kind":  kind,
			"group": "cert-manager.io",
		},
		"usages": []any{"server auth", "digital signature", "key encipherment"},
	})
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Gateway API routes are built unstructured: the operator needs no Gateway API Go module and runs
// on clusters without its CRDs.
const (
	GatewayAPIVersion = "gateway.networking.k8s.io/v1"
	HTTPRouteKind     = "HTTPRoute"
	TLSRouteKind      = "TLSRoute"
)

// RouteKind is the route the connector needs: a TLSRoute in passthrough mode when the runtime
// terminates TLS itself (client certificates), otherwise an HTTPRoute.
func RouteKind(c *apiv1.APIConnector) string {
	if RuntimeTerminatesTLS(c) {
		return TLSRouteKind
	}
	return HTTPRouteKind
}

// RouteName is the name of the connector's route.
func RouteName(c *apiv1.APIConnector) string { return c.Name }

// MakeRoute attaches the connector's Service to the Gateways in spec.exposure.gateway. Nil when the
// connector is not exposed through a Gateway.
func MakeRoute(c *apiv1.APIConnector) *unstructured.Unstructured {
	if !WantsRoute(c) {
		return nil
	}
	var parents []any
	for _, p := range c.Spec.Exposure.Gateway.ParentRefs {
		ref := map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": p.Name}
		if p.Namespace != "" {
			ref["namespace"] = p.Namespace
		}
		if p.SectionName != "" {
			ref["sectionName"] = p.SectionName
		}
		parents = append(parents, ref)
	}
	backend := map[string]any{"kind": "Service", "group": "", "name": ServiceName(c), "port": int64(HTTPPort), "weight": int64(1)}
	kind := RouteKind(c)
	var rule map[string]any
	if kind == TLSRouteKind {
		// Passthrough: the Gateway routes on SNI only; paths are the runtime's business.
		rule = map[string]any{"backendRefs": []any{backend}}
	} else {
		rule = map[string]any{
			"matches":     []any{map[string]any{"path": map[string]any{"type": "PathPrefix", "value": Path(c)}}},
			"backendRefs": []any{backend},
		}
	}
	return ownedUnstructured(c, GatewayAPIVersion, kind, RouteName(c), map[string]any{
		"parentRefs": parents,
		"hostnames":  []any{c.Spec.Exposure.Host},
		"rules":      []any{rule},
	})
}

// ownedUnstructured builds a child of a kind we do not import, labelled and controlled like the
// typed ones.
func ownedUnstructured(c *apiv1.APIConnector, apiVersion, kind, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion,
		"kind":       kind,
		"metadata": map[string]any{
			"name":      name,
			"namespace": c.Namespace,
			"labels":    toAny(Labels(c)),
		},
		"spec": spec,
	}}
	u.SetOwnerReferences(controllerRef(c))
	return u
}

func controllerRef(c *apiv1.APIConnector) []metav1.OwnerReference {
	return []metav1.OwnerReference{{
		APIVersion:         apiv1.GroupVersion.String(),
		Kind:               "APIConnector",
		Name:               c.Name,
		UID:                c.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}}
}

// The Prometheus Operator's PodMonitor is built unstructured, like the Certificate: the operator
// runs without the Prometheus Operator installed.
const (
	PodMonitorAPIVersion = "monitoring.coreos.com/v1"
	PodMonitorKind       = "PodMonitor"
	// ConnectorLabel is the label the PodMonitor gives every runtime series: the connector's name
	// (Prometheus adds namespace). Dashboards and alerts group by namespace and connector.
	ConnectorLabel = "connector"
)

// PodMonitorOptions are the operator's settings of the connectors' PodMonitors.
type PodMonitorOptions struct {
	// Enabled creates a PodMonitor <name> for every connector when the Prometheus Operator's
	// CRDs are installed (--pod-monitors).
	Enabled bool
	// Labels are added to each PodMonitor, e.g. those a Prometheus selects PodMonitors by.
	Labels map[string]string
}

// MakePodMonitor has the Prometheus Operator scrape the connector's runtime pods on their ops
// port, labelling the series with the connector's name. Nil when PodMonitors are off.
func MakePodMonitor(c *apiv1.APIConnector, opts Options) *unstructured.Unstructured {
	if !opts.PodMonitor.Enabled {
		return nil
	}
	u := ownedUnstructured(c, PodMonitorAPIVersion, PodMonitorKind, PodMonitorName(c), map[string]any{
		"selector": map[string]any{"matchLabels": toAny(SelectorLabels(c))},
		"podMetricsEndpoints": []any{map[string]any{
			"port": "ops",
			"path": "/metrics",
			"relabelings": []any{map[string]any{
				"action":       "replace",
				"sourceLabels": []any{"__meta_kubernetes_pod_label_app_kubernetes_io_instance"},
				"targetLabel":  ConnectorLabel,
			}},
		}},
	})
	labels := u.GetLabels()
	for k, v := range opts.PodMonitor.Labels {
		if _, ours := labels[k]; !ours {
			labels[k] = v
		}
	}
	u.SetLabels(labels)
	return u
}

// runtimeEnv is the runtime container's environment: GOMEMLIMIT from the memory limit (the Go
// runtime collects harder as the heap nears it instead of being OOM-killed at it) and, when the
// operator is given a traces endpoint, the OpenTelemetry exporter's endpoint.
func runtimeEnv(opts Options) []*corev1ac.EnvVarApplyConfiguration {
	env := []*corev1ac.EnvVarApplyConfiguration{corev1ac.EnvVar().WithName("GOMEMLIMIT").WithValueFrom(corev1ac.EnvVarSource().
		WithResourceFieldRef(corev1ac.ResourceFieldSelector().WithContainerName("runtime").WithResource("limits.memory")))}
	if opts.TracesEndpoint != "" {
		env = append(env, corev1ac.EnvVar().WithName("OTEL_EXPORTER_OTLP_ENDPOINT").WithValue(opts.TracesEndpoint))
	}
	return env
}
