package controllers

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/internal/graph"
	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// The tests below run the real operator, azidentity and Graph client against the stand-in
// (internal/graph/graphtest), which implements the documented requests and responses.

// newEntraTenant makes a client-secret EntraTenant and registers its app with the stand-in.
func newEntraTenant(t *testing.T, ns, name string) *apiv1.EntraTenant {
	t.Helper()
	clientID, secret := uuid.NewString(), "s3cret-"+uuid.NewString()
	entraStandIn.AddApp(clientID, secret)
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-credentials"},
		Data: map[string][]byte{"clientSecret": []byte(secret)}})
	tenant := &apiv1.EntraTenant{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: apiv1.EntraTenantSpec{TenantID: entraStandIn.TenantID, ClientID: clientID,
			Credentials: apiv1.EntraCredentials{ClientSecret: &apiv1.SecretKeySelector{Name: name + "-credentials", Key: "clientSecret"}}},
	}
	create(t, tenant)
	return tenant
}

func waitTenant(t *testing.T, key types.NamespacedName, typ string, st metav1.ConditionStatus, reason string) *apiv1.EntraTenant {
	t.Helper()
	var tenant *apiv1.EntraTenant
	eventually(t, timeout, func() error {
		tenant = &apiv1.EntraTenant{}
		if err := get(t, key, tenant); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(tenant.Status.Conditions, typ)
		if cond == nil || cond.Status != st || cond.Reason != reason || tenant.Status.ObservedGeneration != tenant.Generation {
			return fmt.Errorf("%s = %+v, want %s/%s", typ, cond, st, reason)
		}
		return nil
	})
	return tenant
}

// apiConnectorIn returns the stand-in's API connector with the ID, or nil.
func apiConnectorIn(id string) *graph.APIConnector {
	for _, c := range entraStandIn.APIConnectors() {
		if c.ID == id {
			return &c
		}
	}
	return nil
}

func extensionIn(id string) *graph.CustomExtension {
	for _, e := range entraStandIn.CustomExtensions() {
		if e.ID == id {
			return &e
		}
	}
	return nil
}

func listenerIn(id string) *graph.EventListener {
	for _, l := range entraStandIn.EventListeners() {
		if l.ID == id {
			return &l
		}
	}
	return nil
}

// poke makes the operator reconcile the connector now, as its resync would.
func poke(t *testing.T, key types.NamespacedName) {
	t.Helper()
	update(t, key, func(c *apiv1.APIConnector) {
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		c.Annotations["test/poke"] = time.Now().Format(time.RFC3339Nano)
	})
}

func TestEntraTenantSignIn(t *testing.T) {
	ns := newNamespace(t)
	good := newEntraTenant(t, ns, "good")
	waitTenant(t, client.ObjectKeyFromObject(good), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)

	// A wrong secret: Entra's own refusal, and nothing of the secret, in the status.
	wrong := newEntraTenant(t, ns, "wrong")
	entraStandIn.AddApp(wrong.Spec.ClientID, "another-secret")
	setSecretData := func(name string, data map[string][]byte) {
		eventually(t, timeout, func() error {
			s := &corev1.Secret{}
			if err := get(t, types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
				return err
			}
			s.Data = data
			return k8s.Update(context.Background(), s)
		})
	}
	tw := waitTenant(t, client.ObjectKeyFromObject(wrong), ConditionStalled, metav1.ConditionTrue, ReasonAuthenticationFailed)
	msg := meta.FindStatusCondition(tw.Status.Conditions, ConditionReady).Message
	if !strings.Contains(msg, "AADSTS7000215") {
		t.Errorf("the Ready message does not carry Entra's error: %s", msg)
	}
	// Fixing the Secret is watched: the tenant signs in without any edit to it.
	setSecretData("wrong-credentials", map[string][]byte{"clientSecret": []byte("another-secret")})
	waitTenant(t, client.ObjectKeyFromObject(wrong), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)

	missing := &apiv1.EntraTenant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "missing"},
		Spec: apiv1.EntraTenantSpec{TenantID: entraStandIn.TenantID, ClientID: uuid.NewString(),
			Credentials: apiv1.EntraCredentials{ClientSecret: &apiv1.SecretKeySelector{Name: "nowhere", Key: "k"}}}}
	create(t, missing)
	tm := waitTenant(t, client.ObjectKeyFromObject(missing), ConditionStalled, metav1.ConditionTrue, ReasonCredentialsInvalid)
	if msg := meta.FindStatusCondition(tm.Status.Conditions, ConditionReady).Message; !strings.Contains(msg, `Secret "nowhere" not found`) {
		t.Errorf("Ready message = %s", msg)
	}
}

// TestEntraTenantWorkloadIdentity exchanges a real ServiceAccount token, requested from the API
// server with the TokenRequest API, for an Entra token: the stand-in checks its signature against
// the API server's own keys, its issuer, subject and audience, as a federated credential does.
func TestEntraTenantWorkloadIdentity(t *testing.T) {
	ns := newNamespace(t)
	clientID := uuid.NewString()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra"}}
	create(t, sa)
	if err := entraStandIn.TrustServiceAccount(context.Background(), cfg, clientID, WorkloadIdentityAudience, ns, sa.Name); err != nil {
		t.Fatal(err)
	}

	tenant := &apiv1.EntraTenant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wi"},
		Spec: apiv1.EntraTenantSpec{TenantID: entraStandIn.TenantID, ClientID: clientID,
			Credentials: apiv1.EntraCredentials{WorkloadIdentity: &apiv1.EntraWorkloadIdentity{ServiceAccountName: "entra"}}}}
	create(t, tenant)
	key := client.ObjectKeyFromObject(tenant)
	// Without its owner's consent the ServiceAccount is not used.
	tw := waitTenant(t, key, ConditionStalled, metav1.ConditionTrue, ReasonCredentialsInvalid)
	if msg := meta.FindStatusCondition(tw.Status.Conditions, ConditionReady).Message; !strings.Contains(msg, WorkloadIdentityClientIDAnnotation) {
		t.Errorf("Ready message = %s", msg)
	}
	eventually(t, timeout, func() error {
		if err := get(t, client.ObjectKeyFromObject(sa), sa); err != nil {
			return err
		}
		sa.Annotations = map[string]string{WorkloadIdentityClientIDAnnotation: clientID}
		return k8s.Update(context.Background(), sa)
	})
	// ServiceAccounts are not watched; the tenant is looked at again within a minute. An edit
	// to the tenant is the quick way.
	eventually(t, timeout, func() error {
		if err := get(t, key, tenant); err != nil {
			return err
		}
		tenant.Spec.ResyncInterval = &metav1.Duration{Duration: 5 * time.Minute}
		return k8s.Update(context.Background(), tenant)
	})
	waitTenant(t, key, ConditionReady, metav1.ConditionTrue, ReasonSignedIn)

	// A federated credential for another subject is refused by Entra (the stand-in).
	other := &apiv1.EntraTenant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other"},
		Spec: apiv1.EntraTenantSpec{TenantID: entraStandIn.TenantID, ClientID: uuid.NewString(),
			Credentials: apiv1.EntraCredentials{WorkloadIdentity: &apiv1.EntraWorkloadIdentity{ServiceAccountName: "entra"}}}}
	create(t, other)
	waitTenant(t, client.ObjectKeyFromObject(other), ConditionStalled, metav1.ConditionTrue, ReasonCredentialsInvalid)
}

func TestEntraLegacyConnectorLifecycle(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	flowA, flowB := "B2X_1_"+ns+"_a", "B2X_1_"+ns+"_b"
	entraStandIn.AddUserFlow(graph.UserFlowB2X, flowA)
	entraStandIn.AddUserFlow(graph.UserFlowB2X, flowB)

	secret := basicSecret(ns, "entra-basic", "first-password-0123456789")
	conn := newConnector(ns, "signup")
	conn.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}, UserFlows: []string{flowA}}
	create(t, secret, conn)
	key := client.ObjectKeyFromObject(conn)

	// Nothing is registered before the endpoint is served.
	c := waitCondition(t, key, ConditionEntraRegistered, metav1.ConditionFalse, ReasonWaitingForEndpoint)
	if c.Status.Entra != nil && c.Status.Entra.APIConnectorID != "" {
		t.Fatalf("registered before the endpoint was served: %+v", c.Status.Entra)
	}
	if !slices.Contains(c.Finalizers, EntraFinalizer) {
		t.Errorf("finalizers = %v, want %s before anything is created in Entra", c.Finalizers, EntraFinalizer)
	}
	markDeploymentAvailable(t, key)
	// Registering records the credential Entra holds in a Secret the runtime mounts: a rollout.
	waitRegisteredAndReady(t, key)
	c = connectorOf(t, key)
	st := c.Status.Entra
	got := apiConnectorIn(st.APIConnectorID)
	if got == nil {
		t.Fatalf("the stand-in has no API connector %s", st.APIConnectorID)
	}
	if got.TargetURL != c.Status.Endpoints[0] || got.DisplayName != ns+"/signup" ||
		got.Basic == nil || got.Basic.Username != "entra" || got.Basic.Password != "first-password-0123456789" {
		t.Errorf("Entra holds %+v (basic %+v), want the endpoint %s and the Secret's credential", got, got.Basic, c.Status.Endpoints[0])
	}
	if id := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowA, "postAttributeCollection"); id != st.APIConnectorID {
		t.Errorf("user flow %s has %q at postAttributeCollection, want %s", flowA, id, st.APIConnectorID)
	}
	assertEntraBasic(t, key, "first-password-0123456789")

	// Rotation: Entra is switched only once every pod accepts both credentials.
	secret.Data["password"] = []byte("second-password-0123456789")
	if err := k8s.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, key, ConditionEntraRegistered, metav1.ConditionFalse, ReasonRotatingCredential)
	if p := apiConnectorIn(st.APIConnectorID).Basic.Password; p != "first-password-0123456789" {
		t.Fatalf("Entra was switched to the new password before the pods accepted it")
	}
	assertProjectsEntraBasic(t, key)
	markDeploymentAvailable(t, key)
	eventually(t, timeout, func() error {
		if p := apiConnectorIn(st.APIConnectorID).Basic.Password; p != "second-password-0123456789" {
			return fmt.Errorf("Entra still has the old password")
		}
		return nil
	})
	assertEntraBasic(t, key, "second-password-0123456789")
	waitRegisteredAndReady(t, key)

	// Editing the connector edits the registration: another user flow, another host.
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Entra.UserFlows = []string{flowB}
		c.Spec.Exposure.Host = "signup2.contoso.example"
	})
	markDeploymentAvailable(t, key)
	waitRegisteredAndReady(t, key)
	eventually(t, timeout, func() error {
		if got := apiConnectorIn(st.APIConnectorID); got.TargetURL != "https://signup2.contoso.example/"+ns+"/signup" {
			return fmt.Errorf("target URL %s", got.TargetURL)
		}
		if id := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowA, "postAttributeCollection"); id != "" {
			return fmt.Errorf("still attached to %s", flowA)
		}
		if id := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowB, "postAttributeCollection"); id != st.APIConnectorID {
			return fmt.Errorf("not attached to %s", flowB)
		}
		return nil
	})

	// Drift: an edit in the admin center is undone at the next resync.
	entraStandIn.SetAPIConnectorTargetURL(st.APIConnectorID, "https://elsewhere.example/api")
	entraStandIn.SetUserFlowConnector(graph.UserFlowB2X, flowB, "postAttributeCollection", "")
	poke(t, key)
	eventually(t, timeout, func() error {
		if got := apiConnectorIn(st.APIConnectorID); got.TargetURL != "https://signup2.contoso.example/"+ns+"/signup" {
			return fmt.Errorf("target URL still %s", got.TargetURL)
		}
		if id := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowB, "postAttributeCollection"); id != st.APIConnectorID {
			return fmt.Errorf("not attached to %s again", flowB)
		}
		return nil
	})
	// Deleted in the admin center (after Graph's replication window, 8s in this suite): created again.
	time.Sleep(8 * time.Second)
	entraStandIn.DeleteObject(st.APIConnectorID)
	poke(t, key)
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		if c.Status.Entra.APIConnectorID == st.APIConnectorID || apiConnectorIn(c.Status.Entra.APIConnectorID) == nil {
			return fmt.Errorf("not created again: %+v", c.Status.Entra)
		}
		if id := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowB, "postAttributeCollection"); id != c.Status.Entra.APIConnectorID {
			return fmt.Errorf("the new one is not attached to %s", flowB)
		}
		return nil
	})
	waitRegisteredAndReady(t, key)

	// Another step: the user flow is attached at the new step's property, detached from the old.
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Step = apiv1.StepPostFederationSignup
		c.Spec.Rules = []apiv1.Rule{{Name: "partners", When: "!claims.email.endsWith('@fabrikam.example')", Block: &apiv1.Outcome{Message: "Partners only."}}}
	})
	waitRegisteredAndReady(t, key)
	eventually(t, timeout, func() error {
		id := connectorOf(t, key).Status.Entra.APIConnectorID
		if got := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowB, "postAttributeCollection"); got != "" {
			return fmt.Errorf("still at postAttributeCollection: %s", got)
		}
		if got := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowB, "postFederationSignup"); got != id {
			return fmt.Errorf("postFederationSignup has %q, want %s", got, id)
		}
		return nil
	})

	// Deletion removes what the operator created, then the connector goes.
	id := connectorOf(t, key).Status.Entra.APIConnectorID
	if err := k8s.Delete(context.Background(), connectorOf(t, key)); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		if err := get(t, key, &apiv1.APIConnector{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("connector still there: %v", err)
		}
		return nil
	})
	if apiConnectorIn(id) != nil {
		t.Errorf("API connector %s left in Entra", id)
	}
	if got := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flowB, "postFederationSignup"); got != "" {
		t.Errorf("user flow %s still has %s", flowB, got)
	}
}

// waitRegisteredAndReady marks the Deployment available as often as the configuration rolls and
// waits until the connector is Ready and registered.
func waitRegisteredAndReady(t *testing.T, key types.NamespacedName) {
	t.Helper()
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		if !conditionIs(c, ConditionDeploymentAvailable, metav1.ConditionTrue) {
			markDeploymentAvailable(t, key)
		}
		if !conditionIs(c, ConditionEntraRegistered, metav1.ConditionTrue) || !conditionIs(c, ConditionReady, metav1.ConditionTrue) || c.Status.ObservedGeneration != c.Generation {
			return fmt.Errorf("not registered and ready: %+v", c.Status.Conditions)
		}
		return nil
	})
}

// assertEntraBasic checks the operator's record of the credential Entra holds.
func assertEntraBasic(t *testing.T, key types.NamespacedName, password string) {
	t.Helper()
	eventually(t, timeout, func() error {
		s := &corev1.Secret{}
		if err := get(t, types.NamespacedName{Namespace: key.Namespace, Name: key.Name + "-entra-basic"}, s); err != nil {
			return err
		}
		if string(s.Data["password"]) != password {
			return fmt.Errorf("the registered credential is not the expected one")
		}
		if !metav1.IsControlledBy(s, connectorOf(t, key)) {
			return fmt.Errorf("not controlled by the connector")
		}
		return nil
	})
}

// assertProjectsEntraBasic checks the runtime pods mount the registered credential too.
func assertProjectsEntraBasic(t *testing.T, key types.NamespacedName) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := get(t, key, d); err != nil {
		t.Fatal(err)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret != nil && src.Secret.Name == children.EntraBasicSecretName(connectorOf(t, key)) {
				return
			}
		}
	}
	t.Errorf("the runtime pods do not mount %s", key.Name+"-entra-basic")
}

func TestEntraThrottlingAndTransientFailures(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	flow := "B2X_1_" + ns
	entraStandIn.AddUserFlow(graph.UserFlowB2X, flow)

	// Graph throttles for longer than the client waits: the connector says so and waits for
	// Retry-After, without a hot loop.
	throttledBefore, _ := sample(t, "apiconnector_graph_requests_total", map[string]string{"code": "429"})
	entraStandIn.Throttle(1000, 3*time.Second)
	conn := newConnector(ns, "throttled")
	conn.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}, UserFlows: []string{flow}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	c := waitCondition(t, key, ConditionEntraRegistered, metav1.ConditionFalse, ReasonThrottled)
	if conditionIs(c, ConditionReady, metav1.ConditionTrue) {
		t.Errorf("Ready while Entra holds nothing")
	}
	if after, _ := sample(t, "apiconnector_graph_requests_total", map[string]string{"code": "429"}); after <= throttledBefore {
		t.Errorf("apiconnector_graph_requests_total{code=\"429\"} did not grow: %v", after)
	}
	before := len(entraStandIn.Requests())
	time.Sleep(4 * time.Second)
	if n := len(entraStandIn.Requests()) - before; n > 12 {
		t.Errorf("%d requests to a throttling Graph in 4s: a hot loop", n)
	}
	// Transient failures (right after the throttling ends) are retried.
	entraStandIn.Throttle(0, 0)
	entraStandIn.FailNext(3, 503)
	// Graph's replication: the new object is not readable at first.
	entraStandIn.NotFoundAfterCreate(2)
	waitRegisteredAndReady(t, key)
	if id := entraStandIn.UserFlowConnector(graph.UserFlowB2X, flow, "postAttributeCollection"); id != connectorOf(t, key).Status.Entra.APIConnectorID {
		t.Errorf("not attached after recovering: %q", id)
	}
	if n := len(entraStandIn.APIConnectors()); n == 0 {
		t.Fatal("nothing registered")
	}
	// Exactly one API connector for this connector, whatever was retried.
	count := 0
	for _, a := range entraStandIn.APIConnectors() {
		if a.DisplayName == ns+"/throttled" {
			count++
		}
	}
	if count != 1 {
		t.Errorf("%d API connectors named %s/throttled in Entra, want 1", count, ns)
	}
}

func TestEntraGraphRefusalIsReported(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	conn := newConnector(ns, "noflow")
	// A user flow that does not exist in the tenant: Graph's exact error in the status.
	conn.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}, UserFlows: []string{"B2X_1_missing_" + ns}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	c := waitCondition(t, key, ConditionEntraRegistered, metav1.ConditionFalse, ReasonGraphError)
	msg := meta.FindStatusCondition(c.Status.Conditions, ConditionEntraRegistered).Message
	if !strings.Contains(msg, "B2X_1_missing_"+ns) || !strings.Contains(msg, "404") {
		t.Errorf("EntraRegistered message lacks the flow and Graph's status: %s", msg)
	}
	if strings.Contains(msg, strongPassword) {
		t.Error("the message holds the password")
	}
	if !conditionIs(c, ConditionStalled, metav1.ConditionTrue) {
		t.Errorf("want Stalled for a refusal only a change can fix: %+v", c.Status.Conditions)
	}

	// A missing EntraTenant is reported, and creating it is watched.
	conn2 := newConnector(ns, "notenant")
	conn2.Spec.Exposure.Host = "other.contoso.example"
	conn2.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "later"}, DeletionPolicy: apiv1.EntraDeletionOrphan}
	create(t, conn2)
	key2 := client.ObjectKeyFromObject(conn2)
	markDeploymentAvailable(t, key2)
	waitCondition(t, key2, ConditionEntraRegistered, metav1.ConditionFalse, ReasonTenantNotReady)
	if c := connectorOf(t, key2); slices.Contains(c.Finalizers, EntraFinalizer) {
		t.Errorf("deletionPolicy Orphan: no finalizer wanted, got %v", c.Finalizers)
	}
	later := newEntraTenant(t, ns, "later")
	waitTenant(t, client.ObjectKeyFromObject(later), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	waitRegisteredAndReady(t, key2)
	id := connectorOf(t, key2).Status.Entra.APIConnectorID
	// Orphan: the connector goes at once, the registration stays in Entra.
	if err := k8s.Delete(context.Background(), connectorOf(t, key2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		if err := get(t, key2, &apiv1.APIConnector{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	if apiConnectorIn(id) == nil {
		t.Errorf("deletionPolicy Orphan deleted API connector %s", id)
	}
}

// bearerConnector is an OnTokenIssuanceStart connector for the API whose app registration is appID.
func bearerConnector(ns, name, appID string) *apiv1.APIConnector {
	return &apiv1.APIConnector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: apiv1.APIConnectorSpec{
			Step:           apiv1.StepOnTokenIssuanceStart,
			Authentication: apiv1.Authentication{Bearer: &apiv1.BearerAuth{TenantID: entraStandIn.TenantID, Audience: appID}},
			Claims:         map[string]apiv1.Expression{"loyaltyTier": "'gold'", "region": "'emea'"},
			Exposure:       apiv1.Exposure{Host: "claims.contoso.example", TLS: &apiv1.TLS{SecretName: "claims-tls"}},
		},
	}
}

func TestEntraExtensionLifecycle(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	apiApp, clientApp, clientApp2 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	// The app registration's identifier URI names another host: Entra would never call.
	entraStandIn.AddApplication(apiApp, "api://old.contoso.example/"+apiApp)

	conn := bearerConnector(ns, "claims", apiApp)
	conn.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"},
		Applications: []string{clientApp}, Timeout: &metav1.Duration{Duration: 1500 * time.Millisecond}}
	create(t, conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	c := waitCondition(t, key, ConditionEntraRegistered, metav1.ConditionFalse, ReasonIdentifierURIMismatch)
	want := "api://claims.contoso.example/" + apiApp
	if msg := meta.FindStatusCondition(c.Status.Conditions, ConditionEntraRegistered).Message; !strings.Contains(msg, want) {
		t.Errorf("the message does not name the identifier URI to add: %s", msg)
	}
	if c.Status.Entra != nil && c.Status.Entra.CustomExtensionID != "" {
		t.Errorf("an extension was created although Entra would never call it")
	}

	entraStandIn.AddApplication(apiApp, "api://old.contoso.example/"+apiApp, want)
	poke(t, key)
	waitRegisteredAndReady(t, key)
	st := connectorOf(t, key).Status.Entra
	ext := extensionIn(st.CustomExtensionID)
	if ext == nil {
		t.Fatalf("no extension %s in the stand-in", st.CustomExtensionID)
	}
	if ext.ODataType != "#microsoft.graph.onTokenIssuanceStartCustomExtension" || ext.TargetURL != "https://claims.contoso.example/"+ns+"/claims" ||
		ext.ResourceID != want || ext.TimeoutMilliseconds != 1500 || ext.MaximumRetries != 1 ||
		!slices.Equal(ext.ClaimsForToken, []string{"loyaltyTier", "region"}) {
		t.Errorf("extension = %+v", ext)
	}
	l := listenerIn(st.EventListenerID)
	if l == nil || l.ODataType != "#microsoft.graph.onTokenIssuanceStartListener" || l.HandlerODataType != "#microsoft.graph.onTokenIssuanceStartCustomExtensionHandler" ||
		l.ExtensionID != st.CustomExtensionID || !slices.Equal(l.AppIDs, []string{clientApp}) {
		t.Errorf("listener = %+v", l)
	}

	// Registered: read back every resyncInterval of the tenant (default 10m).
	res, err := counter.next.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	if err != nil || res.RequeueAfter != DefaultEntraResync {
		t.Errorf("a registered connector is looked at again in %s (%v), want the resync interval %s", res.RequeueAfter, err, DefaultEntraResync)
	}

	// Edits: another application, another claim, Entra's retries off.
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Entra.Applications = []string{clientApp, clientApp2}
		c.Spec.Entra.MaximumRetries = ptr.To[int32](0)
		c.Spec.Claims["country"] = "'SE'"
	})
	waitRegisteredAndReady(t, key)
	eventually(t, timeout, func() error {
		ext := extensionIn(st.CustomExtensionID)
		l := listenerIn(st.EventListenerID)
		if ext.MaximumRetries != 0 || len(ext.ClaimsForToken) != 3 {
			return fmt.Errorf("extension not updated: %+v", ext)
		}
		if got := slices.Sorted(slices.Values(l.AppIDs)); !slices.Equal(got, slices.Sorted(slices.Values([]string{clientApp, clientApp2}))) {
			return fmt.Errorf("listener apps %v", got)
		}
		return nil
	})

	// Drift in the admin center is undone.
	entraStandIn.SetCustomExtensionTargetURL(st.CustomExtensionID, "https://elsewhere.example/")
	entraStandIn.SetEventListenerAppIDs(st.EventListenerID)
	poke(t, key)
	eventually(t, timeout, func() error {
		if ext := extensionIn(st.CustomExtensionID); ext.TargetURL != "https://claims.contoso.example/"+ns+"/claims" {
			return fmt.Errorf("target URL still %s", ext.TargetURL)
		}
		if l := listenerIn(st.EventListenerID); len(l.AppIDs) != 2 {
			return fmt.Errorf("listener apps still %v", l.AppIDs)
		}
		return nil
	})

	// Removing the section deletes the registration (deletionPolicy Delete) and the finalizer.
	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Entra = nil })
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		if c.Status.Entra != nil || slices.Contains(c.Finalizers, EntraFinalizer) || meta.FindStatusCondition(c.Status.Conditions, ConditionEntraRegistered) != nil {
			return fmt.Errorf("registration still recorded: %+v %v", c.Status.Entra, c.Finalizers)
		}
		return nil
	})
	if extensionIn(st.CustomExtensionID) != nil || listenerIn(st.EventListenerID) != nil {
		t.Errorf("the extension or the listener is left in Entra")
	}
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonSucceeded)
}

// TestEntraClientCertificate uploads the certificate Entra presents as PKCS#12, and a renewed
// one again.
func TestEntraClientCertificate(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	ca := caPEM(t)
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra-ca"}, Data: map[string][]byte{"ca.crt": ca}})
	certSecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra-client"}, Type: corev1.SecretTypeTLS,
		Data: clientKeyPair(t, "entra-client-1")}
	create(t, certSecret)
	// The runtime terminates TLS itself to see the client certificate.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "signup-tls"}, Type: corev1.SecretTypeTLS,
		Data: clientKeyPair(t, "signup.contoso.example")})
	conn := newConnector(ns, "mtls")
	conn.Spec.Authentication = apiv1.Authentication{ClientCertificate: &apiv1.ClientCertificateAuth{
		SecretRef: apiv1.SecretReference{Name: "entra-ca"}, AllowedSubjects: []string{"CN=entra-client-1", "CN=entra-client-2"}}}
	conn.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"},
		ClientCertificate: &apiv1.SecretReference{Name: "entra-client"}}
	create(t, conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	waitRegisteredAndReady(t, key)
	st := connectorOf(t, key).Status.Entra
	got := apiConnectorIn(st.APIConnectorID)
	if got == nil || len(got.CertificateThumbprints) != 1 || !strings.EqualFold(got.CertificateThumbprints[0], st.CertificateThumbprint) {
		t.Fatalf("Entra holds %+v; status thumbprint %s", got, st.CertificateThumbprint)
	}
	first := st.CertificateThumbprint

	certSecret.Data = clientKeyPair(t, "entra-client-2")
	if err := k8s.Update(context.Background(), certSecret); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		if c.Status.Entra.CertificateThumbprint == first {
			return fmt.Errorf("the renewed certificate was not uploaded")
		}
		if got := apiConnectorIn(st.APIConnectorID); len(got.CertificateThumbprints) != 2 {
			return fmt.Errorf("Entra has %d certificates, want both", len(got.CertificateThumbprints))
		}
		return nil
	})
}

// clientKeyPair is a self-signed RSA client certificate and key, as a kubernetes.io/tls Secret's data.
func clientKeyPair(t *testing.T, cn string) map[string][]byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		corev1.TLSCertKey:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		corev1.TLSPrivateKeyKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}),
	}
}

// TestEntraDeletionWithoutTenant: a connector whose tenant can no longer sign in cannot delete
// its registration; it says so, and deletionPolicy Orphan lets it go.
// (RevokeTokens affects every test's tokens: the clients sign in again on the next 401.)
func TestEntraDeletionWithoutTenant(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	conn := newConnector(ns, "stuck")
	conn.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	waitRegisteredAndReady(t, key)
	id := connectorOf(t, key).Status.Entra.APIConnectorID

	// The app registration is deleted in Entra: its tokens stop working and its secret too.
	if err := k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "contoso-credentials"}}); err != nil {
		t.Fatal(err)
	}
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionStalled, metav1.ConditionTrue, ReasonCredentialsInvalid)
	entraStandIn.RevokeTokens()
	if err := k8s.Delete(context.Background(), connectorOf(t, key)); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		cond := meta.FindStatusCondition(c.Status.Conditions, ConditionEntraRegistered)
		if cond == nil || cond.Reason != ReasonDeleting || !strings.Contains(cond.Message, "deletionPolicy: Orphan") {
			return fmt.Errorf("EntraRegistered = %+v", cond)
		}
		return nil
	})
	if apiConnectorIn(id) == nil {
		t.Fatal("the API connector was deleted without a tenant to delete it through")
	}
	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Entra.DeletionPolicy = apiv1.EntraDeletionOrphan })
	eventually(t, timeout, func() error {
		if err := get(t, key, &apiv1.APIConnector{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	if apiConnectorIn(id) == nil {
		t.Error("Orphan: the API connector should stay in Entra")
	}
}

// TestEntraTenantDeletedFirst: an EntraTenant deleted before its connectors (as when a namespace
// is deleted) stays until they have deleted their registrations through it, even once its
// Secret is gone.
func TestEntraTenantDeletedFirst(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	tkey := client.ObjectKeyFromObject(tenant)
	waitTenant(t, tkey, ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	conn := newConnector(ns, "ns-deleted")
	conn.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	waitRegisteredAndReady(t, key)
	id := connectorOf(t, key).Status.Entra.APIConnectorID

	if err := k8s.Delete(context.Background(), tenant); err != nil {
		t.Fatal(err)
	}
	waitTenant(t, tkey, ConditionReconciling, metav1.ConditionTrue, ReasonInUse)
	if err := k8s.Delete(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "contoso-credentials"}}); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(context.Background(), connectorOf(t, key)); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		if err := get(t, key, &apiv1.APIConnector{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("connector still there: %v", err)
		}
		if err := get(t, tkey, &apiv1.EntraTenant{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("tenant still there: %v", err)
		}
		return nil
	})
	if apiConnectorIn(id) != nil {
		t.Errorf("API connector %s left in Entra", id)
	}
}

// TestEntraAdoptsWhatItCreatedBefore: an operator that lost the IDs it created (it stopped between
// a create and its status write) finds its objects again instead of creating second ones.
func TestEntraAdoptsWhatItCreatedBefore(t *testing.T) {
	ns := newNamespace(t)
	tenant := newEntraTenant(t, ns, "contoso")
	waitTenant(t, client.ObjectKeyFromObject(tenant), ConditionReady, metav1.ConditionTrue, ReasonSignedIn)
	apiApp, clientApp := uuid.NewString(), uuid.NewString()
	entraStandIn.AddApplication(apiApp, "api://claims.contoso.example/"+apiApp)
	legacy := newConnector(ns, "legacy")
	legacy.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}}
	ext := bearerConnector(ns, "ext", apiApp)
	ext.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: "contoso"}, Applications: []string{clientApp}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), legacy, ext)
	rec := counter.next.(*Reconciler)
	for _, conn := range []*apiv1.APIConnector{legacy, ext} {
		key := client.ObjectKeyFromObject(conn)
		waitRegisteredAndReady(t, key)
		before := *connectorOf(t, key).Status.Entra

		// As after a restart: no status.entra, nothing remembered.
		eventually(t, timeout, func() error {
			c := connectorOf(t, key)
			rec.entraRemember(&apiv1.APIConnector{ObjectMeta: metav1.ObjectMeta{UID: c.UID}})
			base := c.DeepCopy()
			c.Status.Entra = nil
			return k8s.Status().Patch(context.Background(), c, client.MergeFrom(base))
		})
		listed := len(entraStandIn.Requests())
		poke(t, key)
		eventually(t, timeout, func() error {
			after := connectorOf(t, key).Status.Entra
			if after == nil || after.APIConnectorID != before.APIConnectorID || after.CustomExtensionID != before.CustomExtensionID ||
				after.EventListenerID != before.EventListenerID {
				return fmt.Errorf("status.entra = %+v, want the IDs of %+v", after, before)
			}
			return nil
		})
		found := false
		for _, r := range entraStandIn.Requests()[listed:] {
			if r.Method == "GET" && (r.Path == "/v1.0/identity/apiConnectors" || r.Path == "/v1.0/identity/customAuthenticationExtensions") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: the IDs came back without looking for the objects in Entra", key.Name)
		}
	}
	count := 0
	for _, a := range entraStandIn.APIConnectors() {
		if a.DisplayName == ns+"/legacy" {
			count++
		}
	}
	exts := 0
	for _, e := range entraStandIn.CustomExtensions() {
		if e.DisplayName == ns+"/ext" {
			exts++
		}
	}
	if count != 1 || exts != 1 {
		t.Errorf("%d API connectors and %d extensions for the two connectors, want one each", count, exts)
	}
}
