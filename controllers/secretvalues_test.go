package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/runtime/rules"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func secretKeyRef(secret, key string) apiv1.SecretValueSource {
	return apiv1.SecretValueSource{SecretKeyRef: apiv1.SecretKeySelector{Name: secret, Key: key}}
}

// A call's and a sink's Secret headers and query parameters: a missing Secret or key, an empty
// value or one that cannot be a header stalls the connector with a message naming the Secret and
// key; once they are there the keys are mounted into the runtime, and rotating one rolls the pods.
// No value ever reaches the status or an event.
func TestSecretValuesAreCheckedMountedAndRolled(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "fnkeys")
	conn.Spec.Calls = []apiv1.Call{{
		Name: "approve", URL: "https://approvals.contoso.example/api/approve",
		Headers: map[string]string{"Accept": "application/json"},
		SecretValues: apiv1.SecretValues{
			SecretHeaders:     []apiv1.SecretHeader{{Name: "x-functions-key", ValueFrom: secretKeyRef("approvals-key", "key")}},
			SecretQueryParams: []apiv1.SecretQueryParam{{Name: "code", ValueFrom: secretKeyRef("approvals-key", "code")}},
		},
	}}
	conn.Spec.Events = []apiv1.Event{{Name: "audit", Sink: apiv1.Sink{
		URL:          "https://audit.contoso.example/events",
		SecretValues: apiv1.SecretValues{SecretHeaders: []apiv1.SecretHeader{{Name: "x-api-key", ValueFrom: secretKeyRef("audit-key", "api-key")}}},
	}}}
	keys := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "approvals-key"},
		Data:       map[string][]byte{"code": []byte("canary-code-1\n")},
	}
	create(t, basicSecret(ns, "entra-basic", strongPassword), keys, conn)
	key := client.ObjectKeyFromObject(conn)
	stalledWith := func(reason string, says ...string) {
		t.Helper()
		c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, reason)
		for _, s := range says {
			if msg := stalledMessage(c); !strings.Contains(msg, s) {
				t.Errorf("Stalled message %q does not say %q", msg, s)
			}
		}
	}
	setData := func(s *corev1.Secret, k, v string) {
		t.Helper()
		eventually(t, timeout, func() error {
			cur := &corev1.Secret{}
			if err := get(t, client.ObjectKeyFromObject(s), cur); err != nil {
				return err
			}
			cur.Data[k] = []byte(v)
			return k8s.Update(context.Background(), cur)
		})
	}

	stalledWith(ReasonSecretKeyMissing, `Secret "approvals-key" has no key "key"`)
	setData(keys, "key", "canary-key\r\nsecond line")
	stalledWith(ReasonSecretInvalid, `call approve: secret header "x-functions-key": Secret "approvals-key" key "key" is not a valid HTTP header value`)
	setData(keys, "key", "\n")
	stalledWith(ReasonSecretKeyMissing, `Secret "approvals-key" key "key" is empty`)
	setData(keys, "key", "canary-key-1\n")
	stalledWith(ReasonSecretNotFound, `Secret "audit-key" not found`)
	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "audit-key"},
		Data:       map[string][]byte{"api-key": []byte("canary-audit-1")},
	})
	waitCondition(t, key, ConditionRulesValid, metav1.ConditionTrue, "")
	eventually(t, timeout, func() error {
		if msg := stalledMessage(connectorOf(t, key)); msg != "" {
			return fmt.Errorf("still stalled: %s", msg)
		}
		return nil
	})

	// Mounted read-only where the runtime reads them, each key once.
	d := &appsv1.Deployment{}
	if err := get(t, key, d); err != nil {
		t.Fatal(err)
	}
	mounted := map[string]string{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name != "secrets" || v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.Secret == nil {
				continue
			}
			for _, item := range src.Secret.Items {
				mounted[item.Path] = src.Secret.Name + "/" + item.Key
			}
		}
	}
	for path, want := range map[string]string{
		rules.SecretKeyDir + "/approvals-key/key":  "approvals-key/key",
		rules.SecretKeyDir + "/approvals-key/code": "approvals-key/code",
		rules.SecretKeyDir + "/audit-key/api-key":  "audit-key/api-key",
	} {
		if mounted[path] != want {
			t.Errorf("%s mounts %q, want %q; mounted: %v", path, mounted[path], want, mounted)
		}
	}
	for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.Name == "secrets" && !m.ReadOnly {
			t.Error("the secrets volume is mounted writable")
		}
	}

	// Rotating a query parameter's value rolls the pods.
	first := podTemplateHash(t, key)
	setData(keys, "code", "canary-code-2")
	eventually(t, timeout, func() error {
		if podTemplateHash(t, key) == first {
			return fmt.Errorf("rotating approvals-key/code did not change the pod template hash")
		}
		return nil
	})

	c := connectorOf(t, key)
	var events eventsv1.EventList
	if err := k8s.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var seen strings.Builder
	for _, cond := range c.Status.Conditions {
		seen.WriteString(cond.Message + "\n")
	}
	for _, e := range events.Items {
		seen.WriteString(e.Note + "\n")
	}
	if strings.Contains(seen.String(), "canary") {
		t.Errorf("a Secret value reached the status or an event:\n%s", seen.String())
	}
	if !strings.Contains(seen.String(), `"approvals-key"`) {
		t.Errorf("the events do not name the Secret, so this check saw nothing:\n%s", seen.String())
	}
	// The rendered configuration names the Secrets, never their values.
	cm := &corev1.ConfigMap{}
	if err := get(t, client.ObjectKey{Namespace: ns, Name: children.ConfigMapName(conn)}, cm); err != nil {
		t.Fatal(err)
	}
	if cfg := cm.Data[children.ConfigKey]; strings.Contains(cfg, "canary") || !strings.Contains(cfg, "x-functions-key") {
		t.Errorf("rendered configuration:\n%s", cfg)
	}
}
