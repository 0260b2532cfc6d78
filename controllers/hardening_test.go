package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// plainHash is what anyone with view access could compute if the published hash were an unkeyed
// SHA-256 (the scheme before it was keyed): the rendered config from the connector's ConfigMap plus
// a guessed Secret.
func plainHash(config []byte, secrets map[string]map[string][]byte) string {
	h := sha256.New()
	children.WriteHashInput(h, config, secrets)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

func waitReplicas(t *testing.T, key types.NamespacedName, want int32) {
	t.Helper()
	eventually(t, timeout, func() error {
		d := &appsv1.Deployment{}
		if err := get(t, key, d); err != nil {
			return err
		}
		if got := ptr.Deref(d.Spec.Replicas, 1); got != want {
			return fmt.Errorf("Deployment replicas = %d, want %d", got, want)
		}
		return nil
	})
}

func stalledMessage(c *apiv1.APIConnector) string {
	if cond := meta.FindStatusCondition(c.Status.Conditions, ConditionStalled); cond != nil {
		return cond.Message
	}
	return ""
}

// The published hash (status and pod template, readable with view) does not let anyone test a
// password guess: even the right password, with the rendered config, does not reproduce it.
func TestConfigHashDoesNotRevealSecrets(t *testing.T) {
	ns := newNamespace(t)
	secret := basicSecret(ns, "entra-basic", strongPassword)
	conn := newConnector(ns, "keyed")
	create(t, secret, conn)
	key := client.ObjectKeyFromObject(conn)
	c := waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, ReasonCompiled)
	eventually(t, timeout, func() error {
		if c = connectorOf(t, key); c.Status.ConfigHash == "" {
			return fmt.Errorf("no configHash yet")
		}
		return nil
	})
	cm := &corev1.ConfigMap{}
	if err := get(t, types.NamespacedName{Namespace: ns, Name: children.ConfigMapName(c)}, cm); err != nil {
		t.Fatal(err)
	}
	config := []byte(cm.Data[children.ConfigKey])
	guess := plainHash(config, map[string]map[string][]byte{"entra-basic": secret.Data})
	if guess == c.Status.ConfigHash || guess == podTemplateHash(t, key) {
		t.Fatal("status.configHash is a plain SHA-256 of the rendered config and the Secret: the password can be guessed offline")
	}

	// A change of the Secret's data still changes the hash and rolls the pods.
	first := podTemplateHash(t, key)
	secret.Data["password"] = []byte("another-strong-password-42")
	if err := k8s.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		if h := podTemplateHash(t, key); h == first || c.Status.ConfigHash != h {
			return fmt.Errorf("pod template hash %s (was %s), status %s", h, first, c.Status.ConfigHash)
		}
		return nil
	})
}

func TestHashKeyIsCreatedOnceAndKept(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	ref := client.ObjectKey{Namespace: ns, Name: DefaultHashKeySecret}
	first, err := EnsureHashKey(ctx, k8s, k8s, ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != children.HashKeySize {
		t.Fatalf("key is %d bytes, want %d", len(first), children.HashKeySize)
	}
	again, err := EnsureHashKey(ctx, k8s, k8s, ref)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(first) {
		t.Fatal("a second start generated a new key: every connector would roll on each operator restart")
	}
	s := &corev1.Secret{}
	if err := get(t, ref, s); err != nil {
		t.Fatal(err)
	}
	if !ptr.Deref(s.Immutable, false) {
		t.Error("the key Secret should be immutable")
	}

	// A key someone shortened is refused, not used.
	short := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "short"}, Data: map[string][]byte{HashKeyDataKey: []byte("abc")}}
	create(t, short)
	if _, err := EnsureHashKey(ctx, k8s, k8s, client.ObjectKeyFromObject(short)); err == nil || !strings.Contains(err.Error(), "delete the Secret") {
		t.Errorf("a 3-byte key must be refused with advice, got %v", err)
	}
}

// A short Basic password never reaches a runtime pod: online guessing is cheap.
func TestWeakBasicPasswordStalls(t *testing.T) {
	ns := newNamespace(t)
	const weak = "s3cret-pass"
	secret := basicSecret(ns, "entra-basic", weak)
	conn := newConnector(ns, "weak")
	create(t, secret, conn)
	key := client.ObjectKeyFromObject(conn)
	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonWeakPassword)
	msg := stalledMessage(c)
	for _, want := range []string{`Secret "entra-basic"`, `"password"`, "at least 16 characters"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, weak) {
		t.Errorf("message quotes the password: %s", msg)
	}
	if !conditionIs(c, ConditionReady, metav1.ConditionFalse) {
		t.Error("Ready must be False")
	}
	if err := get(t, key, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Deployment was created for a weak password (err %v)", err)
	}
	waitEvent(t, key, ReasonWeakPassword, `Secret "entra-basic"`)

	secret.Data["password"] = []byte(strongPassword)
	if err := update2(secret); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, ReasonCompiled)
	eventually(t, timeout, func() error { return get(t, key, &appsv1.Deployment{}) })
	eventually(t, timeout, func() error {
		if m := stalledMessage(connectorOf(t, key)); m != "" {
			return fmt.Errorf("still stalled: %s", m)
		}
		return nil
	})
}

// update2 writes a Secret, rereading it on conflicts.
func update2(s *corev1.Secret) error {
	data := s.Data
	var err error
	for range 10 {
		cur := &corev1.Secret{}
		if err = k8s.Get(context.Background(), client.ObjectKeyFromObject(s), cur); err != nil {
			return err
		}
		cur.Data = data
		if err = k8s.Update(context.Background(), cur); err == nil || !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

// Emptying or deleting the Basic Secret, or a weak new password, stops every runtime pod (running
// pods keep a deleted Secret's files) and the status says which Secret and key; fixing it brings
// the replicas back.
func TestRevokedBasicCredentialsStopTheRuntime(t *testing.T) {
	ns := newNamespace(t)
	secret := basicSecret(ns, "entra-basic", strongPassword)
	conn := newConnector(ns, "revoke")
	create(t, secret, conn)
	key := client.ObjectKeyFromObject(conn)
	waitReplicas(t, key, 2)
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	secret.Data["password"] = []byte{}
	if err := update2(secret); err != nil {
		t.Fatal(err)
	}
	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonSecretKeyMissing)
	if msg := stalledMessage(c); !strings.Contains(msg, `Secret "entra-basic"`) || !strings.Contains(msg, `"password"`) || !strings.Contains(msg, "no runtime pod serves") {
		t.Errorf("message = %s", msg)
	}
	if !conditionIs(c, ConditionReady, metav1.ConditionFalse) {
		t.Error("Ready must be False")
	}
	waitReplicas(t, key, 0)
	waitEvent(t, key, "RuntimeStopped", "Scaled Deployment revoke to 0")

	secret.Data["password"] = []byte(strongPassword)
	if err := update2(secret); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, key, 2)
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	if err := k8s.Delete(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	c = waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonSecretNotFound)
	if msg := stalledMessage(c); !strings.Contains(msg, `Secret "entra-basic" not found`) {
		t.Errorf("message = %s", msg)
	}
	waitReplicas(t, key, 0)
}

// A client-certificate Secret whose ca.crt does not parse stops the runtime, naming the key.
func TestInvalidClientCABundleStopsTheRuntime(t *testing.T) {
	ns := newNamespace(t)
	ca := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra-ca"}, Data: map[string][]byte{"ca.crt": caPEM(t)}}
	conn := newConnector(ns, "mtls")
	conn.Spec.Step = apiv1.StepPostFederationSignup
	conn.Spec.Rules = nil
	conn.Spec.Authentication = apiv1.Authentication{ClientCertificate: &apiv1.ClientCertificateAuth{SecretRef: apiv1.SecretReference{Name: "entra-ca"}, AllowedSubjects: []string{"entra.contoso.example"}}}
	// The runtime terminates TLS for client certificates, so it needs the endpoint's certificate.
	create(t, ca, conn, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "signup-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}})
	key := client.ObjectKeyFromObject(conn)
	waitReplicas(t, key, 2)

	for _, tc := range []struct{ name, data, want string }{
		{"garbage", "not a certificate", "holds no PEM certificate"},
		{"corrupt PEM", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "certificate 1 does not parse"},
		{"a private key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `"PRIVATE KEY"`},
		{"trailing junk", string(caPEM(t)) + "junk", "not PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca.Data["ca.crt"] = []byte(tc.data)
			if err := update2(ca); err != nil {
				t.Fatal(err)
			}
			var c *apiv1.APIConnector
			eventually(t, timeout, func() error {
				c = connectorOf(t, key)
				if msg := stalledMessage(c); !strings.Contains(msg, tc.want) {
					return fmt.Errorf("Stalled message %q lacks %q", msg, tc.want)
				}
				return nil
			})
			cond := meta.FindStatusCondition(c.Status.Conditions, ConditionStalled)
			if cond.Reason != ReasonSecretInvalid || !strings.Contains(cond.Message, `Secret "entra-ca" key "ca.crt"`) {
				t.Errorf("Stalled = %s: %s", cond.Reason, cond.Message)
			}
			waitReplicas(t, key, 0)
		})
	}

	ca.Data["ca.crt"] = caPEM(t)
	if err := update2(ca); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, key, 2)
}

func forwardedConnector(ns, name string, trusted ...string) *apiv1.APIConnector {
	conn := newConnector(ns, name)
	conn.Spec.Step = apiv1.StepPostFederationSignup
	conn.Spec.Rules = nil
	conn.Spec.Authentication = apiv1.Authentication{ClientCertificate: &apiv1.ClientCertificateAuth{
		SecretRef:       apiv1.SecretReference{Name: "entra-ca"},
		AllowedSubjects: []string{"entra.contoso.example"},
		Forwarded: &apiv1.ForwardedClientCertificate{
			Header:                   "X-Forwarded-Tls-Client-Cert",
			TrustedProxies:           trusted,
			IngressNamespaceSelector: metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "traefik"}},
			IngressPodSelector:       metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "traefik"}},
		},
	}}
	return conn
}

// With a forwarded certificate the header is a bearer credential: a NetworkPolicy admits only the
// ingress controller's pods to the runtime's port, and a wide trusted range is warned about.
func TestForwardedCertificateIsFencedByANetworkPolicy(t *testing.T) {
	ns := newNamespace(t)
	conn := forwardedConnector(ns, "fwd", "10.0.0.0/8")
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra-ca"}, Data: map[string][]byte{"ca.crt": caPEM(t)}}, conn)
	key := client.ObjectKeyFromObject(conn)

	metrics := "in 9090/TCP from [ns " + formatSelector(t, children.DefaultMetricsNamespaces) + "]; out 53/UDP,53/TCP to []"
	np := waitPolicy(t, key, "in 8080/TCP from [ns kubernetes.io/metadata.name=traefik & pods app.kubernetes.io/name=traefik]; "+metrics)
	c := connectorOf(t, key)
	if !metav1.IsControlledBy(np, c) {
		t.Error("the NetworkPolicy is not controlled by the connector")
	}
	if got := np.Spec.PodSelector.MatchLabels; got["app.kubernetes.io/instance"] != "fwd" {
		t.Errorf("podSelector = %v, want the connector's pods", got)
	}

	c = waitCondition(t, key, ConditionTrustedProxiesScoped, metav1.ConditionFalse, ReasonTrustedProxiesTooWide)
	if msg := meta.FindStatusCondition(c.Status.Conditions, ConditionTrustedProxiesScoped).Message; !strings.Contains(msg, "10.0.0.0/8") {
		t.Errorf("message does not name the range: %s", msg)
	}
	waitEvent(t, key, ReasonTrustedProxiesTooWide, "10.0.0.0/8")
	// A warning, not a failure: the connector still becomes Ready.
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Authentication.ClientCertificate.Forwarded.TrustedProxies = []string{"10.42.3.0/24", "fd00:10:244:1::/64"}
	})
	waitCondition(t, key, ConditionTrustedProxiesScoped, metav1.ConditionTrue, ReasonScoped)

	// The policy cannot be turned off while forwarded is trusted: the API server refuses it.
	c = connectorOf(t, key)
	c.Spec.Runtime.NetworkPolicy = &apiv1.RuntimeNetworkPolicy{Enabled: ptr.To(false)}
	if err := k8s.Update(t.Context(), c); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "networkPolicy.enabled") {
		t.Errorf("turning the policy off with forwarded: want Invalid naming networkPolicy.enabled, got %v", err)
	}

	// Dropping forwarded (the runtime then terminates TLS) admits the operator's ingress
	// namespaces instead and removes the condition.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fwd-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("y")}})
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Authentication.ClientCertificate.Forwarded = nil
		c.Spec.Exposure.TLS = &apiv1.TLS{SecretName: "fwd-tls"}
	})
	waitPolicy(t, key, "in 8080/TCP from [ns "+formatSelector(t, children.DefaultIngressNamespaces)+"]; "+metrics)
	eventually(t, timeout, func() error {
		if meta.FindStatusCondition(connectorOf(t, key).Status.Conditions, ConditionTrustedProxiesScoped) != nil {
			return fmt.Errorf("TrustedProxiesScoped still set")
		}
		return nil
	})
}

func TestCheckPassword(t *testing.T) {
	for p, ok := range map[string]bool{
		"":                           false,
		"s3cret":                     false,
		"fifteen-chars!!":            false, // 15
		"sixteen-chars!!!":           true,
		strings.Repeat("a", 40):      false, // long, one character
		"abababababababababab":       false, // two characters
		"abcdabcdabcdabcd":           false, // four
		"abcdeabcdeabcdea":           true,  // five
		"ünïcödé-pässwörd":           true,  // 16 characters, more bytes
		"fifteen-chars!!\n":          false, // the runtime strips the newline
		"fifteen-chars!!\r\n":        false, // and a carriage return before it
		"0123456789abcdef0123456789": true,
	} {
		if err := checkPassword([]byte(p)); (err == nil) != ok {
			t.Errorf("checkPassword(%q) = %v, want ok=%v", p, err, ok)
		}
	}
}
