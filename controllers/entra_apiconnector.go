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
	"slices"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/internal/graph"
	"github.com/apiconnector/operator/runtime/secretfile"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"software.sslmate.com/src/go-pkcs12"
)

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
		// One this connector created before its status could record it (the operator stopped in
		// between) has its display name and endpoint: adopt it rather than create a second.
		all, err := gc.ListAPIConnectors(ctx)
		if err != nil {
			return false, fmt.Errorf("list API connectors: %w", err)
		}
		if i := slices.IndexFunc(all, func(a graph.APIConnector) bool {
			return a.DisplayName == desired.DisplayName && a.TargetURL == desired.TargetURL
		}); i >= 0 {
			st.APIConnectorID = all[i].ID
			log.FromContext(ctx).Info("adopting the API connector with this connector's name and endpoint", "id", st.APIConnectorID)
			if err := r.updateAPIConnector(ctx, gc, st, all[i], desired, true, thumbprint); err != nil {
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
