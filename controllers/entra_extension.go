package controllers

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/internal/graph"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

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
		// Adopt one this connector created before its status could record it: its type,
		// endpoint and description (which names the connector) match.
		all, err := gc.ListCustomExtensions(ctx)
		if err != nil {
			return false, fmt.Errorf("list custom authentication extensions: %w", err)
		}
		if i := slices.IndexFunc(all, func(e graph.CustomExtension) bool {
			return e.ODataType == desired.ODataType && e.TargetURL == desired.TargetURL && e.Description == desired.Description
		}); i >= 0 {
			st.CustomExtensionID = all[i].ID
			log.FromContext(ctx).Info("adopting the custom authentication extension made for this connector", "id", st.CustomExtensionID)
			if !sameExtension(all[i], desired) {
				if err := gc.UpdateCustomExtension(ctx, st.CustomExtensionID, desired); err != nil {
					return false, fmt.Errorf("update custom authentication extension %s: %w", st.CustomExtensionID, err)
				}
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
		// Adopt the listener of this extension created before the status could record it.
		all, err := gc.ListEventListeners(ctx)
		if err != nil {
			return fmt.Errorf("list event listeners: %w", err)
		}
		if i := slices.IndexFunc(all, func(l graph.EventListener) bool {
			return l.ODataType == desired.ODataType && l.ExtensionID == desired.ExtensionID
		}); i >= 0 {
			st.EventListenerID = all[i].ID
			if !slices.Equal(slices.Sorted(slices.Values(all[i].AppIDs)), apps) {
				if err := gc.UpdateEventListener(ctx, st.EventListenerID, desired); err != nil {
					return fmt.Errorf("update event listener %s: %w", st.EventListenerID, err)
				}
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
