package controllers

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestParseImagePatterns(t *testing.T) {
	got, err := ParseImagePatterns(" registry.example/runtime:* ,, mirror.example/apic/runtime@sha256:*,")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"registry.example/runtime:*", "mirror.example/apic/runtime@sha256:*"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, err := ParseImagePatterns(""); err != nil || got != nil {
		t.Errorf("empty value: %q, %v", got, err)
	}
	for _, bad := range []string{"registry.example/*/runtime:v1", "registry.example/runtime:v?", "registry.example/runtime:[ab]", `registry.example/runtime:\*`, "**"} {
		if _, err := ParseImagePatterns("ok.example/x:*," + bad); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("%q: err %v, want one naming the pattern", bad, err)
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
