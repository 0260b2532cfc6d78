package controllers

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/apiconnector/operator/controllers/children"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The Prometheus Operator is absent when the suite starts (whose operator runs with
// --pod-monitors): a connector is served without a PodMonitor and nothing is reported; once the
// real CRDs (read from the prometheus-operator Go module) are installed, every connector gets one,
// accepted by the CRD's schema, and a deleted one comes back.
func TestPodMonitorAbsentThenInstalled(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "scraped")
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	markDeploymentAvailable(t, key)
	c := waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")
	if meta.FindStatusCondition(c.Status.Conditions, ConditionStalled) != nil {
		t.Error("a missing Prometheus Operator must not stall the connector")
	}

	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{os.Getenv("PROMETHEUS_OPERATOR_CRDS")}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install the Prometheus Operator's CRDs: %v", err)
	}
	pm := &unstructured.Unstructured{}
	pm.SetGroupVersionKind(PodMonitorGVK)
	// No change to the connector: the CRD appearing must be enough. It re-queues every connector
	// the suite has made so far (all want a PodMonitor), hence the longer wait.
	eventually(t, 3*timeout, func() error {
		return get(t, client.ObjectKey{Namespace: ns, Name: children.PodMonitorName(conn)}, pm)
	})
	if !metav1.IsControlledBy(pm, connectorOf(t, key)) {
		t.Error("the PodMonitor is not controlled by the connector")
	}
	if pm.GetLabels()["release"] != "prometheus" {
		t.Errorf("PodMonitor labels = %v, want release=prometheus from --pod-monitor-labels", pm.GetLabels())
	}
	sel, _, _ := unstructured.NestedStringMap(pm.Object, "spec", "selector", "matchLabels")
	if sel["app.kubernetes.io/instance"] != key.Name {
		t.Errorf("PodMonitor selector = %v, want the connector's pods", sel)
	}
	endpoints, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	if len(endpoints) != 1 || endpoints[0].(map[string]any)["port"] != "ops" {
		t.Errorf("podMetricsEndpoints = %v, want the ops port", endpoints)
	}

	uid := pm.GetUID()
	if err := k8s.Delete(context.Background(), pm); err != nil {
		t.Fatal(err)
	}
	eventually(t, timeout, func() error {
		again := &unstructured.Unstructured{}
		again.SetGroupVersionKind(PodMonitorGVK)
		if err := get(t, key, again); err != nil {
			return err
		}
		if again.GetUID() == uid {
			return fmt.Errorf("not recreated yet")
		}
		return nil
	})
}
