package controllers

import (
	"testing"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// gather returns the suite reconciler's metric family name, or nil.
func gather(t *testing.T, name string) *dto.MetricFamily {
	t.Helper()
	families, err := operatorRegistry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f
		}
	}
	return nil
}

// sample finds the value of the series of family name with every label of want; false if none.
func sample(t *testing.T, name string, want map[string]string) (float64, bool) {
	t.Helper()
	f := gather(t, name)
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// The operator reports each connector's conditions, the count by step and condition, the Stalled
// reasons, the steps' budgets, and how long a generation took to become Ready.
func TestOperatorMetrics(t *testing.T) {
	ns := newNamespace(t)
	readyBefore, _ := sample(t, "apiconnector_connector_ready_duration_seconds", nil)

	ok := newConnector(ns, "measured")
	create(t, basicSecret(ns, "entra-basic", strongPassword), ok)
	stalled := newConnector(ns, "unmeasured")
	stalled.Spec.Authentication.Basic.SecretRef.Name = "missing"
	create(t, stalled)
	okKey, stalledKey := client.ObjectKeyFromObject(ok), client.ObjectKeyFromObject(stalled)
	markDeploymentAvailable(t, okKey)
	waitCondition(t, okKey, ConditionReady, metav1.ConditionTrue, ReasonSucceeded)
	waitCondition(t, stalledKey, ConditionStalled, metav1.ConditionTrue, ReasonSecretNotFound)

	for _, want := range []map[string]string{
		{"namespace": ns, "connector": "measured", "step": "PostAttributeCollection", "condition": "Ready", "status": "True", "reason": ReasonSucceeded},
		{"namespace": ns, "connector": "unmeasured", "condition": "Stalled", "status": "True", "reason": ReasonSecretNotFound},
		{"namespace": ns, "connector": "unmeasured", "condition": "Ready", "status": "False"},
	} {
		if v, found := sample(t, "apiconnector_connector_condition", want); !found || v != 1 {
			t.Errorf("apiconnector_connector_condition%v = %v (found %v), want 1", want, v, found)
		}
	}
	if _, found := sample(t, "apiconnector_connector_condition", map[string]string{"connector": "measured", "condition": "Ready", "status": "False"}); found {
		t.Error("a Ready connector also has a Ready=False series")
	}
	if v, _ := sample(t, "apiconnector_connectors", map[string]string{"step": "PostAttributeCollection", "condition": "Ready", "status": "True"}); v < 1 {
		t.Errorf("apiconnector_connectors{Ready=True} = %v, want at least 1", v)
	}
	if v, _ := sample(t, "apiconnector_connectors_stalled", map[string]string{"reason": ReasonSecretNotFound}); v < 1 {
		t.Errorf("apiconnector_connectors_stalled{reason=SecretNotFound} = %v, want at least 1", v)
	}
	if v, _ := sample(t, "apiconnector_step_budget_seconds", map[string]string{"step": "OnTokenIssuanceStart"}); v != 2 {
		t.Errorf("budget of OnTokenIssuanceStart = %v, want 2", v)
	}
	if after, _ := sample(t, "apiconnector_connector_ready_duration_seconds", nil); after <= readyBefore {
		t.Errorf("the readiness histogram has %v observations, %v before a connector became Ready", after, readyBefore)
	}
	if n, err := testutil.GatherAndCount(operatorRegistry, "apiconnector_connector_condition"); err != nil || n == 0 {
		t.Errorf("GatherAndCount: %d, %v", n, err)
	}
}

// A generation is timed from when the operator first saw it to its first Ready=True; a generation
// already Ready when first seen (after a restart) is not observed, nor is Ready seen again.
func TestReadyDurationIsObservedOncePerGeneration(t *testing.T) {
	m := newOperatorMetrics(nil)
	key := types.NamespacedName{Namespace: "ns", Name: "c"}
	conn := func(gen, observed int64, ready metav1.ConditionStatus) *apiv1.APIConnector {
		c := &apiv1.APIConnector{ObjectMeta: metav1.ObjectMeta{Generation: gen}}
		c.Status.ObservedGeneration = observed
		c.Status.Conditions = []metav1.Condition{{Type: ConditionReady, Status: ready}}
		return c
	}
	t0 := time.Unix(1000, 0)
	count := func() uint64 {
		var out dto.Metric
		if err := m.readyDuration.Write(&out); err != nil {
			t.Fatal(err)
		}
		return out.Histogram.GetSampleCount()
	}
	sum := func() float64 {
		var out dto.Metric
		_ = m.readyDuration.Write(&out)
		return out.Histogram.GetSampleSum()
	}
	// Restart: generation 3 was Ready before the first reconcile.
	m.observeReady(key, conn(3, 3, metav1.ConditionTrue), conn(3, 3, metav1.ConditionTrue), t0)
	if count() != 0 {
		t.Fatal("a generation Ready before the operator saw it was observed")
	}
	// Generation 4: rolling out for 7 s, then Ready; later reconciles observe nothing more.
	m.observeReady(key, conn(4, 3, metav1.ConditionTrue), conn(4, 4, metav1.ConditionFalse), t0.Add(time.Second))
	m.observeReady(key, conn(4, 4, metav1.ConditionFalse), conn(4, 4, metav1.ConditionFalse), t0.Add(3*time.Second))
	m.observeReady(key, conn(4, 4, metav1.ConditionFalse), conn(4, 4, metav1.ConditionTrue), t0.Add(8*time.Second))
	m.observeReady(key, conn(4, 4, metav1.ConditionTrue), conn(4, 4, metav1.ConditionTrue), t0.Add(20*time.Second))
	if count() != 1 || sum() != 7 {
		t.Fatalf("observed %d samples summing to %v s, want one of 7 s", count(), sum())
	}
	m.forget(key)
	if len(m.pending) != 0 {
		t.Errorf("forget kept %v", m.pending)
	}
}
