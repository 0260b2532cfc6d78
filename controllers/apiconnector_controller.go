// Package controllers reconciles APIConnectors into the runtime Deployment, Service, Ingress and
// cert-manager Certificate that serve them, and reports kstatus-compatible status.
package controllers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/runtime/rules"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Reconciler reconciles APIConnectors.
type Reconciler struct {
	// Client reads cached objects and applies children.
	Client client.Client
	// APIReader reads Secrets and ConfigMaps live: they are not cached cluster-wide.
	APIReader client.Reader
	// Mapper tells whether cert-manager is installed; it re-discovers on a miss.
	Mapper   meta.RESTMapper
	Recorder events.EventRecorder
	Options  children.Options

	// watch starts watching an optional kind (cert-manager, Gateway API) the first time it is
	// needed and installed.
	watch   func(schema.GroupVersionKind) error
	watchMu sync.Mutex
	watched map[schema.GroupVersionKind]bool

	compiledMu sync.Mutex
	compiled   map[types.NamespacedName]compiled
}

// inputs are what a connector references, read at the start of a reconcile.
type inputs struct {
	lists   map[string][]string
	secrets map[string]map[string][]byte
}

// +kubebuilder:rbac:groups=apiconnector.dev,resources=apiconnectors,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiconnector.dev,resources=apiconnectors/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps;services,verbs=create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;tlsroutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one connector's children in line with its spec and reports what it sees.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	logger := log.FromContext(ctx)

	conn := &apiv1.APIConnector{}
	if err := r.Client.Get(ctx, req.NamespacedName, conn); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !conn.DeletionTimestamp.IsZero() {
		// Children carry owner references; the garbage collector removes them.
		return ctrl.Result{}, nil
	}

	// Status is written once, at the end, whatever happened.
	base := conn.DeepCopy()
	defer func() {
		conn.Status.ObservedGeneration = conn.Generation
		if equality.Semantic.DeepEqual(base.Status, conn.Status) {
			return
		}
		if err := r.Client.Status().Patch(ctx, conn, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
			retErr = errors.Join(retErr, fmt.Errorf("patch status: %w", err))
		}
	}()

	if reason, msg := r.policyProblem(conn); reason != "" {
		// The last good children keep serving; nothing is applied until the connector complies.
		r.stallWithEvent(conn, reason, msg)
		return ctrl.Result{}, nil
	}
	in, problem, err := r.readInputs(ctx, conn)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != nil {
		r.stallWithEvent(conn, problem.reason, problem.message)
		if problem.inbound {
			// Fail closed, as at start: pods that already loaded the old credentials must not keep
			// accepting them (a deleted Secret's files stay in running pods' volumes).
			return ctrl.Result{}, r.stopRuntime(ctx, conn)
		}
		return ctrl.Result{}, nil
	}

	config, err := children.RenderConfig(conn, in.lists)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !r.rulesCompile(ctx, conn, in, config) {
		// The last good Deployment keeps serving; nothing is applied until the rules are fixed.
		return ctrl.Result{}, nil
	}
	hash := children.ConfigHash(r.Options.HashKey, config, in.secrets)

	if err := r.applyChildren(ctx, conn, config, hash); err != nil {
		setCondition(conn, ConditionReady, metav1.ConditionFalse, ReasonApplyFailed, err.Error())
		setCondition(conn, ConditionReconciling, metav1.ConditionTrue, ReasonApplyFailed, err.Error())
		return ctrl.Result{}, err
	}
	if conn.Status.ConfigHash != hash {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeNormal, "RollingOut", "Apply", "Rolling out configuration %s", hash)
		conn.Status.ConfigHash = hash
	}

	if err := r.observeDeployment(ctx, conn); err != nil {
		return ctrl.Result{}, err
	}
	certApplied, err := r.applyCertificate(ctx, conn)
	if err != nil {
		return ctrl.Result{}, err
	}
	if certApplied {
		if err := r.observeCertificate(ctx, conn); err != nil {
			return ctrl.Result{}, err
		}
	}
	routeApplied, err := r.applyRoute(ctx, conn)
	if err != nil {
		return ctrl.Result{}, err
	}
	if routeApplied {
		if err := r.observeRoute(ctx, conn); err != nil {
			return ctrl.Result{}, err
		}
	}
	conn.Status.Endpoints = []string{children.Endpoint(conn)}
	r.checkTrustedProxies(conn)
	summarize(conn)
	logger.V(1).Info("reconciled", "configHash", hash, "ready", conditionIs(conn, ConditionReady, metav1.ConditionTrue))
	return ctrl.Result{}, nil
}

// inputProblem is why a connector's inputs cannot be used: retrying cannot help, only a change to
// the connector or to what it references (both watched).
type inputProblem struct {
	reason, message string
	// inbound is set when the connector's own credential (the Basic or client-certificate Secret)
	// is gone or invalid: the runtime must stop accepting the old one.
	inbound bool
}

// readInputs reads every referenced Secret and ConfigMap. A missing or invalid one is a problem
// that stalls the connector: the watches on Secrets and ConfigMaps bring it back when fixed. Other
// read errors are returned, to be retried. Messages name the Secret and key, never a value.
func (r *Reconciler) readInputs(ctx context.Context, conn *apiv1.APIConnector) (inputs, *inputProblem, error) {
	in := inputs{lists: map[string][]string{}, secrets: map[string]map[string][]byte{}}
	required := requiredSecretKeys(conn)
	inboundSecret, inboundKeys := inboundCredential(conn)
	isInbound := func(name, key string) bool {
		return name == inboundSecret && (key == "" || slices.Contains(inboundKeys, key))
	}
	for _, name := range children.SecretNames(conn) {
		s := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, s)
		if apierrors.IsNotFound(err) {
			return in, &inputProblem{ReasonSecretNotFound, fmt.Sprintf("Secret %q not found", name) + stopped(isInbound(name, "")), isInbound(name, "")}, nil
		}
		if err != nil {
			return in, nil, fmt.Errorf("read Secret %q: %w", name, err)
		}
		for _, key := range required[name] {
			if len(s.Data[key]) == 0 {
				return in, &inputProblem{ReasonSecretKeyMissing, fmt.Sprintf("Secret %q has no key %q or it is empty", name, key) + stopped(isInbound(name, key)), isInbound(name, key)}, nil
			}
		}
		if name == inboundSecret {
			if p := checkInboundCredential(conn, name, s.Data); p != nil {
				p.message += stopped(true)
				return in, p, nil
			}
		}
		in.secrets[name] = s.Data
	}
	for _, l := range conn.Spec.Lists {
		ref := l.ConfigMapRef
		if ref == nil {
			continue
		}
		cm := &corev1.ConfigMap{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: ref.Name}, cm)
		if apierrors.IsNotFound(err) {
			return in, &inputProblem{reason: ReasonConfigMapNotFound, message: fmt.Sprintf("list %q: ConfigMap %q not found", l.Name, ref.Name)}, nil
		}
		if err != nil {
			return in, nil, fmt.Errorf("list %q: read ConfigMap %q: %w", l.Name, ref.Name, err)
		}
		data, ok := cm.Data[ref.Key]
		if !ok {
			return in, &inputProblem{reason: ReasonConfigMapNotFound, message: fmt.Sprintf("list %q: ConfigMap %q has no key %q", l.Name, ref.Name, ref.Key)}, nil
		}
		in.lists[l.Name] = rules.ParseListData(data)
	}
	return in, nil, nil
}

// stopped is appended to the message of a problem with the connector's own credential.
func stopped(inbound bool) string {
	if !inbound {
		return ""
	}
	return "; no runtime pod serves the connector until it is fixed"
}

// inboundCredential names the Secret and keys Entra ID's requests are checked against; none for
// bearer connectors.
func inboundCredential(conn *apiv1.APIConnector) (string, []string) {
	auth := conn.Spec.Authentication
	switch {
	case auth.Basic != nil:
		return auth.Basic.SecretRef.Name, []string{"username", "password"}
	case auth.ClientCertificate != nil:
		return auth.ClientCertificate.SecretRef.Name, []string{"ca.crt"}
	}
	return "", nil
}

// Basic passwords are guessed online at tens of thousands of attempts per second per replica, so a
// password must be long and not a repetition of a few characters.
const (
	MinPasswordLength   = 16
	MinPasswordDistinct = 5
)

// checkInboundCredential checks the connector's own credential beyond its presence: a Basic
// password long enough, a ca.crt that is a bundle of certificates. Nil when it is usable.
func checkInboundCredential(conn *apiv1.APIConnector, name string, data map[string][]byte) *inputProblem {
	auth := conn.Spec.Authentication
	switch {
	case auth.Basic != nil:
		if err := checkPassword(data["password"]); err != nil {
			return &inputProblem{ReasonWeakPassword, fmt.Sprintf("Secret %q key %q: %v", name, "password", err), true}
		}
	case auth.ClientCertificate != nil:
		if err := checkCABundle(data["ca.crt"]); err != nil {
			return &inputProblem{ReasonSecretInvalid, fmt.Sprintf("Secret %q key %q: %v", name, "ca.crt", err), true}
		}
	}
	return nil
}

// checkPassword enforces MinPasswordLength characters, MinPasswordDistinct of them different. Like
// the runtime, it ignores one trailing newline. The error never quotes the password or its length.
func checkPassword(p []byte) error {
	p = bytes.TrimSuffix(bytes.TrimSuffix(p, []byte("\n")), []byte("\r")) // as the runtime reads it
	distinct := map[rune]bool{}
	n := 0
	for _, c := range string(p) {
		distinct[c] = true
		n++
	}
	if n < MinPasswordLength || len(distinct) < MinPasswordDistinct {
		return fmt.Errorf("the Basic password must be at least %d characters with at least %d different ones; generate one, for example with `openssl rand -base64 24`",
			MinPasswordLength, MinPasswordDistinct)
	}
	return nil
}

// checkCABundle requires PEM CERTIFICATE blocks only, each a parseable certificate, at least one.
func checkCABundle(b []byte) error {
	rest := b
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n++
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("PEM block %d is %q, want only CERTIFICATE blocks", n, block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", n, err)
		}
	}
	if n == 0 {
		return errors.New("holds no PEM certificate")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return fmt.Errorf("has data after certificate %d that is not PEM", n)
	}
	return nil
}

// stopRuntime scales the connector's Deployment to zero, so no pod keeps accepting credentials
// that were revoked. The next successful reconcile applies the replicas of the spec again.
func (r *Reconciler) stopRuntime(ctx context.Context, conn *apiv1.APIConnector) error {
	d := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: children.DeploymentName(conn)}, d); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(d, conn) || ptr.Deref(d.Spec.Replicas, 1) == 0 {
		return nil
	}
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":0}}`))
	if err := r.Client.Patch(ctx, d, patch, client.FieldOwner(children.FieldOwner)); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("scale Deployment %s to 0: %w", d.Name, err)
	}
	conn.Status.ReadyReplicas = 0
	r.Recorder.Eventf(conn, d, corev1.EventTypeWarning, "RuntimeStopped", "Stop", "Scaled Deployment %s to 0: the connector's credential Secret is missing or invalid", d.Name)
	return nil
}

// requiredSecretKeys are the keys each referenced Secret must hold, so a typo is reported on the
// connector instead of as a pod stuck in ContainerCreating.
func requiredSecretKeys(conn *apiv1.APIConnector) map[string][]string {
	out := map[string][]string{}
	add := func(name string, keys ...string) { out[name] = append(out[name], keys...) }
	outbound := func(a *apiv1.OutboundAuth) {
		if a == nil {
			return
		}
		if a.Type == apiv1.OutboundAuthBearer {
			add(a.SecretRef.Name, "token")
		} else {
			add(a.SecretRef.Name, "username", "password")
		}
	}
	if b := conn.Spec.Authentication.Basic; b != nil {
		add(b.SecretRef.Name, "username", "password")
	}
	if cc := conn.Spec.Authentication.ClientCertificate; cc != nil {
		add(cc.SecretRef.Name, "ca.crt")
	}
	for _, c := range conn.Spec.Calls {
		outbound(c.Auth)
	}
	for _, e := range conn.Spec.Events {
		outbound(e.Sink.Auth)
	}
	return out
}

func (r *Reconciler) stallWithEvent(conn *apiv1.APIConnector, reason, message string) {
	if !conditionIs(conn, ConditionStalled, metav1.ConditionTrue) || meta.FindStatusCondition(conn.Status.Conditions, ConditionStalled).Message != message {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeWarning, reason, "Reconcile", "%s", eventNote(message))
	}
	stall(conn, reason, message)
}

// maxEventNote is the API server's limit on an events.k8s.io Event's note, in bytes; a longer
// one is refused and the event lost.
const maxEventNote = 1024

// eventNote shortens a message to fit an Event's note, cutting at a character boundary. The
// condition keeps the whole message.
func eventNote(message string) string {
	const more = " ..."
	if len(message) <= maxEventNote {
		return message
	}
	cut := maxEventNote - len(more)
	for cut > 0 && !utf8.RuneStart(message[cut]) {
		cut--
	}
	return message[:cut] + more
}

// rulesCompile compiles the connector exactly as the runtime will (with lists resolved) and
// records the outcome in RulesValid. The outcome is kept per connector and rendered config, so the
// reconciles that only follow child events or resyncs do not compile the CEL again.
func (r *Reconciler) rulesCompile(ctx context.Context, conn *apiv1.APIConnector, in inputs, config []byte) bool {
	out := r.compileOutcome(ctx, conn, in, config)
	if out.err != "" {
		setCondition(conn, ConditionRulesValid, metav1.ConditionFalse, ReasonInvalidRules, out.err)
		r.stallWithEvent(conn, ReasonInvalidRules, out.err)
		return false
	}
	msg := "All expressions compile."
	if len(out.warnings) > 0 {
		// Warnings (for example call timeouts that do not fit Entra's budget) do not block a rollout.
		msg += " Warnings: " + strings.Join(out.warnings, "; ")
	}
	setCondition(conn, ConditionRulesValid, metav1.ConditionTrue, ReasonCompiled, msg)
	return true
}

// compiled is what compiling one rendered config gave.
type compiled struct {
	sum      [sha256.Size]byte
	err      string // empty when every expression compiles
	warnings []string
}

func (r *Reconciler) compileOutcome(ctx context.Context, conn *apiv1.APIConnector, in inputs, config []byte) compiled {
	key := client.ObjectKeyFromObject(conn)
	sum := sha256.Sum256(config)
	r.compiledMu.Lock()
	prev, ok := r.compiled[key]
	r.compiledMu.Unlock()
	if ok && prev.sum == sum {
		return prev
	}
	resolved := conn.DeepCopy()
	for i := range resolved.Spec.Lists {
		l := &resolved.Spec.Lists[i]
		if l.ConfigMapRef != nil {
			l.Values, l.ConfigMapRef = in.lists[l.Name], nil
		}
	}
	out := compiled{sum: sum}
	if engine, err := rules.Compile(resolved, rules.Options{}); err != nil {
		out.err = err.Error()
	} else {
		out.warnings = engine.Warnings()
		_ = engine.Close(ctx)
	}
	r.compiledMu.Lock()
	if r.compiled == nil {
		r.compiled = map[types.NamespacedName]compiled{}
	}
	r.compiled[key] = out
	r.compiledMu.Unlock()
	return out
}

// forget drops what is kept about a deleted connector.
func (r *Reconciler) forget(key types.NamespacedName) {
	r.compiledMu.Lock()
	delete(r.compiled, key)
	r.compiledMu.Unlock()
}

// applyConfiguration is a typed client-go apply configuration.
type applyConfiguration interface {
	runtime.ApplyConfiguration
	GetName() *string
	GetKind() *string
}

// apply server-side applies a child as our field owner, taking over fields someone else changed:
// the connector is the source of truth for its children.
func (r *Reconciler) apply(ctx context.Context, ac applyConfiguration) error {
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(children.FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply %s %s: %w", ptr.Deref(ac.GetKind(), ""), ptr.Deref(ac.GetName(), ""), err)
	}
	return nil
}

// applyChildren applies every child with server-side apply and removes the ones the spec no longer
// wants (an Ingress after switching to LoadBalancer, a PDB at one replica, a Certificate after
// switching to a user Secret).
func (r *Reconciler) applyChildren(ctx context.Context, conn *apiv1.APIConnector, config []byte, hash string) error {
	objs := []applyConfiguration{
		children.MakeConfigMap(conn, config),
		children.MakeDeployment(conn, r.Options, hash),
		children.MakeService(conn),
		children.MakeMetricsService(conn),
	}
	type child struct {
		gvk  schema.GroupVersionKind
		name string
	}
	var stale []child
	if children.WantsIngress(conn) {
		objs = append(objs, children.MakeIngress(conn))
	} else {
		stale = append(stale, child{networkingv1.SchemeGroupVersion.WithKind("Ingress"), children.IngressName(conn)})
	}
	if children.WantsNetworkPolicy(conn, r.Options) {
		ports, err := r.serviceTargetPorts(ctx, conn)
		if err != nil {
			return err
		}
		objs = append(objs, children.MakeNetworkPolicy(conn, r.Options, ports))
	} else {
		stale = append(stale, child{networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"), children.NetworkPolicyName(conn)})
	}
	if children.WantsPodDisruptionBudget(conn) {
		objs = append(objs, children.MakePodDisruptionBudget(conn))
	} else {
		stale = append(stale, child{policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"), children.PDBName(conn)})
	}
	for _, o := range objs {
		if err := r.apply(ctx, o); err != nil {
			return err
		}
	}
	for _, o := range stale {
		if err := r.deleteOwned(ctx, conn, o.gvk, o.name); err != nil {
			return err
		}
	}
	return nil
}

// serviceTargetPorts finds, for each destination that is a cluster Service (ServiceHost), the
// port of the Service's pods behind the destination's port: NetworkPolicies see connections after
// the Service's address translation. A Service that does not exist (yet) or has no such port is
// left out, and its URL's port is used; the Service watch reconciles again when it changes.
func (r *Reconciler) serviceTargetPorts(ctx context.Context, conn *apiv1.APIConnector) (map[children.Destination]intstr.IntOrString, error) {
	out := map[children.Destination]intstr.IntOrString{}
	for _, d := range children.Destinations(conn) {
		ns, name, ok := children.ServiceHost(d.Host)
		if !ok {
			continue
		}
		svc := &corev1.Service{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("read Service %s/%s of %s: %w", ns, name, d.Host, err)
		}
		if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue // no translation: the URL's port is the one connected to
		}
		for _, p := range svc.Spec.Ports {
			tcp := p.Protocol == "" || p.Protocol == corev1.ProtocolTCP
			if tcp && p.Port == d.Port && p.TargetPort != (intstr.IntOrString{}) {
				out[d] = p.TargetPort
			}
		}
	}
	return out, nil
}

// deleteOwned deletes a child we no longer want, but only if we control it. It reads metadata
// only, from the informers the Owns watches already run.
func (r *Reconciler) deleteOwned(ctx context.Context, conn *apiv1.APIConnector, gvk schema.GroupVersionKind, name string) error {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(gvk)
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, conn) {
		return nil
	}
	if err := r.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %s %s: %w", gvk.Kind, name, err)
	}
	return nil
}

// applyCertificate creates the Certificate when the connector names an issuer and cert-manager is
// installed; it reports whether one was applied, so its readiness is worth reading.
func (r *Reconciler) applyCertificate(ctx context.Context, conn *apiv1.APIConnector) (bool, error) {
	cert := children.MakeCertificate(conn)
	if cert == nil {
		meta.RemoveStatusCondition(&conn.Status.Conditions, ConditionCertificateReady)
		return false, r.deleteIfInstalled(ctx, conn, certificateKind, children.CertificateName(conn))
	}
	installed, err := r.installed(ctx, certificateKind)
	if err != nil {
		return false, err
	}
	if !installed {
		setCondition(conn, ConditionCertificateReady, metav1.ConditionFalse, ReasonCertManagerNotInstalled,
			"spec.exposure.tls.issuerRef needs cert-manager, which is not installed; install it or set spec.exposure.tls.secretName")
		return false, nil
	}
	if err := r.ensureWatch(certificateKind); err != nil {
		return false, err
	}
	err = r.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(cert), client.FieldOwner(children.FieldOwner), client.ForceOwnership)
	if err != nil {
		return false, fmt.Errorf("apply Certificate %s: %w", cert.GetName(), err)
	}
	return true, nil
}

// observeCertificate mirrors the Certificate's Ready condition into CertificateReady.
func (r *Reconciler) observeCertificate(ctx context.Context, conn *apiv1.APIConnector) error {
	cert := &unstructured.Unstructured{}
	cert.SetGroupVersionKind(CertificateGVK)
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: children.CertificateName(conn)}, cert); err != nil {
		return client.IgnoreNotFound(err)
	}
	status, reason, message := metav1.ConditionFalse, ReasonCertificateNotReady, "cert-manager has not issued the certificate yet"
	conds, _, _ := unstructured.NestedSlice(cert.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		if m["status"] == "True" {
			status, reason, message = metav1.ConditionTrue, ReasonIssued, "The certificate is issued."
		} else if msg, _ := m["message"].(string); msg != "" {
			message = msg
		}
	}
	setCondition(conn, ConditionCertificateReady, status, reason, message)
	return nil
}

// observeDeployment mirrors what the kube-controller-manager reports about the rollout.
func (r *Reconciler) observeDeployment(ctx context.Context, conn *apiv1.APIConnector) error {
	d := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: children.DeploymentName(conn)}, d); err != nil {
		if apierrors.IsNotFound(err) {
			setCondition(conn, ConditionDeploymentAvailable, metav1.ConditionFalse, ReasonDeploymentUnavailable, "The Deployment does not exist yet.")
			return nil
		}
		return fmt.Errorf("read Deployment: %w", err)
	}
	conn.Status.ReadyReplicas = d.Status.ReadyReplicas
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	available := false
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			available = true
		}
	}
	rolledOut := d.Status.ObservedGeneration >= d.Generation &&
		d.Status.UpdatedReplicas == want && d.Status.Replicas == want && d.Status.AvailableReplicas == want
	switch {
	case want == 0:
		setCondition(conn, ConditionDeploymentAvailable, metav1.ConditionFalse, ReasonDeploymentUnavailable, "spec.runtime.replicas is 0: nothing serves the endpoint.")
	case available && rolledOut:
		setCondition(conn, ConditionDeploymentAvailable, metav1.ConditionTrue, ReasonAvailable,
			fmt.Sprintf("%d/%d replicas serve the current configuration.", d.Status.AvailableReplicas, want))
	default:
		setCondition(conn, ConditionDeploymentAvailable, metav1.ConditionFalse, ReasonDeploymentUnavailable,
			fmt.Sprintf("Rolling out: %d/%d replicas updated, %d available.", d.Status.UpdatedReplicas, want, d.Status.AvailableReplicas))
	}
	return nil
}

// indexKeys returns "namespace/name" keys, the form the watch indexes store.
func indexKeys(namespace string, names []string) []string {
	out := make([]string, 0, len(names))
	for _, n := range names {
		out = append(out, namespace+"/"+n)
	}
	sort.Strings(out)
	return out
}

// Trusted proxy ranges wider than these are reported: an IPv4 /16 is already a whole pod network
// in most clusters; an IPv6 /64 is one node's pods.
const (
	maxTrustedProxyBitsV4 = 16
	maxTrustedProxyBitsV6 = 64
)

// checkTrustedProxies reports, in TrustedProxiesScoped, forwarded-certificate trusted ranges wider
// than an ingress controller's pods need. It is a warning: Ready does not depend on it.
func (r *Reconciler) checkTrustedProxies(conn *apiv1.APIConnector) {
	cc := conn.Spec.Authentication.ClientCertificate
	if cc == nil || cc.Forwarded == nil {
		meta.RemoveStatusCondition(&conn.Status.Conditions, ConditionTrustedProxiesScoped)
		return
	}
	var wide []string
	for _, cidr := range cc.Forwarded.TrustedProxies {
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			wide = append(wide, cidr+" (not a CIDR)")
			continue
		}
		if (p.Addr().Is4() && p.Bits() < maxTrustedProxyBitsV4) || (!p.Addr().Is4() && p.Bits() < maxTrustedProxyBitsV6) {
			wide = append(wide, cidr)
		}
	}
	if len(wide) == 0 {
		setCondition(conn, ConditionTrustedProxiesScoped, metav1.ConditionTrue, ReasonScoped,
			"Every trusted proxy range is at most an IPv4 /16 or an IPv6 /64.")
		return
	}
	msg := fmt.Sprintf("spec.authentication.clientCertificate.forwarded.trustedProxies wider than an IPv4 /%d or an IPv6 /%d: %s; "+
		"any pod in such a range that can reach the runtime can present any certificate: narrow it to the ingress controller's pod addresses",
		maxTrustedProxyBitsV4, maxTrustedProxyBitsV6, strings.Join(wide, ", "))
	if !conditionIs(conn, ConditionTrustedProxiesScoped, metav1.ConditionFalse) {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeWarning, ReasonTrustedProxiesTooWide, "Validate", "%s", msg)
	}
	setCondition(conn, ConditionTrustedProxiesScoped, metav1.ConditionFalse, ReasonTrustedProxiesTooWide, msg)
}
