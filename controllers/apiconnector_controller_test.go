package controllers

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/config/argocd"
	"github.com/apiconnector/operator/controllers/children"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const timeout = 20 * time.Second

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// strongPassword passes the controller's Basic password policy.
const strongPassword = "Tr0ub4dor&3-correct-horse"

// caPEM is a self-signed CA certificate, a valid ca.crt.
func caPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "entra test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func basicSecret(ns, name, password string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Data:       map[string][]byte{"username": []byte("entra"), "password": []byte(password)},
	}
}

func newConnector(ns, name string) *apiv1.APIConnector {
	return &apiv1.APIConnector{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: apiv1.APIConnectorSpec{
			Step:           apiv1.StepPostAttributeCollection,
			Authentication: apiv1.Authentication{Basic: &apiv1.BasicAuth{SecretRef: apiv1.SecretReference{Name: "entra-basic"}}},
			Rules: []apiv1.Rule{{
				Name:            "postal-code",
				When:            "has(claims.postalCode) && !claims.postalCode.matches('^[0-9]{5}$')",
				ValidationError: &apiv1.Outcome{Message: "Please enter a valid postal code."},
			}},
			Exposure: apiv1.Exposure{Host: "signup.contoso.example", TLS: &apiv1.TLS{SecretName: "signup-tls"}},
		},
	}
}

func create(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := k8s.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func get(t *testing.T, key types.NamespacedName, obj client.Object) error {
	t.Helper()
	return k8s.Get(context.Background(), key, obj)
}

func connectorOf(t *testing.T, key types.NamespacedName) *apiv1.APIConnector {
	t.Helper()
	c := &apiv1.APIConnector{}
	if err := get(t, key, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// condition waits until the connector's condition has the status and reason, for its current
// generation.
func waitCondition(t *testing.T, key types.NamespacedName, typ string, st metav1.ConditionStatus, reason string) *apiv1.APIConnector {
	t.Helper()
	var c *apiv1.APIConnector
	eventually(t, timeout, func() error {
		c = connectorOf(t, key)
		cond := meta.FindStatusCondition(c.Status.Conditions, typ)
		if cond == nil {
			return fmt.Errorf("no %s condition; conditions: %+v", typ, c.Status.Conditions)
		}
		if cond.Status != st || (reason != "" && cond.Reason != reason) || c.Status.ObservedGeneration != c.Generation {
			return fmt.Errorf("%s = %s/%s (%s), observedGeneration %d/%d", typ, cond.Status, cond.Reason, cond.Message, c.Status.ObservedGeneration, c.Generation)
		}
		return nil
	})
	return c
}

// markDeploymentAvailable writes the status the kube-controller-manager would once every replica of
// the current template is available.
func markDeploymentAvailable(t *testing.T, key types.NamespacedName) {
	t.Helper()
	eventually(t, timeout, func() error {
		d := &appsv1.Deployment{}
		if err := get(t, key, d); err != nil {
			return err
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation,
			Replicas:           n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{{
				Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable",
				LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
			}},
		}
		return k8s.Status().Update(context.Background(), d)
	})
}

// kstatus computes what Flux and `kubectl wait` see, and checks that the Argo CD health check we
// ship agrees with it on the same real object.
func kstatus(t *testing.T, c *apiv1.APIConnector) status.Status {
	t.Helper()
	obj, err := runtimeToUnstructured(c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := status.Compute(obj)
	if err != nil {
		t.Fatal(err)
	}
	health, err := argocd.Evaluate(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	want := map[status.Status]string{status.InProgressStatus: "Progressing", status.CurrentStatus: "Healthy", status.FailedStatus: "Degraded"}[res.Status]
	if ready := meta.FindStatusCondition(c.Status.Conditions, ConditionReady); res.Status == status.CurrentStatus && ready != nil && ready.Reason == ReasonScaledToZero {
		want = "Suspended" // settled, deliberately serving nothing
	}
	if health.Status != want {
		t.Errorf("Argo CD health = %s (%s) but kstatus = %s", health.Status, health.Message, res.Status)
	}
	return res.Status
}

func runtimeToUnstructured(c *apiv1.APIConnector) (*unstructured.Unstructured, error) {
	m, err := runtimeDefaultConverter(c)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(apiv1.GroupVersion.String())
	u.SetKind("APIConnector")
	return u, nil
}

func podTemplateHash(t *testing.T, key types.NamespacedName) string {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := get(t, key, d); err != nil {
		t.Fatal(err)
	}
	return d.Spec.Template.Annotations[children.ConfigHashKey]
}

func TestCreateBuildsChildrenAndReportsReady(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "validate")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)

	c := waitCondition(t, key, ConditionDeploymentAvailable, metav1.ConditionFalse, ReasonDeploymentUnavailable)
	if got := kstatus(t, c); got != status.InProgressStatus {
		t.Errorf("kstatus while rolling out = %s, want InProgress", got)
	}
	if !conditionIs(c, ConditionReconciling, metav1.ConditionTrue) || !conditionIs(c, ConditionReady, metav1.ConditionFalse) {
		t.Errorf("while rolling out want Reconciling=True, Ready=False; got %+v", c.Status.Conditions)
	}
	if want := "https://signup.contoso.example/" + ns + "/validate"; len(c.Status.Endpoints) != 1 || c.Status.Endpoints[0] != want {
		t.Errorf("endpoints = %v, want [%s]", c.Status.Endpoints, want)
	}

	// Every child exists, is controlled by the connector (so the garbage collector deletes it with
	// the connector) and carries our labels, never the connector's.
	for _, obj := range []client.Object{&corev1.ConfigMap{}, &appsv1.Deployment{}, &corev1.Service{}, &networkingv1.Ingress{}, &policyv1.PodDisruptionBudget{}} {
		name := key.Name
		if _, ok := obj.(*corev1.ConfigMap); ok {
			name = children.ConfigMapName(c)
		}
		if err := get(t, types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
		if !metav1.IsControlledBy(obj, c) {
			t.Errorf("%T %s is not controlled by the connector: %+v", obj, name, obj.GetOwnerReferences())
		}
		if obj.GetLabels()["app.kubernetes.io/managed-by"] != children.ManagedBy {
			t.Errorf("%T %s lacks the managed-by label", obj, name)
		}
	}
	d := &appsv1.Deployment{}
	_ = get(t, key, d)
	if img := d.Spec.Template.Spec.Containers[0].Image; img != runtimeImage {
		t.Errorf("image = %s, want the operator's --runtime-image %s", img, runtimeImage)
	}
	if c.Status.ConfigHash == "" || c.Status.ConfigHash != d.Spec.Template.Annotations[children.ConfigHashKey] {
		t.Errorf("status.configHash %q does not match the pod template's %q", c.Status.ConfigHash, d.Spec.Template.Annotations[children.ConfigHashKey])
	}

	markDeploymentAvailable(t, key)
	c = waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonSucceeded)
	if !conditionIs(c, ConditionReconciling, metav1.ConditionFalse) {
		t.Errorf("once Ready want Reconciling=False (settled); got %+v", c.Status.Conditions)
	}
	if got := kstatus(t, c); got != status.CurrentStatus {
		t.Errorf("kstatus when ready = %s, want Current", got)
	}
	if c.Status.ReadyReplicas != 2 {
		t.Errorf("readyReplicas = %d, want 2", c.Status.ReadyReplicas)
	}

	// A settled connector is left alone: no hot loop.
	before := counter.get(key)
	time.Sleep(3 * time.Second)
	if after := counter.get(key); after != before {
		t.Errorf("a settled connector was reconciled %d more times in 3s; want 0", after-before)
	}
}

func TestRuleChangesRollAndInvalidRulesStall(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "rules")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, ReasonCompiled)
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")
	first := podTemplateHash(t, key)

	// A valid change rolls the pods.
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Rules[0].ValidationError.Message = "Postal codes have five digits."
	})
	eventually(t, timeout, func() error {
		if h := podTemplateHash(t, key); h == first {
			return fmt.Errorf("pod template hash unchanged after a rule change")
		}
		return nil
	})
	second := podTemplateHash(t, key)

	// An invalid rule stalls with the field path and leaves the Deployment as it was.
	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Rules[0].When = "claims.postalCode + 1" })
	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonInvalidRules)
	msg := meta.FindStatusCondition(c.Status.Conditions, ConditionStalled).Message
	if !strings.Contains(msg, "spec.rules[0].when") {
		t.Errorf("Stalled message does not name the field: %s", msg)
	}
	if !conditionIs(c, ConditionRulesValid, metav1.ConditionFalse) || !conditionIs(c, ConditionReady, metav1.ConditionFalse) ||
		!conditionIs(c, ConditionReconciling, metav1.ConditionFalse) {
		t.Errorf("want RulesValid=False, Ready=False and Reconciling=False (settled), got %+v", c.Status.Conditions)
	}
	if got := kstatus(t, c); got != status.FailedStatus {
		t.Errorf("kstatus when stalled = %s, want Failed", got)
	}
	if h := podTemplateHash(t, key); h != second {
		t.Error("an invalid rule changed the Deployment; the last good one must keep serving")
	}
	waitEvent(t, key, ReasonInvalidRules, "spec.rules[0].when")
	waitEvent(t, key, "RollingOut", "Rolling out configuration")

	// Fixing it recovers.
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Rules[0].When = "has(claims.postalCode) && claims.postalCode.size() != 5"
	})
	waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, ReasonCompiled)
	markDeploymentAvailable(t, key)
	c = waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")
	if meta.FindStatusCondition(c.Status.Conditions, ConditionStalled) != nil {
		t.Error("Stalled must be removed after the fix")
	}
	if podTemplateHash(t, key) == second {
		t.Error("the fixed rules were not rolled out")
	}
}

func TestSecretRotationAndDeletion(t *testing.T) {
	ns := newNamespace(t)
	secret := basicSecret(ns, "entra-basic", "first-password-0123456789")
	conn := newConnector(ns, "rotate")
	create(t, secret, conn)
	key := client.ObjectKeyFromObject(conn)
	waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, "")
	first := podTemplateHash(t, key)

	secret.Data["password"] = []byte("second-password-0123456789")
	if err := k8s.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		if podTemplateHash(t, key) == first {
			return fmt.Errorf("rotating the Secret did not change the pod template hash")
		}
		return nil
	})

	// A label change alone must not roll the pods.
	rotated := podTemplateHash(t, key)
	eventually(t, timeout, func() error {
		s := &corev1.Secret{}
		if err := get(t, client.ObjectKeyFromObject(secret), s); err != nil {
			return err
		}
		s.Labels = map[string]string{"touched": "yes"}
		return k8s.Update(context.Background(), s)
	})
	time.Sleep(time.Second)
	if podTemplateHash(t, key) != rotated {
		t.Error("a Secret metadata change rolled the pods")
	}

	if err := k8s.Delete(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonSecretNotFound)
	if msg := meta.FindStatusCondition(c.Status.Conditions, ConditionStalled).Message; !strings.Contains(msg, `"entra-basic"`) {
		t.Errorf("Stalled message does not name the Secret: %s", msg)
	}
	waitEvent(t, key, ReasonSecretNotFound, `Secret "entra-basic" not found`)

	// Recreating it recovers without touching the connector.
	create(t, basicSecret(ns, "entra-basic", "third-password-0123456789"))
	waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, "")
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		if meta.FindStatusCondition(c.Status.Conditions, ConditionStalled) != nil {
			return fmt.Errorf("still stalled: %+v", c.Status.Conditions)
		}
		return nil
	})
}

func TestMissingSecretKeyStalls(t *testing.T) {
	ns := newNamespace(t)
	s := basicSecret(ns, "entra-basic", strongPassword)
	delete(s.Data, "password")
	create(t, s, newConnector(ns, "nokey"))
	c := waitCondition(t, types.NamespacedName{Namespace: ns, Name: "nokey"}, ConditionStalled, metav1.ConditionTrue, ReasonSecretKeyMissing)
	if msg := meta.FindStatusCondition(c.Status.Conditions, ConditionStalled).Message; !strings.Contains(msg, `"password"`) {
		t.Errorf("message does not name the key: %s", msg)
	}
}

func TestConfigMapListIsResolvedAndWatched(t *testing.T) {
	ns := newNamespace(t)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "domains"},
		Data:       map[string]string{"allowed": "contoso.com\n# partners\nfabrikam.com\n"},
	}
	conn := newConnector(ns, "lists")
	conn.Spec.Lists = []apiv1.List{{Name: "allowed", ConfigMapRef: &apiv1.ConfigMapKeyReference{Name: "domains", Key: "allowed"}}}
	conn.Spec.Rules = append(conn.Spec.Rules, apiv1.Rule{
		Name: "domain", When: "!(claims.email.split('@')[1] in lists.allowed)", Block: &apiv1.Outcome{Message: "Use your work account."},
	})
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonConfigMapNotFound)

	create(t, cm)
	waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, "")
	rendered := &corev1.ConfigMap{}
	if err := get(t, types.NamespacedName{Namespace: ns, Name: "lists-config"}, rendered); err != nil {
		t.Fatal(err)
	}
	if cfg := rendered.Data[children.ConfigKey]; !strings.Contains(cfg, "- fabrikam.com") || strings.Contains(cfg, "configMapRef") || strings.Contains(cfg, "partners") {
		t.Errorf("the rendered config must carry the resolved list:\n%s", cfg)
	}
	first := podTemplateHash(t, key)
	cm.Data["allowed"] += "northwind.com\n"
	if err := k8s.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		if podTemplateHash(t, key) == first {
			return fmt.Errorf("a list change did not roll the pods")
		}
		return nil
	})
}

func TestReplicasAndExposureChangesReconcileChildren(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "shape")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	eventually(t, timeout, func() error { return get(t, key, &policyv1.PodDisruptionBudget{}) })

	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Runtime.Replicas = ptr.To(int32(1))
		c.Spec.Exposure.Type = apiv1.ExposureLoadBalancer
		c.Spec.Exposure.TLS = &apiv1.TLS{SecretName: "shape-tls"}
	})
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shape-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}})
	eventually(t, timeout, func() error {
		if err := get(t, key, &policyv1.PodDisruptionBudget{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("PDB still there at one replica (err %v)", err)
		}
		if err := get(t, key, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Ingress still there with LoadBalancer exposure (err %v)", err)
		}
		svc := &corev1.Service{}
		if err := get(t, key, svc); err != nil {
			return err
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.Spec.Ports[0].Port != 443 {
			return fmt.Errorf("service is %s:%d, want LoadBalancer:443", svc.Spec.Type, svc.Spec.Ports[0].Port)
		}
		// The ops port (metrics, probes) must not be published on the public load balancer.
		if len(svc.Spec.Ports) != 1 {
			return fmt.Errorf("the LoadBalancer Service publishes %d ports, want only 443: %+v", len(svc.Spec.Ports), svc.Spec.Ports)
		}
		return nil
	})
	metrics := &corev1.Service{}
	if err := get(t, types.NamespacedName{Namespace: ns, Name: "shape-metrics"}, metrics); err != nil {
		t.Fatalf("metrics Service: %v", err)
	}
	if metrics.Spec.Type != corev1.ServiceTypeClusterIP || len(metrics.Spec.Ports) != 1 || metrics.Spec.Ports[0].Port != children.OpsPort || metrics.Spec.Ports[0].Name != "metrics" {
		t.Errorf("metrics Service is %s %+v, want ClusterIP with port metrics %d", metrics.Spec.Type, metrics.Spec.Ports, children.OpsPort)
	}
	if !metav1.IsControlledBy(metrics, connectorOf(t, key)) {
		t.Error("the metrics Service is not controlled by the connector")
	}
}

func TestChildDriftIsRepaired(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "drift")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	svc := &corev1.Service{}
	eventually(t, timeout, func() error { return get(t, key, svc) })
	if err := k8s.Delete(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		s := &corev1.Service{}
		if err := get(t, key, s); err != nil {
			return err
		}
		if s.UID == svc.UID {
			return fmt.Errorf("not recreated yet")
		}
		return nil
	})
}

// cert-manager is absent when the suite starts; this test installs its real CRDs (read from the
// cert-manager Go module) half-way, so it must not run in parallel with other cert-manager checks.
func TestCertManagerAbsentThenInstalled(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "issued")
	conn.Spec.Exposure.TLS = &apiv1.TLS{IssuerRef: &apiv1.IssuerReference{Name: "letsencrypt", Kind: "ClusterIssuer"}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	c := waitCondition(t, key, ConditionCertificateReady, metav1.ConditionFalse, ReasonCertManagerNotInstalled)
	if meta.FindStatusCondition(c.Status.Conditions, ConditionStalled) != nil {
		t.Error("a missing cert-manager must not stall the connector")
	}
	ing := &networkingv1.Ingress{}
	if err := get(t, key, ing); err != nil {
		t.Fatal(err)
	}
	if len(ing.Spec.TLS) != 1 || ing.Spec.TLS[0].SecretName != "issued-tls" {
		t.Errorf("Ingress TLS = %+v, want the Certificate's Secret issued-tls", ing.Spec.TLS)
	}

	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{os.Getenv("CERT_MANAGER_CRDS")}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install cert-manager CRDs: %v", err)
	}
	// No change to the connector: the CRD appearing must be enough.
	cert := &unstructured.Unstructured{}
	cert.SetGroupVersionKind(CertificateGVK)
	eventually(t, timeout, func() error {
		return get(t, types.NamespacedName{Namespace: ns, Name: "issued-tls"}, cert)
	})
	if got, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames"); len(got) != 1 || got[0] != "signup.contoso.example" {
		t.Errorf("dnsNames = %v", got)
	}
	waitCondition(t, key, ConditionCertificateReady, metav1.ConditionFalse, ReasonCertificateNotReady)

	// cert-manager issues it; the Certificate watch brings the news.
	_ = unstructured.SetNestedSlice(cert.Object, []any{map[string]any{
		"type": "Ready", "status": "True", "reason": "Ready", "message": "Certificate is up to date and has not expired",
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
	}}, "status", "conditions")
	if err := k8s.Status().Update(context.Background(), cert); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, key, ConditionCertificateReady, metav1.ConditionTrue, ReasonIssued)
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	// Switching to a user-provided Secret removes our Certificate.
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Exposure.TLS = &apiv1.TLS{SecretName: "byo-tls"}
	})
	eventually(t, timeout, func() error {
		err := get(t, types.NamespacedName{Namespace: ns, Name: "issued-tls"}, cert)
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("Certificate still there (err %v)", err)
		}
		return nil
	})
}

// The Gateway API is absent when the suite starts; this test installs its real CRDs (read from the
// sigs.k8s.io/gateway-api module) half-way.
func TestGatewayAPIAbsentThenInstalled(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "routed")
	conn.Spec.Exposure.Type = apiv1.ExposureGateway
	conn.Spec.Exposure.Gateway = &apiv1.GatewayExposure{ParentRefs: []apiv1.GatewayParentReference{{Name: "public", Namespace: "gateways", SectionName: "https"}}}
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	c := waitCondition(t, key, ConditionRouteReady, metav1.ConditionFalse, ReasonGatewayAPINotInstalled)
	if meta.FindStatusCondition(c.Status.Conditions, ConditionStalled) != nil {
		t.Error("a missing Gateway API must not stall the connector")
	}
	if err := get(t, key, &networkingv1.Ingress{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Gateway-exposed connector must not get an Ingress (err %v)", err)
	}

	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{os.Getenv("GATEWAY_API_CRDS")}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install Gateway API CRDs: %v", err)
	}
	route := &unstructured.Unstructured{}
	route.SetGroupVersionKind(httpRouteKind.gvk)
	eventually(t, timeout, func() error { return get(t, key, route) })
	if h, _, _ := unstructured.NestedStringSlice(route.Object, "spec", "hostnames"); len(h) != 1 || h[0] != "signup.contoso.example" {
		t.Errorf("hostnames = %v", h)
	}
	if !metav1.IsControlledBy(route, connectorOf(t, key)) {
		t.Error("the HTTPRoute is not controlled by the connector")
	}
	c = waitCondition(t, key, ConditionRouteReady, metav1.ConditionFalse, ReasonRouteNotAccepted)
	if msg := meta.FindStatusCondition(c.Status.Conditions, ConditionRouteReady).Message; !strings.Contains(msg, "gateways/public has not reported") {
		t.Errorf("message = %s", msg)
	}
	if c.Status.Endpoints[0] != "https://signup.contoso.example/"+ns+"/routed" {
		t.Errorf("endpoint = %v", c.Status.Endpoints)
	}

	setParentStatus := func(accepted string, reason, message string) {
		t.Helper()
		eventually(t, timeout, func() error {
			if err := get(t, key, route); err != nil {
				return err
			}
			now := time.Now().UTC().Format(time.RFC3339)
			_ = unstructured.SetNestedSlice(route.Object, []any{map[string]any{
				"parentRef":      map[string]any{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateways", "sectionName": "https"},
				"controllerName": "traefik.io/gateway-controller",
				"conditions": []any{
					map[string]any{"type": "Accepted", "status": accepted, "reason": reason, "message": message, "lastTransitionTime": now, "observedGeneration": route.GetGeneration()},
					map[string]any{"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "", "lastTransitionTime": now, "observedGeneration": route.GetGeneration()},
				},
			}}, "status", "parents")
			return k8s.Status().Update(context.Background(), route)
		})
	}
	// A cross-namespace Gateway that does not allow the connector's namespace refuses the route;
	// the refusal is surfaced instead of waiting forever.
	setParentStatus("False", "NotAllowedByListeners", "no listener allows routes from namespace "+ns)
	eventually(t, timeout, func() error {
		c = connectorOf(t, key)
		if cond := meta.FindStatusCondition(c.Status.Conditions, ConditionRouteReady); cond == nil || !strings.Contains(cond.Message, "NotAllowedByListeners") {
			return fmt.Errorf("the Gateway's refusal is not surfaced: %+v", cond)
		}
		return nil
	})
	if !conditionIs(c, ConditionReady, metav1.ConditionFalse) {
		t.Error("Ready must be False while the route is refused")
	}

	setParentStatus("True", "Accepted", "")
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionRouteReady, metav1.ConditionTrue, ReasonAccepted)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	// The endpoint's scheme is the parent Gateway's: a listener serving plain HTTP makes the
	// connector NotHTTPS, switching it to HTTPS makes it Ready again (the Gateway is watched).
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gateways"}})
	gw := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
		"metadata": map[string]any{"namespace": "gateways", "name": "public"},
		"spec": map[string]any{"gatewayClassName": "traefik", "listeners": []any{
			map[string]any{"name": "https", "port": int64(8000), "protocol": "HTTP"},
		}},
	}}
	create(t, gw)
	c = waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonNotHTTPS)
	if c.Status.Endpoints[0] != "http://signup.contoso.example/"+ns+"/routed" {
		t.Errorf("endpoint behind an HTTP listener = %v", c.Status.Endpoints)
	}
	eventually(t, timeout, func() error {
		if err := get(t, client.ObjectKeyFromObject(gw), gw); err != nil {
			return err
		}
		_ = unstructured.SetNestedSlice(gw.Object, []any{map[string]any{"name": "https", "port": int64(8443), "protocol": "HTTPS",
			"tls": map[string]any{"mode": "Terminate", "certificateRefs": []any{map[string]any{"name": "public-tls"}}}}}, "spec", "listeners")
		return k8s.Update(context.Background(), gw)
	})
	c = waitCondition(t, key, ConditionReady, metav1.ConditionTrue, ReasonSucceeded)
	if c.Status.Endpoints[0] != "https://signup.contoso.example/"+ns+"/routed" {
		t.Errorf("endpoint behind an HTTPS listener = %v", c.Status.Endpoints)
	}

	// A client-certificate connector is routed by SNI to the runtime's own TLS listener.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra-ca"}, Data: map[string][]byte{"ca.crt": caPEM(t)}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "routed-tls"}, Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}})
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Authentication = apiv1.Authentication{ClientCertificate: &apiv1.ClientCertificateAuth{SecretRef: apiv1.SecretReference{Name: "entra-ca"}, AllowedSubjects: []string{"entra.contoso.example"}}}
		c.Spec.Exposure.TLS = &apiv1.TLS{SecretName: "routed-tls"}
	})
	tls := &unstructured.Unstructured{}
	tls.SetGroupVersionKind(tlsRouteKind.gvk)
	eventually(t, timeout, func() error { return get(t, key, tls) })
	eventually(t, timeout, func() error {
		if err := get(t, key, route); !apierrors.IsNotFound(err) {
			return fmt.Errorf("the HTTPRoute must go once a TLSRoute replaces it (err %v)", err)
		}
		return nil
	})
}

// waitEvent waits for an events.k8s.io Event about the connector with the reason and a note
// containing text.
func waitEvent(t *testing.T, key types.NamespacedName, reason, text string) {
	t.Helper()
	eventually(t, timeout, func() error {
		var list eventsv1.EventList
		if err := k8s.List(context.Background(), &list, client.InNamespace(key.Namespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Regarding.Name == key.Name && e.Regarding.Kind == "APIConnector" && e.Reason == reason && strings.Contains(e.Note, text) {
				return nil
			}
		}
		return fmt.Errorf("no %s event with %q among %d events", reason, text, len(list.Items))
	})
}

// update edits the connector, retrying on conflicts with the controller's status writes.
func update(t *testing.T, key types.NamespacedName, edit func(*apiv1.APIConnector)) {
	t.Helper()
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		edit(c)
		return k8s.Update(context.Background(), c)
	})
}
