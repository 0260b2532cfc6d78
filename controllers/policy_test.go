package controllers

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestAnnotationRefusal(t *testing.T) {
	for _, c := range []struct {
		key     string
		allowed []string
		want    string // a substring of the refusal; "" when allowed
	}{
		{"nginx.ingress.kubernetes.io/limit-rps", DefaultAllowedExposureAnnotations, ""},
		{"nginx.ingress.kubernetes.io/ssl-passthrough", DefaultAllowedExposureAnnotations, ""},
		{"nginx.ingress.kubernetes.io/auth-tls-verify-client", DefaultAllowedExposureAnnotations, ""},
		{"traefik.ingress.kubernetes.io/router.tls", DefaultAllowedExposureAnnotations, ""},
		{"traefik.ingress.kubernetes.io/router.middlewares", DefaultAllowedExposureAnnotations, "do not list it"},
		{"nginx.ingress.kubernetes.io/rewrite-target", DefaultAllowedExposureAnnotations, "do not list it"},
		{"example.com/anything", nil, "do not list it"},
		{"nginx.ingress.kubernetes.io/auth-tls-error-page", DefaultAllowedExposureAnnotations, "do not list it"},
		// The built-in deny list wins over a platform's broad pattern.
		{"nginx.ingress.kubernetes.io/auth-tls-match-cn", []string{"nginx.ingress.kubernetes.io/auth-tls-*"}, "CVE-2025-1097"},
		{"nginx.ingress.kubernetes.io/configuration-snippet", []string{"nginx.ingress.kubernetes.io/*"}, "raw configuration"},
		{"nginx.ingress.kubernetes.io/server-snippet", []string{"*/*"}, "raw configuration"},
		{"nginx.ingress.kubernetes.io/auth-snippet", []string{"*/*"}, "raw configuration"},
		{"nginx.ingress.kubernetes.io/stream-snippet", []string{"*/*"}, "raw configuration"},
		{"nginx.ingress.kubernetes.io/modsecurity-snippet", []string{"*/*"}, "raw configuration"},
		{"nginx.org/server-snippets", []string{"*/*"}, "raw configuration"},
		{"haproxy.org/backend-config-snippet", []string{"*/*"}, "raw configuration"},
		{"haproxy-ingress.github.io/config-backend", []string{"*/*"}, "raw configuration"},
		{"ingress.kubernetes.io/config-global", []string{"*/*"}, "raw configuration"},
		{"nginx.ingress.kubernetes.io/auth-url", []string{"*/*"}, "CVE-2025-24514"},
		{"nginx.ingress.kubernetes.io/mirror-target", []string{"*/*"}, "CVE-2025-1098"},
		{"nginx.ingress.kubernetes.io/mirror-host", []string{"*/*"}, "CVE-2025-1098"},
		{"nginx.ingress.kubernetes.io/auth-proxy-set-headers", []string{"*/*"}, "CVE-2025-15566"},
		{"nginx.ingress.kubernetes.io/permanent-redirect", []string{"*/*"}, "CVE-2023-5044"},
		{"nginx.ingress.kubernetes.io/server-alias", []string{"*/*"}, "other host names"},
		{"server-snippet", []string{"*"}, "raw configuration"},
		{"nginx.ingress.kubernetes.io/limit-rps", []string{"*/*"}, ""},
	} {
		got := annotationRefusal(c.key, c.allowed)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("annotationRefusal(%q, %v) = %q, want %q", c.key, c.allowed, got, c.want)
		}
	}
}

// The message names every refused key and why, and never a value.
func TestAnnotationProblemNamesKeysNotValues(t *testing.T) {
	conn := newConnector("ns", "c")
	conn.Spec.Exposure.Annotations = map[string]string{
		"nginx.ingress.kubernetes.io/limit-rps":             "10",
		"nginx.ingress.kubernetes.io/configuration-snippet": "secret-looking-value-1",
		"example.com/team":                                  "secret-looking-value-2",
	}
	msg := annotationProblem(conn, DefaultAllowedExposureAnnotations)
	for _, want := range []string{`key "example.com/team" is not allowed`, `key "nginx.ingress.kubernetes.io/configuration-snippet" is not allowed`, "raw configuration"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "secret-looking-value") || strings.Contains(msg, "limit-rps") {
		t.Errorf("message names a value or an allowed key: %s", msg)
	}
	conn.Spec.Exposure.Annotations = map[string]string{"nginx.ingress.kubernetes.io/limit-rps": "10"}
	if msg := annotationProblem(conn, DefaultAllowedExposureAnnotations); msg != "" {
		t.Errorf("allowed annotations refused: %s", msg)
	}
	if msg := annotationProblem(conn, nil); msg == "" {
		t.Error("an empty allow-list must allow no annotation")
	}
}

func TestEventNoteFitsTheAPIServerLimit(t *testing.T) {
	short := "spec.runtime.image is not allowed"
	if eventNote(short) != short {
		t.Errorf("a short message was changed: %q", eventNote(short))
	}
	long := strings.Repeat("é", maxEventNote) // 2 bytes each
	note := eventNote(long)
	if len(note) > maxEventNote || !utf8.ValidString(note) || !strings.HasSuffix(note, " ...") {
		t.Errorf("note of %d bytes, valid UTF-8 %v: ...%q", len(note), utf8.ValidString(note), note[len(note)-8:])
	}
}

// An exposure annotation the operator does not allow stalls the connector with a reason that names
// the key (never the value) and a Warning event; the last good Ingress keeps serving unchanged
// until the key is removed.
func TestExposureAnnotationNotAllowedStalls(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "annotated")
	conn.Spec.Exposure.Annotations = map[string]string{"nginx.ingress.kubernetes.io/limit-rps": "10"}
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	ing := &networkingv1.Ingress{}
	eventually(t, timeout, func() error {
		if err := get(t, key, ing); err != nil {
			return err
		}
		if ing.Annotations["nginx.ingress.kubernetes.io/limit-rps"] != "10" {
			return fmt.Errorf("annotations %v", ing.Annotations)
		}
		return nil
	})
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	const value = "proxy_set_header X-Injected-7f3a yes;"
	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Exposure.Annotations["nginx.ingress.kubernetes.io/configuration-snippet"] = value
		c.Spec.Exposure.Annotations["nginx.ingress.kubernetes.io/limit-rps"] = "20"
	})
	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonAnnotationNotAllowed)
	msg := stalledMessage(c)
	if !strings.Contains(msg, `"nginx.ingress.kubernetes.io/configuration-snippet"`) || strings.Contains(msg, "X-Injected-7f3a") {
		t.Errorf("the message must name the key and not the value: %s", msg)
	}
	if !conditionIs(c, ConditionReady, metav1.ConditionFalse) {
		t.Errorf("Ready must be False while stalled: %+v", c.Status.Conditions)
	}
	waitEvent(t, key, ReasonAnnotationNotAllowed, "configuration-snippet")
	var list eventsv1.EventList
	if err := k8s.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if strings.Contains(e.Note, "X-Injected-7f3a") {
			t.Errorf("event %s carries the annotation's value: %s", e.Reason, e.Note)
		}
	}
	// Nothing was applied: the Ingress still has the last accepted annotations.
	if err := get(t, key, ing); err != nil {
		t.Fatal(err)
	}
	if _, ok := ing.Annotations["nginx.ingress.kubernetes.io/configuration-snippet"]; ok || ing.Annotations["nginx.ingress.kubernetes.io/limit-rps"] != "10" {
		t.Errorf("the Ingress changed while the connector was stalled: %v", ing.Annotations)
	}

	update(t, key, func(c *apiv1.APIConnector) {
		delete(c.Spec.Exposure.Annotations, "nginx.ingress.kubernetes.io/configuration-snippet")
	})
	eventually(t, timeout, func() error {
		if err := get(t, key, ing); err != nil {
			return err
		}
		if ing.Annotations["nginx.ingress.kubernetes.io/limit-rps"] != "20" {
			return fmt.Errorf("annotations %v", ing.Annotations)
		}
		return nil
	})
	markDeploymentAvailable(t, key) // the rendered config changed with the annotations
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")
}
