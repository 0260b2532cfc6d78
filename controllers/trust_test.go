package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Objects someone else created under a child's name are never rewritten, adopted or deleted: the
// connector stalls naming each of them, and recovers once they are gone.
func TestForeignObjectsAreNeverTakenOver(t *testing.T) {
	ns := newNamespace(t)
	foreignSvc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "payments-api"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	foreignCM := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments-config"}, Data: map[string]string{"mode": "live"}}
	foreignIng := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments"},
		Spec:       networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "payments.contoso.example"}}},
	}
	create(t, foreignSvc, foreignCM, foreignIng)
	conn := newConnector(ns, "payments")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)

	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonChildConflict)
	msg := stalledMessage(c)
	for _, want := range []string{`Service "payments"`, `ConfigMap "payments-config"`, `Ingress "payments"`, "was not created by this connector"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Stalled message lacks %q: %s", want, msg)
		}
	}
	if got := kstatus(t, c); got != status.FailedStatus {
		t.Errorf("kstatus = %s, want Failed", got)
	}
	waitEvent(t, key, ReasonChildConflict, `Service "payments"`)

	svc := &corev1.Service{}
	if err := get(t, client.ObjectKeyFromObject(foreignSvc), svc); err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector["app"] != "payments-api" || len(svc.OwnerReferences) != 0 || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("the foreign Service was modified: selector %v, owners %v, ports %v", svc.Spec.Selector, svc.OwnerReferences, svc.Spec.Ports)
	}
	cm := &corev1.ConfigMap{}
	if err := get(t, client.ObjectKeyFromObject(foreignCM), cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["mode"] != "live" || len(cm.OwnerReferences) != 0 {
		t.Errorf("the foreign ConfigMap was modified: %v, owners %v", cm.Data, cm.OwnerReferences)
	}
	ing := &networkingv1.Ingress{}
	if err := get(t, client.ObjectKeyFromObject(foreignIng), ing); err != nil {
		t.Fatal(err)
	}
	if ing.Spec.Rules[0].Host != "payments.contoso.example" || len(ing.OwnerReferences) != 0 {
		t.Errorf("the foreign Ingress was modified: %+v, owners %v", ing.Spec.Rules, ing.OwnerReferences)
	}
	if err := get(t, key, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("nothing may be applied while a child conflicts; Deployment: %v", err)
	}

	// Deleting the connector leaves the foreign objects alone (they carry no owner reference, so
	// the garbage collector has nothing to do); removing them lets a connector proceed.
	for _, o := range []client.Object{foreignSvc, foreignCM, foreignIng} {
		if err := k8s.Delete(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, childConflictRecheck+timeout, func() error {
		c := connectorOf(t, key)
		if cond := meta.FindStatusCondition(c.Status.Conditions, ConditionStalled); cond != nil {
			return fmt.Errorf("still stalled: %s", cond.Message)
		}
		return get(t, key, &corev1.Service{})
	})
}

// A connector named like another connector's derived child (`a-metrics` is connector a's metrics
// Service) does not take it over either.
func TestChildOfAnotherConnectorIsNotTakenOver(t *testing.T) {
	ns := newNamespace(t)
	first := newConnector(ns, "a")
	create(t, basicSecret(ns, "entra-basic", strongPassword), first)
	eventually(t, timeout, func() error {
		return get(t, types.NamespacedName{Namespace: ns, Name: "a-metrics"}, &corev1.Service{})
	})
	second := newConnector(ns, "a-metrics")
	second.Spec.Exposure.Path = "/other"
	create(t, second)
	c := waitCondition(t, client.ObjectKeyFromObject(second), ConditionStalled, metav1.ConditionTrue, ReasonChildConflict)
	if msg := stalledMessage(c); !strings.Contains(msg, `Service "a-metrics" already exists and is controlled by APIConnector "a"`) {
		t.Errorf("message = %s", msg)
	}
	svc := &corev1.Service{}
	if err := get(t, types.NamespacedName{Namespace: ns, Name: "a-metrics"}, svc); err != nil {
		t.Fatal(err)
	}
	if !metav1.IsControlledBy(svc, connectorOf(t, client.ObjectKeyFromObject(first))) {
		t.Errorf("a-metrics changed controller: %+v", svc.OwnerReferences)
	}
}

// Two connectors claiming one host and path: the older keeps it, the other stalls naming it, both
// get an event, and the clash resolves itself when the older one goes away.
func TestEndpointClashOlderConnectorKeepsIt(t *testing.T) {
	nsA, nsB := newNamespace(t), newNamespace(t)
	older := newConnector(nsA, "signup")
	older.Spec.Exposure.Path = "/entra/signup"
	create(t, basicSecret(nsA, "entra-basic", strongPassword), older)
	olderKey := client.ObjectKeyFromObject(older)
	waitCondition(t, olderKey, ConditionRulesValid, metav1.ConditionTrue, ReasonCompiled)

	// Creation times have a resolution of one second; ties go to namespace/name order.
	time.Sleep(1100 * time.Millisecond)
	newer := newConnector(nsB, "signup-copy")
	newer.Spec.Exposure.Path = "/entra/signup/" // the same endpoint, trailing slash or not
	create(t, basicSecret(nsB, "entra-basic", strongPassword), newer)
	newerKey := client.ObjectKeyFromObject(newer)

	c := waitCondition(t, newerKey, ConditionStalled, metav1.ConditionTrue, ReasonEndpointConflict)
	if msg := stalledMessage(c); !strings.Contains(msg, "already claimed by APIConnector "+nsA+"/signup") {
		t.Errorf("message does not name the holder: %s", msg)
	}
	if err := get(t, newerKey, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("the newer connector must not route the claimed endpoint; Ingress: %v", err)
	}
	waitEvent(t, newerKey, ReasonEndpointConflict, "already claimed")
	waitEvent(t, olderKey, ReasonEndpointConflict, nsB+"/signup-copy also claims")
	markDeploymentAvailable(t, olderKey)
	if c := waitCondition(t, olderKey, ConditionReady, metav1.ConditionTrue, ""); meta.FindStatusCondition(c.Status.Conditions, ConditionStalled) != nil {
		t.Error("the holder must not be stalled")
	}

	if err := k8s.Delete(context.Background(), connectorOf(t, olderKey)); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error { return get(t, newerKey, &networkingv1.Ingress{}) })
	// The status is written after the children, in the same reconcile.
	eventually(t, timeout, func() error {
		if cond := meta.FindStatusCondition(connectorOf(t, newerKey).Status.Conditions, ConditionStalled); cond != nil {
			return fmt.Errorf("still stalled after the holder went away: %s", cond.Message)
		}
		return nil
	})
}

// Entra ID only calls HTTPS: an endpoint nothing serves over TLS is not Ready and says so, unless
// TLS is declared as terminated in front of the cluster.
func TestPlainHTTPEndpointIsNotReady(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "plain")
	conn.Spec.Exposure.TLS = nil
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonNotHTTPS)
	if want := "http://signup.contoso.example/" + ns + "/plain"; len(c.Status.Endpoints) != 1 || c.Status.Endpoints[0] != want {
		t.Errorf("endpoints = %v, want the scheme actually served: %s", c.Status.Endpoints, want)
	}
	if !conditionIs(c, ConditionReady, metav1.ConditionFalse) || kstatus(t, c) != status.FailedStatus {
		t.Errorf("want Ready=False and kstatus Failed, got %+v", c.Status.Conditions)
	}
	if msg := stalledMessage(c); !strings.Contains(msg, "set spec.exposure.tls") || !strings.Contains(msg, "externalTLS") {
		t.Errorf("message does not say how to fix it: %s", msg)
	}
	// Not blocking: the children are kept up to date (useful while testing in-cluster).
	if err := get(t, key, &networkingv1.Ingress{}); err != nil {
		t.Errorf("Ingress: %v", err)
	}

	before := podTemplateHash(t, key)
	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Exposure.ExternalTLS = true })
	waitTemplateChange(t, key, before)
	markDeploymentAvailable(t, key)
	c = waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonSucceeded)
	if want := "https://signup.contoso.example/" + ns + "/plain"; c.Status.Endpoints[0] != want {
		t.Errorf("endpoints = %v, want %s", c.Status.Endpoints, want)
	}
}

// One status read shows every problem: a missing Secret does not hide a missing ConfigMap or an
// invalid rule, and no value is echoed.
func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "broken")
	conn.Spec.Lists = []apiv1.List{{Name: "allowed", ConfigMapRef: &apiv1.ConfigMapKeyReference{Name: "domains", Key: "list"}}}
	conn.Spec.Rules = append(conn.Spec.Rules, apiv1.Rule{Name: "deny-unknown", When: "claims.email.endsWith(lists.allowd[0])", Block: &apiv1.Outcome{Message: "no"}})
	create(t, conn) // neither the Secret nor the ConfigMap exists
	key := client.ObjectKeyFromObject(conn)

	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, "")
	msg := stalledMessage(c)
	for _, want := range []string{`Secret "entra-basic" not found`, `list "allowed": ConfigMap "domains" not found`, `spec.rules[1].when (rule "deny-unknown")`, "lists.allowd"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Stalled message lacks %q:\n%s", want, msg)
		}
	}
	if !conditionIs(c, ConditionRulesValid, metav1.ConditionFalse) {
		t.Error("the rules must be compiled and judged even while a Secret is missing")
	}
}

// spec.runtime.replicas 0 is a deliberate, settled state: neither reconciling nor stalled, so GitOps
// health checks do not hang; Ready says ScaledToZero and Argo CD shows it Suspended.
func TestScaledToZeroSettles(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "paused")
	conn.Spec.Runtime.Replicas = ptr.To[int32](0)
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	c := waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonScaledToZero)
	if !conditionIs(c, ConditionReconciling, metav1.ConditionFalse) || meta.FindStatusCondition(c.Status.Conditions, ConditionStalled) != nil {
		t.Errorf("scaled to zero must settle: %+v", c.Status.Conditions)
	}
	if got := kstatus(t, c); got != status.CurrentStatus {
		t.Errorf("kstatus = %s, want Current", got)
	}
}

// One connector's life, judged at every step by the kstatus library (Flux, kubectl wait) and by the
// Argo CD health check we ship, which must agree (kstatus() checks both).
func TestLifecycleVerdicts(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "life")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	step := func(name string, want status.Status, c *apiv1.APIConnector) {
		t.Helper()
		if got := kstatus(t, c); got != want {
			t.Errorf("%s: kstatus = %s, want %s (conditions %+v)", name, got, want, c.Status.Conditions)
		}
	}

	step("rolling out", status.InProgressStatus, waitCondition(t, key, ConditionReconciling, metav1.ConditionTrue, ""))
	markDeploymentAvailable(t, key)
	step("ready", status.CurrentStatus, waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonSucceeded))

	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Rules[0].When = "claims.postalCode +" })
	step("broken rule", status.FailedStatus, waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonInvalidRules))

	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Rules[0].When = "has(claims.postalCode)" })
	step("fixed, rolling out", status.InProgressStatus, waitCondition(t, key, ConditionReconciling, metav1.ConditionTrue, ""))
	markDeploymentAvailable(t, key)
	step("fixed, ready", status.CurrentStatus, waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonSucceeded))

	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Runtime.Replicas = ptr.To[int32](0) })
	step("scaled to zero", status.CurrentStatus, waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonScaledToZero))
}

// Rolled out means the Deployment runs the desired configuration: a Deployment reporting every
// replica available for another pod template is still rolling out, and an outage at steady state
// is not called a rollout.
func TestRollout(t *testing.T) {
	conn := newConnector("ns", "x")
	deployment := func(hash string, generation, observed int64, replicas, updated, available int32) *appsv1.Deployment {
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Generation: generation},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{children.ConfigHashKey: hash}}}},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available},
		}
	}
	for _, tc := range []struct {
		name       string
		d          *appsv1.Deployment
		want       metav1.ConditionStatus
		reason     string
		msgContain string
	}{
		{"rolled out", deployment("h1", 3, 3, 2, 2, 2), metav1.ConditionTrue, ReasonAvailable, "2/2 replicas serve"},
		{"another template, all available", deployment("old", 3, 3, 2, 2, 2), metav1.ConditionFalse, ReasonDeploymentUnavailable, "Rolling out configuration h1"},
		{"template not yet seen by the Deployment controller", deployment("h1", 4, 3, 2, 2, 2), metav1.ConditionFalse, ReasonDeploymentUnavailable, "Rolling out"},
		{"half updated", deployment("h1", 3, 3, 2, 1, 2), metav1.ConditionFalse, ReasonDeploymentUnavailable, "1/2 replicas updated"},
		{"steady-state outage", deployment("h1", 3, 3, 2, 2, 0), metav1.ConditionFalse, ReasonDeploymentUnavailable, "0/2 replicas of the current configuration are available"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, reason, msg := rollout(conn, tc.d, "h1")
			if st != tc.want || reason != tc.reason || !strings.Contains(msg, tc.msgContain) {
				t.Errorf("rollout = %s/%s %q, want %s/%s containing %q", st, reason, msg, tc.want, tc.reason, tc.msgContain)
			}
		})
	}
	conn.Spec.Runtime.Replicas = ptr.To[int32](0)
	if _, reason, _ := rollout(conn, deployment("h1", 3, 3, 0, 0, 0), "h1"); reason != ReasonScaledToZero {
		t.Errorf("replicas 0: reason %s, want %s", reason, ReasonScaledToZero)
	}
}

// waitTemplateChange waits until the controller has applied a pod template other than before.
func waitTemplateChange(t *testing.T, key types.NamespacedName, before string) {
	t.Helper()
	eventually(t, timeout, func() error {
		if podTemplateHash(t, key) == before {
			return fmt.Errorf("the pod template still has config hash %s", before)
		}
		return nil
	})
}

// An API error on any path leaves no earlier Ready=True behind: here a ValidatingAdmissionPolicy
// (a real admission refusal, as a cluster's policy engine would give) refuses the update of the
// connector's ConfigMap after a rule change.
func TestApplyErrorNeverLeavesStaleReady(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	conn := newConnector(ns, "refused")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonSucceeded)

	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{Expression: "false", Message: "configuration is frozen"}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "freeze-" + ns},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		},
	}
	create(t, policy, binding)
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, binding)
		_ = k8s.Delete(ctx, policy)
	})

	// The policy takes effect once the API server has loaded it; keep changing the message until a
	// reconcile is refused.
	i := 0
	var c *apiv1.APIConnector
	eventually(t, timeout, func() error {
		i++
		update(t, key, func(c *apiv1.APIConnector) {
			c.Spec.Rules[0].ValidationError.Message = fmt.Sprintf("Postal codes have five digits (%d).", i)
		})
		var err error
		c, err = waitConditionOnce(key, ConditionReady)
		if err != nil {
			return err
		}
		if cond := meta.FindStatusCondition(c.Status.Conditions, ConditionReady); cond.Reason != ReasonReconcileError {
			return fmt.Errorf("Ready = %s/%s", cond.Status, cond.Reason)
		}
		return nil
	})
	cond := meta.FindStatusCondition(c.Status.Conditions, ConditionReady)
	if cond.Status != metav1.ConditionFalse || cond.ObservedGeneration != c.Generation || !strings.Contains(cond.Message, "configuration is frozen") {
		t.Errorf("Ready = %+v, want False for generation %d with the API server's refusal", cond, c.Generation)
	}
	if got := kstatus(t, c); got != status.InProgressStatus {
		t.Errorf("kstatus = %s, want InProgress (retried)", got)
	}

	_ = k8s.Delete(ctx, binding)
	eventually(t, timeout, func() error {
		markDeploymentAvailable(t, key)
		c := connectorOf(t, key)
		if !conditionIs(c, ConditionReady, metav1.ConditionTrue) {
			return fmt.Errorf("not Ready yet: %+v", meta.FindStatusCondition(c.Status.Conditions, ConditionReady))
		}
		return nil
	})
}

// waitConditionOnce waits until the connector's status describes its current generation and
// returns it with the condition present.
func waitConditionOnce(key types.NamespacedName, typ string) (*apiv1.APIConnector, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c := &apiv1.APIConnector{}
		if err := k8s.Get(context.Background(), key, c); err != nil {
			return nil, err
		}
		if c.Status.ObservedGeneration == c.Generation && meta.FindStatusCondition(c.Status.Conditions, typ) != nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("generation %d not reconciled", c.Generation)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
