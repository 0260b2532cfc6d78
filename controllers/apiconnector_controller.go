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
	"time"
	"unicode/utf8"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/runtime/rules"
	"github.com/apiconnector/operator/runtime/secretfile"
	"golang.org/x/net/http/httpguts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
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
	// Entra says how registrations in Entra reach it (spec.entra).
	Entra EntraOptions

	// watch starts watching an optional kind (cert-manager, Gateway API) the first time it is
	// needed and installed.
	watch   func(schema.GroupVersionKind) error
	watchMu sync.Mutex
	watched map[schema.GroupVersionKind]bool
	// watchedAt is when each optional kind's watch started (watchSettling).
	watchedAt map[schema.GroupVersionKind]time.Time

	compiledMu sync.Mutex
	compiled   map[types.NamespacedName]compiled

	metrics *operatorMetrics

	entra entraClients
	// entraStatus is the status.entra each connector was last given by this process (by UID).
	entraMu     sync.Mutex
	entraStatus map[types.UID]*apiv1.EntraStatus
}

// inputs are what a connector references, read at the start of a reconcile.
type inputs struct {
	lists   map[string][]string
	secrets map[string]map[string][]byte
	// entraBasic is the Basic credential Entra holds (spec.entra), when recorded.
	entraBasic map[string][]byte
}

// +kubebuilder:rbac:groups=apiconnector.dev,resources=apiconnectors,verbs=get;list;watch;patch;update
// +kubebuilder:rbac:groups=apiconnector.dev,resources=apiconnectors/finalizers,verbs=update
// +kubebuilder:rbac:groups=apiconnector.dev,resources=entratenants,verbs=get;list;watch
// +kubebuilder:rbac:groups=apiconnector.dev,resources=entratenants/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;update;patch
// +kubebuilder:rbac:groups=apiconnector.dev,resources=apiconnectors/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps;services,verbs=create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;networkpolicies,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=cert-manager.io,resources=certificates,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes;tlsroutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=gateways,verbs=get;list;watch
// +kubebuilder:rbac:groups=monitoring.coreos.com,resources=podmonitors,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one connector's children in line with its spec and reports what it observed.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	conn := &apiv1.APIConnector{}
	if err := r.Client.Get(ctx, req.NamespacedName, conn); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Status is computed and written once, at the end, from what this reconcile observed.
	base := conn.DeepCopy()
	s := &scope{conn: conn}
	if !conn.DeletionTimestamp.IsZero() {
		// Children carry owner references; the garbage collector removes them. Only a
		// registration in Entra is removed by the operator (EntraFinalizer).
		if !controllerutil.ContainsFinalizer(conn, EntraFinalizer) {
			return ctrl.Result{}, nil
		}
		s.err = r.finishEntra(ctx, s)
		if controllerutil.ContainsFinalizer(conn, EntraFinalizer) && !equality.Semantic.DeepEqual(base.Status, conn.Status) {
			if err := r.Client.Status().Patch(ctx, conn, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, errors.Join(s.err, fmt.Errorf("patch status: %w", err))
			}
		}
		return ctrl.Result{RequeueAfter: s.recheck}, s.err
	}
	if err := r.syncEntraFinalizer(ctx, conn); err != nil {
		return ctrl.Result{}, err
	}
	s.err = r.reconcile(ctx, s)
	s.status()
	conn.Status.ObservedGeneration = conn.Generation
	r.metrics.observeReady(req.NamespacedName, base, conn, time.Now())
	result := ctrl.Result{RequeueAfter: s.recheck}
	if equality.Semantic.DeepEqual(base.Status, conn.Status) {
		return result, s.err
	}
	if err := r.Client.Status().Patch(ctx, conn, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return result, errors.Join(s.err, fmt.Errorf("patch status: %w", err))
	}
	return result, s.err
}

// reconcile checks everything the connector needs, records every problem in s, and applies the
// children only when none blocks them. It returns only errors worth retrying.
func (r *Reconciler) reconcile(ctx context.Context, s *scope) error {
	conn := s.conn
	r.checkPolicy(s)
	in, inboundRevoked, err := r.readInputs(ctx, s)
	if err != nil {
		return err
	}
	config, err := children.RenderConfig(conn, in.lists)
	if err != nil {
		return err
	}
	r.rulesCompile(ctx, s, in, config)
	if err := r.checkEndpoint(ctx, s); err != nil {
		return err
	}
	if s.blocked() {
		r.reportProblems(s)
		if inboundRevoked {
			// Fail closed, as at start: pods that already loaded the old credentials must not keep
			// accepting them (a deleted Secret's files stay in running pods' volumes).
			return r.stopRuntime(ctx, conn)
		}
		// The last good children keep serving until the problems are fixed.
		return nil
	}

	hash := children.ConfigHash(r.Options.HashKey, config, in.secrets)
	plan, err := r.plan(ctx, conn, config, hash)
	if err != nil {
		return err
	}
	if plan.recheck > 0 {
		s.recheck = plan.recheck
	}
	if err := r.checkOwnership(ctx, s, plan); err != nil {
		return err
	}
	if s.blocked() {
		r.reportProblems(s)
		return nil
	}
	if err := r.applyPlan(ctx, conn, plan); err != nil {
		return err
	}
	if conn.Status.ConfigHash != hash {
		r.Recorder.Eventf(conn, nil, corev1.EventTypeNormal, "RollingOut", "Apply", "Rolling out configuration %s", hash)
		conn.Status.ConfigHash = hash
	}
	if err := r.observeDeployment(ctx, s, hash); err != nil {
		return err
	}
	if plan.certificate != nil {
		if err := r.observeCertificate(ctx, conn); err != nil {
			return err
		}
	}
	https := children.ServesTLS(conn)
	if plan.route != nil {
		if err := r.observeRoute(ctx, conn); err != nil {
			return err
		}
		if !https {
			if https, err = r.gatewayServesHTTPS(ctx, conn); err != nil {
				return err
			}
		}
	} else if children.WantsRoute(conn) {
		https = true // no route without the Gateway API, so no verdict: RouteReady says why
	}
	conn.Status.Endpoints = []string{children.Endpoint(conn, https)}
	if !https && !conn.Spec.Exposure.ExternalTLS {
		s.warnStalled(ReasonNotHTTPS, notHTTPSMessage(conn))
	}
	r.checkTrustedProxies(conn)
	if conn.Spec.Entra != nil {
		if err := r.registerInEntra(ctx, s, in); err != nil {
			r.reportProblems(s)
			return err
		}
	} else if conn.Status.Entra != nil || controllerutil.ContainsFinalizer(conn, EntraFinalizer) {
		if err := r.finishEntra(ctx, s); err != nil {
			r.reportProblems(s)
			return err
		}
	}
	r.reportProblems(s)
	log.FromContext(ctx).V(1).Info("reconciled", "configHash", hash, "problems", len(s.problems))
	return nil
}

// reportProblems records a Warning event when the connector's problems differ from what its status
// already says, so each new problem is announced once.
func (r *Reconciler) reportProblems(s *scope) {
	if len(s.problems) == 0 {
		return
	}
	msg := s.stalledMessage()
	if cond := meta.FindStatusCondition(s.conn.Status.Conditions, ConditionStalled); cond != nil && cond.Status == metav1.ConditionTrue && cond.Message == msg {
		return
	}
	r.Recorder.Eventf(s.conn, nil, corev1.EventTypeWarning, s.problems[0].reason, "Reconcile", "%s", eventNote(msg))
}

// readInputs reads every referenced Secret and ConfigMap. Every missing or invalid one is recorded
// in s as a problem (the watches on Secrets and ConfigMaps bring the connector back when fixed); a
// missing list reads as empty so the rules are still compiled and their problems reported too.
// inboundRevoked is set when the connector's own credential (the Basic or client-certificate
// Secret) is missing or invalid: the runtime must stop accepting the old one. Other read errors are
// returned, to be retried. Messages name the Secret and key, never a value.
func (r *Reconciler) readInputs(ctx context.Context, s *scope) (in inputs, inboundRevoked bool, err error) {
	conn := s.conn
	in = inputs{lists: map[string][]string{}, secrets: map[string]map[string][]byte{}}
	required := requiredSecretKeys(conn)
	inboundSecret, inboundKeys := inboundCredential(conn)
	isInbound := func(name, key string) bool {
		return name == inboundSecret && (key == "" || slices.Contains(inboundKeys, key))
	}
	problem := func(reason, message string, inbound bool) {
		if inbound {
			inboundRevoked = true
			message += "; no runtime pod serves the connector until it is fixed"
		}
		s.stall(reason, message)
	}
	for _, name := range children.SecretNames(conn) {
		sec := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, sec)
		if apierrors.IsNotFound(err) {
			problem(ReasonSecretNotFound, fmt.Sprintf("Secret %q not found", name), isInbound(name, ""))
			continue
		}
		if err != nil {
			return in, false, fmt.Errorf("read Secret %q: %w", name, err)
		}
		complete := true
		for _, key := range required[name] {
			if len(sec.Data[key]) == 0 {
				problem(ReasonSecretKeyMissing, fmt.Sprintf("Secret %q has no key %q or it is empty", name, key), isInbound(name, key))
				complete = false
			}
		}
		if complete && name == inboundSecret {
			if reason, msg := checkInboundCredential(conn, name, sec.Data); reason != "" {
				problem(reason, msg, true)
			}
		}
		checkSecretValues(s, name, sec.Data)
		in.secrets[name] = sec.Data
	}
	if conn.Spec.Entra != nil && conn.Spec.Authentication.Basic != nil {
		// The credential Entra holds, which the runtime accepts too; absent until registered.
		// Read after the connector's own Secret, which it is compared with.
		name := children.EntraBasicSecretName(conn)
		sec := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, sec)
		switch {
		case err == nil && metav1.IsControlledBy(sec, conn):
			in.entraBasic = sec.Data
			if entraBasicRotating(conn, in) {
				// Only a credential different from the connector's own rolls the pods: they
				// must accept both until Entra has the new one.
				in.secrets[name] = sec.Data
			}
		case err != nil && !apierrors.IsNotFound(err):
			return in, false, fmt.Errorf("read Secret %q: %w", name, err)
		}
	}
	for _, l := range conn.Spec.Lists {
		ref := l.ConfigMapRef
		if ref == nil {
			continue
		}
		cm := &corev1.ConfigMap{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: ref.Name}, cm)
		if apierrors.IsNotFound(err) {
			s.stall(ReasonConfigMapNotFound, fmt.Sprintf("list %q: ConfigMap %q not found", l.Name, ref.Name))
			in.lists[l.Name] = nil
			continue
		}
		if err != nil {
			return in, false, fmt.Errorf("list %q: read ConfigMap %q: %w", l.Name, ref.Name, err)
		}
		data, ok := cm.Data[ref.Key]
		if !ok {
			s.stall(ReasonConfigMapNotFound, fmt.Sprintf("list %q: ConfigMap %q has no key %q", l.Name, ref.Name, ref.Key))
			in.lists[l.Name] = nil
			continue
		}
		in.lists[l.Name] = rules.ParseListData(data)
	}
	return in, inboundRevoked, nil
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
// password long enough, a ca.crt that is a bundle of certificates. An empty reason when usable.
func checkInboundCredential(conn *apiv1.APIConnector, name string, data map[string][]byte) (reason, message string) {
	auth := conn.Spec.Authentication
	switch {
	case auth.Basic != nil:
		if err := checkPassword(data["password"]); err != nil {
			return ReasonWeakPassword, fmt.Sprintf("Secret %q key %q: %v", name, "password", err)
		}
	case auth.ClientCertificate != nil:
		if err := checkCABundle(data["ca.crt"]); err != nil {
			return ReasonSecretInvalid, fmt.Sprintf("Secret %q key %q: %v", name, "ca.crt", err)
		}
	}
	return "", ""
}

// checkPassword enforces MinPasswordLength characters, MinPasswordDistinct of them different. Like
// the runtime, it ignores one trailing newline. The error never quotes the password or its length.
func checkPassword(p []byte) error {
	p = secretfile.Trim(p) // as the runtime reads it
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

// checkSecretValues checks the values that secretHeaders and secretQueryParams read from the
// Secret name as the runtime reads them (secretfile.Trim): not empty, and a valid header value for
// a header, so a bad value is reported here rather than as failing calls. Messages name the Secret,
// the key and the header or parameter, never the value.
func checkSecretValues(s *scope, name string, data map[string][]byte) {
	check := func(field, what, param string, ref apiv1.SecretKeySelector, header bool) {
		if ref.Name != name || len(data[ref.Key]) == 0 {
			return // a missing key is already reported
		}
		v := secretfile.Trim(data[ref.Key])
		switch {
		case len(v) == 0:
			s.stall(ReasonSecretKeyMissing, fmt.Sprintf("%s %s %q: Secret %q key %q is empty", field, what, param, name, ref.Key))
		case header && !httpguts.ValidHeaderFieldValue(string(v)):
			s.stall(ReasonSecretInvalid, fmt.Sprintf("%s %s %q: Secret %q key %q is not a valid HTTP header value (it holds a line break or another control character)", field, what, param, name, ref.Key))
		}
	}
	checkAll := func(field string, sv apiv1.SecretValues) {
		for _, h := range sv.SecretHeaders {
			check(field, "secret header", h.Name, h.ValueFrom.SecretKeyRef, true)
		}
		for _, q := range sv.SecretQueryParams {
			check(field, "secret query parameter", q.Name, q.ValueFrom.SecretKeyRef, false)
		}
	}
	for _, c := range s.conn.Spec.Calls {
		checkAll("call "+c.Name+":", c.SecretValues)
	}
	for _, e := range s.conn.Spec.Events {
		checkAll("event "+e.Name+":", e.Sink.SecretValues)
	}
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
	for _, ref := range children.SecretKeyRefs(conn) {
		add(ref.Name, ref.Key)
	}
	return out
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
// records the outcome in RulesValid (and a problem in s). The outcome is kept per connector and rendered config, so the
// reconciles that only follow child events or resyncs do not compile the CEL again.
func (r *Reconciler) rulesCompile(ctx context.Context, s *scope, in inputs, config []byte) {
	conn := s.conn
	out := r.compileOutcome(ctx, conn, in, config)
	if out.err != "" {
		setCondition(conn, ConditionRulesValid, metav1.ConditionFalse, ReasonInvalidRules, out.err)
		s.stall(ReasonInvalidRules, out.err)
		return
	}
	msg := "All expressions compile."
	if len(out.warnings) > 0 {
		// Warnings (for example call timeouts that do not fit Entra's budget) do not block a rollout.
		msg += " Warnings: " + strings.Join(out.warnings, "; ")
	}
	setCondition(conn, ConditionRulesValid, metav1.ConditionTrue, ReasonCompiled, msg)
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
	r.metrics.forget(key)
}

// serviceTargetPorts finds, for each destination that is a cluster Service (apiv1.ClusterServiceHost), the
// port of the Service's pods behind the destination's port: NetworkPolicies see connections after
// the Service's address translation. A Service that does not exist (yet), that the operator may
// not read, or that has no such port is left out, and its URL's port is used; the Service watch
// reconciles again when it changes.
func (r *Reconciler) serviceTargetPorts(ctx context.Context, conn *apiv1.APIConnector) (map[children.Destination]intstr.IntOrString, error) {
	out := map[children.Destination]intstr.IntOrString{}
	for _, d := range children.Destinations(conn) {
		ns, name, ok := apiv1.ClusterServiceHost(d.Host)
		if !ok {
			continue
		}
		svc := &corev1.Service{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, svc); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				continue // not there, or outside the namespaces the operator may read (--watch-namespaces)
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
func (r *Reconciler) observeDeployment(ctx context.Context, s *scope, hash string) error {
	conn := s.conn
	d := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: children.DeploymentName(conn)}, d); err != nil {
		if apierrors.IsNotFound(err) {
			setCondition(conn, ConditionDeploymentAvailable, metav1.ConditionFalse, ReasonDeploymentUnavailable, "The Deployment does not exist yet.")
			return nil
		}
		return fmt.Errorf("read Deployment: %w", err)
	}
	conn.Status.ReadyReplicas = d.Status.ReadyReplicas
	conn.Status.Replicas = d.Status.Replicas
	conn.Status.DesiredReplicas = ptr.Deref(d.Spec.Replicas, 1)
	st, reason, msg := rollout(conn, d, hash)
	s.scaledToZero = reason == ReasonScaledToZero
	setCondition(conn, ConditionDeploymentAvailable, st, reason, msg)
	return nil
}

// rollout judges a Deployment: the configuration is rolled out when the pod template carries
// hash, the Deployment controller has seen that template, and every replica runs it and is
// available. A Deployment still running an older template is rolling out, whatever it reports
// as available.
func rollout(conn *apiv1.APIConnector, d *appsv1.Deployment, hash string) (metav1.ConditionStatus, string, string) {
	want := ptr.Deref(d.Spec.Replicas, 1)
	current := d.Spec.Template.Annotations[children.ConfigHashKey] == hash && d.Status.ObservedGeneration >= d.Generation
	updated := current && d.Status.UpdatedReplicas == want && d.Status.Replicas == want
	switch {
	case want == 0 && ptr.Deref(conn.Spec.Runtime.Replicas, 1) == 0:
		return metav1.ConditionFalse, ReasonScaledToZero, "spec.runtime.replicas is 0: nothing serves the endpoint."
	case updated && d.Status.AvailableReplicas == want:
		return metav1.ConditionTrue, ReasonAvailable, fmt.Sprintf("%d/%d replicas serve the current configuration.", want, want)
	case updated:
		return metav1.ConditionFalse, ReasonDeploymentUnavailable,
			fmt.Sprintf("%d/%d replicas of the current configuration are available; the others are not ready (see `kubectl describe pods -l app.kubernetes.io/instance=%s`).",
				d.Status.AvailableReplicas, want, conn.Name)
	default:
		return metav1.ConditionFalse, ReasonDeploymentUnavailable,
			fmt.Sprintf("Rolling out configuration %s: %d/%d replicas updated, %d available.", hash, d.Status.UpdatedReplicas, want, d.Status.AvailableReplicas)
	}
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
