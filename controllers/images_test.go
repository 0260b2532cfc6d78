package controllers

import (
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestImageAllowed(t *testing.T) {
	const def = "registry.example:5000/apiconnector-runtime:v1.2.3"
	for _, c := range []struct {
		ref      string
		patterns []string
		want     bool
	}{
		{"registry.example:5000/apiconnector-runtime:v1.3.0", nil, true},
		{"registry.example:5000/apiconnector-runtime@sha256:" + strings.Repeat("a", 64), nil, true},
		{"registry.example:5000/apiconnector-runtime", nil, true},
		{"registry.example:5000/apiconnector-runtime-evil:v1", nil, false},
		{"evil.example/apiconnector-runtime:v1.2.3", nil, false},
		{"registry.example:5000/other/apiconnector-runtime:v1.2.3", nil, false},
		{"mirror.example/apic/runtime:v2", []string{"mirror.example/apic/runtime:*"}, true},
		{"mirror.example/apic/runtime:v2", []string{"mirror.example/apic/runtime@sha256:*"}, false},
		{"registry.example:5000/apiconnector-runtime:v1.3.0", []string{"mirror.example/*"}, false},
	} {
		if got := imageAllowed(c.ref, def, c.patterns); got != c.want {
			t.Errorf("imageAllowed(%q, %v) = %v, want %v", c.ref, c.patterns, got, c.want)
		}
	}
}

// spec.runtime.image runs only an allowed image: another one stalls the connector, names the
// reason and creates no Deployment; an allowed one is used.
func TestRuntimeImageNotAllowedStalls(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "image")
	conn.Spec.Runtime.Image = "evil.example/miner:1"
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	c := waitCondition(t, key, ConditionStalled, metav1.ConditionTrue, ReasonImageNotAllowed)
	if msg := stalledMessage(c); !strings.Contains(msg, `"evil.example/miner:1" is not allowed`) {
		t.Errorf("message %q", msg)
	}
	if err := get(t, key, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Deployment was created for a disallowed image (err %v)", err)
	}
	waitEvent(t, key, ReasonImageNotAllowed, "evil.example/miner:1")

	c.Spec.Runtime.Image = imageRepository(runtimeImage) + ":v9"
	if err := k8s.Update(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		d := &appsv1.Deployment{}
		if err := get(t, key, d); err != nil {
			return err
		}
		if img := d.Spec.Template.Spec.Containers[0].Image; img != c.Spec.Runtime.Image {
			return fmt.Errorf("image %s", img)
		}
		return nil
	})
}
