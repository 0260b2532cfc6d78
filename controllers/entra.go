package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/internal/graph"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Registration in Entra (spec.entra, docs/entra-registration.md): this file holds the flow,
// the tenant, Graph failures and deletion; entra_apiconnector.go the legacy steps' API connectors
// and user flows; entra_extension.go the extension steps' custom authentication extensions and
// event listeners; entratenant_controller.go the EntraTenant and its Graph clients.

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
		switch {
		case entraBasicRotating(conn, in):
			notYet(ReasonRotatingCredential, rotatingMessage)
		case conn.Status.Entra != nil && conditionIs(conn, ConditionEntraRegistered, metav1.ConditionTrue):
			// Registered, and the endpoint is rolling out a change: Entra keeps calling it; the
			// registration is looked at again once it is served.
		default:
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
// step's property (or of the other kind of user flow), or the objects of the other protocol (an
// API connector for an extension step, an extension and its listener for a legacy step). An
// extension of another event type is replaced by registerExtension.
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
	return patchFinalizers(ctx, r.Client, conn, func(o client.Object) bool {
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
	return patchFinalizers(ctx, r.Client, conn, func(o client.Object) bool {
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

// patchFinalizers writes obj's finalizers, changed by edit, leaving the rest of obj (its status
// being computed) as it is. A NotFound is returned (the object may just have gone).
func patchFinalizers[T client.Object](ctx context.Context, c client.Client, obj T, edit func(client.Object) bool) error {
	changed := obj.DeepCopyObject().(T)
	if !edit(changed) {
		return nil
	}
	if err := c.Patch(ctx, changed, client.MergeFromWithOptions(obj, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("update finalizers: %w", err)
	}
	obj.SetFinalizers(changed.GetFinalizers())
	obj.SetResourceVersion(changed.GetResourceVersion())
	return nil
}
