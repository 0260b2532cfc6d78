package controllers

import (
	"context"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // Entra names client certificates by their SHA-1 thumbprint.
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/internal/graph"
	"github.com/apiconnector/operator/runtime/secretfile"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"software.sslmate.com/src/go-pkcs12"
)

// EntraFinalizer keeps a connector registered in Entra with deletionPolicy Delete until what the
// operator created there is gone.
const EntraFinalizer = "apiconnector.dev/entra-registration"

// ConditionEntraRegistered says whether Entra holds a registration matching the connector.
const ConditionEntraRegistered = "EntraRegistered"

// Reasons of EntraRegistered.
const (
	ReasonRegistered            = "Registered"
	ReasonTenantNotReady        = "TenantNotReady"
	ReasonWaitingForEndpoint    = "WaitingForEndpoint"
	ReasonIdentifierURIMismatch = "IdentifierURIMismatch"
	ReasonValidationFailed      = "ValidationFailed"
	ReasonGraphError            = "GraphError"
	ReasonThrottled             = "Throttled"
	ReasonRotatingCredential    = "RotatingCredential"
	ReasonDeleting              = "Deleting"
)

const (
	// defaultConsistencyWindow: Graph may answer 404 for an object it created this long ago (its
	// directory replicates); an object missing after that was deleted outside the cluster.
	defaultConsistencyWindow = 2 * time.Minute
	// entraPermanentRecheck is when a registration that failed for a reason outside the cluster
	// (a missing permission, an identifier URI) is tried again.
	entraPermanentRecheck = time.Minute
	// entraNotVisibleRecheck is when to look again for an object Graph does not show yet.
	entraNotVisibleRecheck = 2 * time.Second
)

// errNotVisibleYet: an object the operator just created is not readable yet.
var errNotVisibleYet = errors.New("the object the operator created is not visible in Microsoft Graph yet")

// registerInEntra makes Entra hold the registration spec.entra asks for, once the endpoint is
// served, and records what it found in the EntraRegistered condition and status.entra. Problems
// only a change outside the reconcile can fix are recorded in s; Graph's throttling and its
// eventual consistency set s.recheck; other transient failures are returned to be retried.
func (r *Reconciler) registerInEntra(ctx context.Context, s *scope, in inputs) error {
	conn := s.conn
	notYet := func(reason, msg string) {
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, reason, msg)
	}
	if msg, ok := endpointServed(conn); !ok {
		if entraBasicRotating(conn, in) {
			notYet(ReasonRotatingCredential, rotatingMessage)
		} else {
			notYet(ReasonWaitingForEndpoint, "Waiting for the endpoint to be served before registering it in Entra: "+msg)
		}
		return nil
	}
	tenant, gc, ok, err := r.readyTenant(ctx, s, conn.Spec.Entra.TenantRef.Name)
	if err != nil || !ok {
		return err
	}
	st := conn.Status.Entra
	if known := r.entraKnown(conn); known != nil {
		// This process wrote status.entra last; the cached connector may not show it yet, and
		// registering again from it would create the objects twice.
		st = known
	}
	defer r.entraRemember(conn)
	if st == nil || st.Tenant != tenant.Name || st.TenantID != tenant.Spec.TenantID {
		if st != nil && (st.APIConnectorID != "" || st.CustomExtensionID != "") {
			// Moving to another tenant: what was created in the old one stays (a tenant's
			// objects cannot be moved); say so rather than leave it unnoticed.
			r.Recorder.Eventf(conn, nil, corev1.EventTypeWarning, "EntraTenantChanged", "Register",
				"Registering in EntraTenant %q; the objects created through %q are left there", tenant.Name, st.Tenant)
		}
		st = &apiv1.EntraStatus{}
	}
	st.Tenant, st.TenantID = tenant.Name, tenant.Spec.TenantID
	conn.Status.Entra = st
	if err := r.stepChanged(ctx, gc, conn, st); err != nil {
		return r.entraFailed(s, err)
	}

	var done bool
	if conn.Spec.Step.IsExtension() {
		done, err = r.registerExtension(ctx, s, gc, st)
	} else {
		done, err = r.registerAPIConnector(ctx, s, gc, st, in)
	}
	if err != nil {
		return r.entraFailed(s, err)
	}
	if !done {
		return nil
	}
	now := metav1.Now()
	st.LastSyncTime = &now
	msg := registeredMessage(conn, tenant)
	if s.entraWarnings != "" {
		msg += " " + s.entraWarnings
	}
	setCondition(conn, ConditionEntraRegistered, metav1.ConditionTrue, ReasonRegistered, msg)
	s.recheckWithin(resyncInterval(tenant))
	return nil
}

// stepChanged removes what was registered for another step: the user flow attachments at the old
// step's property (or of the other kind of user flow), or the objects of the other protocol (an API connector for an extension step,
// an extension and its listener for a legacy step). An extension of another event type is
// replaced by registerExtension.
func (r *Reconciler) stepChanged(ctx context.Context, gc *graph.Client, conn *apiv1.APIConnector, st *apiv1.EntraStatus) error {
	step := conn.Spec.Step
	moved := st.Step != step || userFlowKind(st.UserFlowKind) != userFlowKind(conn.Spec.Entra.UserFlowKind)
	if st.Step != "" && moved && st.APIConnectorID != "" {
		if step.IsExtension() {
			if err := deleteAPIConnector(ctx, gc, st); err != nil {
				return err
			}
		} else {
			prop := st.Step.Graph().UserFlowProperty
			for _, flow := range st.UserFlows {
				if err := detachUserFlow(ctx, gc, userFlowKind(st.UserFlowKind), flow, prop, st.APIConnectorID); err != nil {
					return err
				}
			}
			st.UserFlows = nil
		}
	}
	if !step.IsExtension() && st.CustomExtensionID != "" {
		if err := deleteExtension(ctx, gc, st); err != nil {
			return err
		}
	}
	st.Step = step
	return nil
}

func registeredMessage(conn *apiv1.APIConnector, tenant *apiv1.EntraTenant) string {
	st := conn.Status.Entra
	if conn.Spec.Step.IsExtension() {
		msg := fmt.Sprintf("Tenant %s holds custom authentication extension %s", tenant.Spec.TenantID, st.CustomExtensionID)
		if st.EventListenerID != "" {
			msg += fmt.Sprintf(" with event listener %s", st.EventListenerID)
		}
		return msg + "."
	}
	msg := fmt.Sprintf("Tenant %s holds API connector %s", tenant.Spec.TenantID, st.APIConnectorID)
	if len(st.UserFlows) > 0 {
		msg += fmt.Sprintf(", attached to %s at %s", strings.Join(st.UserFlows, ", "), conn.Spec.Step.Graph().UserFlowProperty)
	}
	return msg + "."
}

// entraKnown is a copy of the status.entra this process last computed for the connector.
func (r *Reconciler) entraKnown(conn *apiv1.APIConnector) *apiv1.EntraStatus {
	r.entraMu.Lock()
	defer r.entraMu.Unlock()
	return r.entraStatus[conn.UID].DeepCopy()
}

// entraRemember records the connector's status.entra (nil: forget it).
func (r *Reconciler) entraRemember(conn *apiv1.APIConnector) {
	r.entraMu.Lock()
	defer r.entraMu.Unlock()
	if conn.Status.Entra == nil {
		delete(r.entraStatus, conn.UID)
		return
	}
	if r.entraStatus == nil {
		r.entraStatus = map[types.UID]*apiv1.EntraStatus{}
	}
	r.entraStatus[conn.UID] = conn.Status.Entra.DeepCopy()
}

// endpointServed says whether the connector's endpoint answers as specified: every detail
// condition is True, so Entra is never pointed at an endpoint that does not work yet.
func endpointServed(conn *apiv1.APIConnector) (string, bool) {
	if len(conn.Status.Endpoints) == 0 {
		return "no endpoint yet", false
	}
	for _, detail := range []string{ConditionRulesValid, ConditionDeploymentAvailable, ConditionCertificateReady, ConditionRouteReady} {
		if cond := meta.FindStatusCondition(conn.Status.Conditions, detail); cond != nil && cond.Status != metav1.ConditionTrue {
			return cond.Message, false
		}
	}
	if !strings.HasPrefix(conn.Status.Endpoints[0], "https://") {
		return "the endpoint is not served over HTTPS", false
	}
	return "", true
}

// readyTenant reads the connector's EntraTenant and its Graph client. ok is false, with the
// condition and any problem recorded, when the tenant is missing or not Ready yet (its watch
// brings the connector back).
func (r *Reconciler) readyTenant(ctx context.Context, s *scope, name string) (*apiv1.EntraTenant, *graph.Client, bool, error) {
	conn := s.conn
	tenant := &apiv1.EntraTenant{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, tenant)
	if apierrors.IsNotFound(err) {
		msg := fmt.Sprintf("EntraTenant %q not found in namespace %s", name, conn.Namespace)
		s.warnStalled(ReasonTenantNotReady, msg)
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonTenantNotReady, msg)
		return nil, nil, false, nil
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("read EntraTenant %q: %w", name, err)
	}
	ready := meta.FindStatusCondition(tenant.Status.Conditions, ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || tenant.Status.ObservedGeneration != tenant.Generation {
		msg := fmt.Sprintf("EntraTenant %q is not ready", name)
		if ready != nil && ready.Message != "" {
			msg += ": " + ready.Message
		}
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonTenantNotReady, msg)
		return nil, nil, false, nil
	}
	gc, problem, err := r.entraClient(ctx, tenant)
	if err != nil {
		return nil, nil, false, err
	}
	if problem != "" {
		// The tenant's own reconcile reports it too; it will turn not Ready.
		msg := fmt.Sprintf("EntraTenant %q: %s", name, problem)
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonTenantNotReady, msg)
		return nil, nil, false, nil
	}
	return tenant, gc, true, nil
}

// entraFailed records a Graph failure: throttling waits for Retry-After, an object not visible yet
// is looked at again shortly, other transient failures are retried with backoff (returned), and
// the rest (a missing permission, a refused request) are a problem, tried again every minute
// since their fix (an admin consent) happens outside the cluster.
func (r *Reconciler) entraFailed(s *scope, err error) error {
	conn := s.conn
	if errors.Is(err, errNotVisibleYet) {
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonProgressing, "Waiting for Microsoft Graph to show the objects just created.")
		s.recheckWithin(entraNotVisibleRecheck)
		return nil
	}
	if d, ok := graph.RetryAfter(err); ok {
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonThrottled,
			fmt.Sprintf("Microsoft Graph is throttling the operator; trying again in %s.", d.Round(time.Second)))
		s.recheckWithin(d)
		return nil
	}
	msg := "Microsoft Graph: " + err.Error()
	setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonGraphError, msg)
	if graph.IsTransient(err) {
		return err
	}
	s.warnStalled(ReasonGraphError, msg)
	s.recheckWithin(entraPermanentRecheck)
	return nil
}

// entraDisplayName is the name shown in the Entra admin center.
func entraDisplayName(conn *apiv1.APIConnector) string {
	if n := conn.Spec.Entra.DisplayName; n != "" {
		return n
	}
	return conn.Namespace + "/" + conn.Name
}

// recentlyCreated says whether a 404 for an object created at t may be Graph's replication lag.
func (r *Reconciler) recentlyCreated(t *metav1.Time) bool {
	window := r.Entra.ConsistencyWindow
	if window <= 0 {
		window = defaultConsistencyWindow
	}
	return t != nil && time.Since(t.Time) < window
}

const rotatingMessage = "The Basic credential changed: waiting for every runtime pod to accept both the one Entra has and the new one before Entra is switched to the new one."

// entraBasicRotating says whether the connector's Basic credential differs from the one Entra
// holds (recorded in the operator's Secret).
func entraBasicRotating(conn *apiv1.APIConnector, in inputs) bool {
	b := conn.Spec.Authentication.Basic
	if b == nil {
		return false
	}
	registered := basicFrom(in.entraBasic)
	current := basicFrom(trimmed(in.secrets[b.SecretRef.Name]))
	return registered != nil && current != nil && *registered != *current
}

// trimmed reads credential files as the runtime does (one trailing newline ignored).
func trimmed(data map[string][]byte) map[string][]byte {
	return map[string][]byte{"username": secretfile.Trim(data["username"]), "password": secretfile.Trim(data["password"])}
}

// registerAPIConnector keeps a legacy step's identityApiConnector and its user flow attachments
// as specified. done is false when a problem or a wait was recorded instead.
func (r *Reconciler) registerAPIConnector(ctx context.Context, s *scope, gc *graph.Client, st *apiv1.EntraStatus, in inputs) (done bool, err error) {
	conn := s.conn
	desired := graph.APIConnector{DisplayName: entraDisplayName(conn), TargetURL: conn.Status.Endpoints[0]}
	var (
		newBasic   *graph.BasicAuthentication // to be recorded as what Entra holds, after Entra has it
		thumbprint string
	)
	switch {
	case conn.Spec.Authentication.Basic != nil:
		current := basicFrom(trimmed(in.secrets[conn.Spec.Authentication.Basic.SecretRef.Name]))
		registered := basicFrom(in.entraBasic)
		if registered != nil && *registered == *current && st.APIConnectorID != "" {
			desired.Basic = registered
		} else {
			// First registration, or a rotation: every runtime pod runs the configuration of
			// this reconcile (endpointServed), which accepts both the registered credential and
			// the connector's own, so Entra can be switched now.
			desired.Basic, newBasic = current, current
		}
	case conn.Spec.Authentication.ClientCertificate != nil:
		cert, ok, err := r.entraClientCertificate(ctx, s)
		if err != nil || !ok {
			return false, err
		}
		desired.Certificate = cert.pfx
		thumbprint = cert.thumbprint
	}

	if st.APIConnectorID != "" {
		got, err := gc.GetAPIConnector(ctx, st.APIConnectorID)
		switch {
		case graph.IsNotFound(err) && r.recentlyCreated(st.CreatedAt):
			return false, errNotVisibleYet
		case graph.IsNotFound(err):
			// Deleted outside the cluster: create it again (user flows lost it too).
			log.FromContext(ctx).Info("API connector deleted in Entra; creating it again", "id", st.APIConnectorID)
			st.APIConnectorID, st.UserFlows, st.CertificateThumbprint = "", nil, ""
		case err != nil:
			return false, fmt.Errorf("read API connector %s: %w", st.APIConnectorID, err)
		default:
			if err := r.updateAPIConnector(ctx, gc, st, got, desired, newBasic != nil, thumbprint); err != nil {
				return false, err
			}
		}
	}
	if st.APIConnectorID == "" {
		created, err := gc.CreateAPIConnector(ctx, desired)
		if err != nil {
			return false, fmt.Errorf("create API connector: %w", err)
		}
		now := metav1.Now()
		st.APIConnectorID, st.CreatedAt, st.CertificateThumbprint = created.ID, &now, thumbprint
		r.Recorder.Eventf(conn, nil, corev1.EventTypeNormal, "EntraRegistered", "Register", "Created API connector %s in tenant %s", created.ID, st.TenantID)
	}
	if newBasic != nil {
		if ok, err := r.recordEntraBasic(ctx, s, newBasic); err != nil || !ok {
			return false, err
		}
	}
	if err := r.attachUserFlows(ctx, gc, conn, st); err != nil {
		return false, err
	}
	return true, nil
}

// updateAPIConnector brings an existing API connector back to what is desired: what Graph shows
// (name, URL, username, certificates) is compared; the password, which Graph never shows, is
// sent with any update and whenever it changed.
func (r *Reconciler) updateAPIConnector(ctx context.Context, gc *graph.Client, st *apiv1.EntraStatus, got, desired graph.APIConnector, passwordChanged bool, thumbprint string) error {
	if desired.Certificate != nil && !slices.ContainsFunc(got.CertificateThumbprints, func(t string) bool { return strings.EqualFold(t, thumbprint) }) {
		if err := gc.UploadClientCertificate(ctx, st.APIConnectorID, *desired.Certificate); err != nil {
			return fmt.Errorf("upload the client certificate to API connector %s: %w", st.APIConnectorID, err)
		}
		st.CertificateThumbprint = thumbprint
	}
	drift := got.DisplayName != desired.DisplayName || got.TargetURL != desired.TargetURL
	if desired.Basic != nil {
		drift = drift || got.Basic == nil || got.Basic.Username != desired.Basic.Username || passwordChanged
	}
	if !drift {
		return nil
	}
	patch := desired
	patch.Certificate = nil // certificates are added by upload, and the newest valid one is used
	if err := gc.UpdateAPIConnector(ctx, st.APIConnectorID, patch); err != nil {
		return fmt.Errorf("update API connector %s: %w", st.APIConnectorID, err)
	}
	return nil
}

// attachUserFlows attaches the API connector to every listed user flow at the step and detaches
// it from flows no longer listed (only where it is still the one attached).
func (r *Reconciler) attachUserFlows(ctx context.Context, gc *graph.Client, conn *apiv1.APIConnector, st *apiv1.EntraStatus) error {
	kind, prop := userFlowKind(conn.Spec.Entra.UserFlowKind), conn.Spec.Step.Graph().UserFlowProperty
	want := slices.Sorted(slices.Values(conn.Spec.Entra.UserFlows))
	var errs []error // one flow failing does not keep the others from being attached
	for _, flow := range want {
		attached, err := gc.UserFlowAPIConnector(ctx, kind, flow, prop)
		if err != nil {
			errs = append(errs, fmt.Errorf("read user flow %s: %w", flow, err))
			continue
		}
		if attached != st.APIConnectorID {
			if err := gc.SetUserFlowAPIConnector(ctx, kind, flow, prop, st.APIConnectorID); err != nil {
				errs = append(errs, fmt.Errorf("attach API connector %s to user flow %s at %s: %w", st.APIConnectorID, flow, prop, err))
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, flow := range st.UserFlows {
		if slices.Contains(want, flow) {
			continue
		}
		if err := detachUserFlow(ctx, gc, kind, flow, prop, st.APIConnectorID); err != nil {
			return err
		}
	}
	st.UserFlows, st.UserFlowKind = want, conn.Spec.Entra.UserFlowKind
	return nil
}

func detachUserFlow(ctx context.Context, gc *graph.Client, kind graph.UserFlowKind, flow, prop, id string) error {
	attached, err := gc.UserFlowAPIConnector(ctx, kind, flow, prop)
	if graph.IsNotFound(err) {
		return nil // the user flow is gone
	}
	if err != nil {
		return fmt.Errorf("read user flow %s: %w", flow, err)
	}
	if attached != id {
		return nil // someone attached another connector: not ours to remove
	}
	if err := gc.ClearUserFlowAPIConnector(ctx, kind, flow, prop); err != nil {
		return fmt.Errorf("detach API connector %s from user flow %s: %w", id, flow, err)
	}
	return nil
}

func userFlowKind(k apiv1.EntraUserFlowKind) graph.UserFlowKind {
	if k == apiv1.EntraUserFlowB2C {
		return graph.UserFlowB2C
	}
	return graph.UserFlowB2X
}

func basicFrom(data map[string][]byte) *graph.BasicAuthentication {
	if len(data["username"]) == 0 || len(data["password"]) == 0 {
		return nil
	}
	return &graph.BasicAuthentication{Username: string(data["username"]), Password: string(data["password"])}
}

// recordEntraBasic writes the Basic credential Entra now holds into the operator's Secret, which
// the runtime also accepts; it never takes over a Secret it does not control.
func (r *Reconciler) recordEntraBasic(ctx context.Context, s *scope, b *graph.BasicAuthentication) (bool, error) {
	conn := s.conn
	name := children.EntraBasicSecretName(conn)
	existing := &metav1.PartialObjectMetadata{}
	existing.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, existing)
	if err == nil && !metav1.IsControlledBy(existing, conn) {
		s.warnStalled(ReasonChildConflict, fmt.Sprintf("Secret %q exists and is not controlled by this connector; the operator does not take it over: delete or rename it", name))
		return false, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("read Secret %q: %w", name, err)
	}
	ac := children.MakeEntraBasicSecret(conn, []byte(b.Username), []byte(b.Password))
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(children.FieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("apply Secret %q: %w", name, err)
	}
	return true, nil
}

// entraCertificate is the client certificate Entra presents, as Graph takes it.
type entraCertificate struct {
	pfx        *graph.PKCS12Certificate
	thumbprint string
}

// entraClientCertificate reads spec.entra.clientCertificate and encodes it as PKCS#12 with a
// random password (Graph requires one). ok is false with a problem recorded when it is unusable.
func (r *Reconciler) entraClientCertificate(ctx context.Context, s *scope) (entraCertificate, bool, error) {
	conn := s.conn
	name := conn.Spec.Entra.ClientCertificate.Name
	problem := func(reason, msg string) (entraCertificate, bool, error) {
		s.warnStalled(reason, msg)
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, reason, msg)
		return entraCertificate{}, false, nil
	}
	sec := &corev1.Secret{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, sec)
	if apierrors.IsNotFound(err) {
		return problem(ReasonSecretNotFound, fmt.Sprintf("entra.clientCertificate: Secret %q not found", name))
	}
	if err != nil {
		return entraCertificate{}, false, fmt.Errorf("read Secret %q: %w", name, err)
	}
	pair, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return problem(ReasonSecretInvalid, fmt.Sprintf("entra.clientCertificate: Secret %q: tls.crt and tls.key are not a certificate and its key: %v", name, err))
	}
	password := make([]byte, 24)
	if _, err := rand.Read(password); err != nil {
		return entraCertificate{}, false, err
	}
	pw := hex.EncodeToString(password)
	var cas []*x509.Certificate
	for _, der := range pair.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return problem(ReasonSecretInvalid, fmt.Sprintf("entra.clientCertificate: Secret %q: tls.crt: %v", name, err))
		}
		cas = append(cas, c)
	}
	pfx, err := pkcs12.Modern.Encode(pair.PrivateKey, pair.Leaf, cas, pw)
	if err != nil {
		return problem(ReasonSecretInvalid, fmt.Sprintf("entra.clientCertificate: Secret %q: cannot encode it as PKCS#12: %v", name, err))
	}
	sum := sha1.Sum(pair.Leaf.Raw) //nolint:gosec // the thumbprint Entra reports
	return entraCertificate{
		pfx:        &graph.PKCS12Certificate{PKCS12: pfx, Password: pw},
		thumbprint: strings.ToUpper(hex.EncodeToString(sum[:])),
	}, true, nil
}

// registerExtension keeps an extension step's customAuthenticationExtension and event listener as
// specified, after checking the app registration's identifier URI and with Graph's own
// validation of the authentication configuration.
func (r *Reconciler) registerExtension(ctx context.Context, s *scope, gc *graph.Client, st *apiv1.EntraStatus) (done bool, err error) {
	conn := s.conn
	stalled := func(reason, msg string) (bool, error) {
		s.warnStalled(reason, msg)
		setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, reason, msg)
		s.recheckWithin(entraPermanentRecheck)
		return false, nil
	}
	endpoint := conn.Status.Endpoints[0]
	u, err := url.Parse(endpoint)
	if err != nil {
		return false, fmt.Errorf("parse endpoint %q: %w", endpoint, err)
	}
	appID := conn.Spec.Authentication.Bearer.Audience
	resourceID := "api://" + u.Hostname() + "/" + appID
	app, err := gc.ApplicationByAppID(ctx, appID)
	if graph.IsNotFound(err) {
		return stalled(ReasonIdentifierURIMismatch, fmt.Sprintf("no app registration with application ID %s (authentication.bearer.audience) in tenant %s", appID, st.TenantID))
	}
	if err != nil {
		return false, fmt.Errorf("read app registration %s: %w", appID, err)
	}
	if !slices.Contains(app.IdentifierURIs, resourceID) {
		found := "none"
		if len(app.IdentifierURIs) > 0 {
			found = strings.Join(app.IdentifierURIs, ", ")
		}
		return stalled(ReasonIdentifierURIMismatch, fmt.Sprintf(
			"the app registration %s (authentication.bearer.audience) has no identifier URI %s (it has %s): Entra only calls an extension whose endpoint host matches it; add it to the app registration's Application ID URIs",
			appID, resourceID, found))
	}

	g := conn.Spec.Step.Graph()
	desired := graph.CustomExtension{
		ODataType:           g.Extension,
		DisplayName:         entraDisplayName(conn),
		Description:         fmt.Sprintf("Managed by apiconnector-operator for APIConnector %s/%s; edits are undone.", conn.Namespace, conn.Name),
		TargetURL:           endpoint,
		ResourceID:          resourceID,
		TimeoutMilliseconds: int32(entraTimeout(conn).Milliseconds()),
		MaximumRetries:      entraRetries(conn),
	}
	if conn.Spec.Step == apiv1.StepOnTokenIssuanceStart {
		for name := range conn.Spec.Claims {
			desired.ClaimsForToken = append(desired.ClaimsForToken, name)
		}
		slices.Sort(desired.ClaimsForToken)
	}

	if st.CustomExtensionID != "" {
		got, err := gc.GetCustomExtension(ctx, st.CustomExtensionID)
		switch {
		case graph.IsNotFound(err) && r.recentlyCreated(st.CreatedAt):
			return false, errNotVisibleYet
		case graph.IsNotFound(err):
			log.FromContext(ctx).Info("custom authentication extension deleted in Entra; creating it again", "id", st.CustomExtensionID)
			st.CustomExtensionID = ""
		case err != nil:
			return false, fmt.Errorf("read custom authentication extension %s: %w", st.CustomExtensionID, err)
		case got.ODataType != desired.ODataType:
			// The step changed: an extension's type cannot be changed, so replace it.
			if err := deleteExtension(ctx, gc, st); err != nil {
				return false, err
			}
		case !sameExtension(got, desired):
			if err := gc.UpdateCustomExtension(ctx, st.CustomExtensionID, desired); err != nil {
				return false, fmt.Errorf("update custom authentication extension %s: %w", st.CustomExtensionID, err)
			}
		}
	}
	if st.CustomExtensionID == "" {
		created, err := gc.CreateCustomExtension(ctx, desired)
		if err != nil {
			return false, fmt.Errorf("create custom authentication extension: %w", err)
		}
		now := metav1.Now()
		st.CustomExtensionID, st.CreatedAt = created.ID, &now
		r.Recorder.Eventf(conn, nil, corev1.EventTypeNormal, "EntraRegistered", "Register", "Created custom authentication extension %s in tenant %s", created.ID, st.TenantID)
	}

	v, err := gc.ValidateAuthenticationConfiguration(ctx, st.CustomExtensionID)
	if graph.IsNotFound(err) && r.recentlyCreated(st.CreatedAt) {
		return false, errNotVisibleYet
	}
	if err != nil {
		return false, fmt.Errorf("validate the authentication configuration of %s: %w", st.CustomExtensionID, err)
	}
	if len(v.Errors) > 0 {
		return stalled(ReasonValidationFailed, "Entra's validateAuthenticationConfiguration: "+findings(v.Errors))
	}
	if len(v.Warnings) > 0 {
		s.entraWarnings = "Entra's validateAuthenticationConfiguration warns: " + findings(v.Warnings)
	}

	if err := r.syncListener(ctx, gc, conn, st, g); err != nil {
		return false, err
	}
	return true, nil
}

func findings(errs []graph.GenericError) string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Code + ": " + e.Message
	}
	return strings.Join(out, "; ")
}

func sameExtension(got, want graph.CustomExtension) bool {
	return got.DisplayName == want.DisplayName && got.Description == want.Description &&
		got.TargetURL == want.TargetURL && got.ResourceID == want.ResourceID &&
		got.TimeoutMilliseconds == want.TimeoutMilliseconds && got.MaximumRetries == want.MaximumRetries &&
		slices.Equal(slices.Sorted(slices.Values(got.ClaimsForToken)), want.ClaimsForToken)
}

// syncListener keeps the event listener calling the extension for spec.entra.applications, and
// removes it when none are listed.
func (r *Reconciler) syncListener(ctx context.Context, gc *graph.Client, conn *apiv1.APIConnector, st *apiv1.EntraStatus, g apiv1.GraphRegistration) error {
	apps := slices.Sorted(slices.Values(conn.Spec.Entra.Applications))
	if len(apps) == 0 {
		if st.EventListenerID != "" {
			if err := gc.DeleteEventListener(ctx, st.EventListenerID); err != nil {
				return fmt.Errorf("delete event listener %s: %w", st.EventListenerID, err)
			}
			st.EventListenerID = ""
		}
		return nil
	}
	desired := graph.EventListener{ODataType: g.Listener, HandlerODataType: g.Handler, ExtensionID: st.CustomExtensionID, AppIDs: apps}
	if st.EventListenerID != "" {
		got, err := gc.GetEventListener(ctx, st.EventListenerID)
		switch {
		case graph.IsNotFound(err) && r.recentlyCreated(st.CreatedAt):
			return errNotVisibleYet
		case graph.IsNotFound(err):
			st.EventListenerID = ""
		case err != nil:
			return fmt.Errorf("read event listener %s: %w", st.EventListenerID, err)
		case got.ODataType != desired.ODataType:
			if err := gc.DeleteEventListener(ctx, st.EventListenerID); err != nil {
				return fmt.Errorf("delete event listener %s: %w", st.EventListenerID, err)
			}
			st.EventListenerID = ""
		case got.HandlerODataType != desired.HandlerODataType || got.ExtensionID != desired.ExtensionID ||
			!slices.Equal(slices.Sorted(slices.Values(got.AppIDs)), apps):
			if err := gc.UpdateEventListener(ctx, st.EventListenerID, desired); err != nil {
				return fmt.Errorf("update event listener %s: %w", st.EventListenerID, err)
			}
		}
	}
	if st.EventListenerID == "" {
		created, err := gc.CreateEventListener(ctx, desired)
		if err != nil {
			return fmt.Errorf("create event listener: %w", err)
		}
		st.EventListenerID = created.ID
		if st.CreatedAt == nil || !r.recentlyCreated(st.CreatedAt) {
			now := metav1.Now()
			st.CreatedAt = &now
		}
	}
	return nil
}

// entraTimeout is how long Entra waits for the extension: spec.entra.timeout, or the connector's
// budget, which is never more than Entra can be told to wait.
func entraTimeout(conn *apiv1.APIConnector) time.Duration {
	if t := conn.Spec.Entra.Timeout; t != nil {
		return t.Duration
	}
	var timeout time.Duration
	if conn.Spec.Timeout != nil {
		timeout = conn.Spec.Timeout.Duration
	}
	return max(conn.Spec.Step.Budget(timeout), apiv1.MinExtensionEntraWait).Round(time.Millisecond)
}

// entraRetries is Entra's maximumRetries for the extension: spec.entra.maximumRetries, or one.
func entraRetries(conn *apiv1.APIConnector) int32 {
	if n := conn.Spec.Entra.MaximumRetries; n != nil {
		return *n
	}
	return 1
}

// unregisterFromEntra removes what the operator created in Entra for the connector: user flow
// attachments, then the API connector; or the event listener, then the extension.
func (r *Reconciler) unregisterFromEntra(ctx context.Context, gc *graph.Client, conn *apiv1.APIConnector) error {
	st := conn.Status.Entra
	if st == nil {
		return nil
	}
	if err := deleteAPIConnector(ctx, gc, st); err != nil {
		return err
	}
	return deleteExtension(ctx, gc, st)
}

// deleteAPIConnector detaches the API connector from its user flows, at the step it was
// registered for, and deletes it.
func deleteAPIConnector(ctx context.Context, gc *graph.Client, st *apiv1.EntraStatus) error {
	if st.APIConnectorID == "" {
		return nil
	}
	prop := st.Step.Graph().UserFlowProperty
	for _, flow := range st.UserFlows {
		if err := detachUserFlow(ctx, gc, userFlowKind(st.UserFlowKind), flow, prop, st.APIConnectorID); err != nil {
			return err
		}
	}
	st.UserFlows = nil
	if err := gc.DeleteAPIConnector(ctx, st.APIConnectorID); err != nil {
		return fmt.Errorf("delete API connector %s: %w", st.APIConnectorID, err)
	}
	st.APIConnectorID, st.CertificateThumbprint = "", ""
	return nil
}

func deleteExtension(ctx context.Context, gc *graph.Client, st *apiv1.EntraStatus) error {
	if st.EventListenerID != "" {
		if err := gc.DeleteEventListener(ctx, st.EventListenerID); err != nil {
			return fmt.Errorf("delete event listener %s: %w", st.EventListenerID, err)
		}
		st.EventListenerID = ""
	}
	if st.CustomExtensionID != "" {
		if err := gc.DeleteCustomExtension(ctx, st.CustomExtensionID); err != nil {
			return fmt.Errorf("delete custom authentication extension %s: %w", st.CustomExtensionID, err)
		}
		st.CustomExtensionID = ""
	}
	return nil
}

// syncEntraFinalizer adds the finalizer before anything is created in Entra with deletionPolicy
// Delete, and drops it with Orphan (what was created then stays when the connector goes).
func (r *Reconciler) syncEntraFinalizer(ctx context.Context, conn *apiv1.APIConnector) error {
	want := conn.Spec.Entra != nil && conn.Spec.Entra.DeletionPolicy != apiv1.EntraDeletionOrphan
	if want == controllerutil.ContainsFinalizer(conn, EntraFinalizer) {
		return nil
	}
	if !want && conn.Spec.Entra == nil && conn.Status.Entra != nil {
		return nil // the section was removed: finishEntra deletes first, then drops it
	}
	return r.patchFinalizers(ctx, conn, func(o client.Object) bool {
		if want {
			return controllerutil.AddFinalizer(o, EntraFinalizer)
		}
		return controllerutil.RemoveFinalizer(o, EntraFinalizer)
	})
}

// finishEntra handles a connector whose registration ends: the connector is being deleted, or
// spec.entra was removed. With the finalizer (deletionPolicy Delete) the objects are deleted
// from Entra first; status.entra is cleared either way.
func (r *Reconciler) finishEntra(ctx context.Context, s *scope) error {
	conn := s.conn
	if known := r.entraKnown(conn); known != nil {
		conn.Status.Entra = known
	}
	defer r.entraRemember(conn)
	orphan := conn.Spec.Entra != nil && conn.Spec.Entra.DeletionPolicy == apiv1.EntraDeletionOrphan
	if controllerutil.ContainsFinalizer(conn, EntraFinalizer) && conn.Status.Entra != nil && !orphan {
		tenantName := conn.Status.Entra.Tenant
		if tenantName == "" && conn.Spec.Entra != nil {
			tenantName = conn.Spec.Entra.TenantRef.Name
		}
		const hint = "; fix it, or set spec.entra.deletionPolicy: Orphan to leave the registration in Entra"
		_, gc, ok, err := r.readyTenant(ctx, s, tenantName)
		if err != nil {
			return err
		}
		if !ok {
			// The tenant's Secret or ServiceAccount may be gone already (a namespace being
			// deleted): the client that last signed in may still hold a valid token.
			gc = r.cachedEntraClient(types.NamespacedName{Namespace: conn.Namespace, Name: tenantName})
		}
		if gc == nil {
			msg := fmt.Sprintf("cannot delete the registration from Entra: EntraTenant %q is not usable", tenantName)
			setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonDeleting, msg+hint)
			s.recheckWithin(entraPermanentRecheck)
			return nil
		}
		if err := r.unregisterFromEntra(ctx, gc, conn); err != nil {
			retry := r.entraFailed(s, err) // throttling and backoff as for any Graph failure
			setCondition(conn, ConditionEntraRegistered, metav1.ConditionFalse, ReasonDeleting,
				"cannot delete the registration from Entra: Microsoft Graph: "+err.Error()+hint)
			return retry
		}
		r.Recorder.Eventf(conn, nil, corev1.EventTypeNormal, "EntraUnregistered", "Unregister", "Deleted the registration from tenant %s", conn.Status.Entra.TenantID)
	}
	conn.Status.Entra = nil
	meta.RemoveStatusCondition(&conn.Status.Conditions, ConditionEntraRegistered)
	return r.patchFinalizers(ctx, conn, func(o client.Object) bool {
		return controllerutil.RemoveFinalizer(o, EntraFinalizer)
	})
}

// entraSecretNames are the Secrets the registration reads besides the connector's own: the
// client certificate Entra presents, and the Basic credential Entra holds.
func entraSecretNames(c *apiv1.APIConnector) []string {
	e := c.Spec.Entra
	if e == nil {
		return nil
	}
	var out []string
	if e.ClientCertificate != nil {
		out = append(out, e.ClientCertificate.Name)
	}
	if c.Spec.Authentication.Basic != nil {
		out = append(out, children.EntraBasicSecretName(c))
	}
	return out
}

// patchFinalizers writes conn's finalizers, changed by edit, leaving the rest of conn (its status
// being computed) as it is.
func (r *Reconciler) patchFinalizers(ctx context.Context, conn *apiv1.APIConnector, edit func(client.Object) bool) error {
	obj := conn.DeepCopy()
	base := obj.DeepCopy()
	if !edit(obj) {
		return nil
	}
	if err := r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("update finalizers: %w", err)
	}
	conn.Finalizers, conn.ResourceVersion = obj.Finalizers, obj.ResourceVersion
	return nil
}
