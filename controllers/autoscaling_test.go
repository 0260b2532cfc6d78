package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// hpaManager is the field manager the kube-controller-manager's autoscaler writes the scale with.
const hpaManager = "kube-controller-manager"

// scaleAsTheAutoscaler sets the Deployment's replicas through its scale subresource, as the
// HorizontalPodAutoscaler does (envtest runs no kube-controller-manager).
func scaleAsTheAutoscaler(t *testing.T, key types.NamespacedName, replicas int32) {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := get(t, key, d); err != nil {
		t.Fatal(err)
	}
	scale := &autoscalingv1.Scale{}
	if err := k8s.SubResource("scale").Get(context.Background(), d, scale); err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = replicas
	if err := k8s.SubResource("scale").Update(context.Background(), d, client.WithSubResourceBody(scale), client.FieldOwner(hpaManager)); err != nil {
		t.Fatal(err)
	}
}

// replicaOwners are the field managers owning the Deployment's spec.replicas.
func replicaOwners(d *appsv1.Deployment) []string {
	var out []string
	for _, f := range d.ManagedFields {
		if ownsReplicas(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{f}}}, f.Manager) {
			out = append(out, f.Manager+"/"+string(f.Operation))
		}
	}
	return out
}

func deploymentOf(t *testing.T, key types.NamespacedName) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	if err := get(t, key, d); err != nil {
		t.Fatal(err)
	}
	return d
}

// With spec.runtime.autoscaling the operator creates a HorizontalPodAutoscaler and gives up
// spec.replicas: the count it had stays (no drop to the default of 1), the autoscaler's changes
// stay (no revert, no reconcile loop), the PodDisruptionBudget follows minReplicas, the status
// reports the replicas, and removing autoscaling deletes the autoscaler and takes replicas back.
func TestAutoscalingHandsReplicasToTheAutoscaler(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "scaled")
	conn.Spec.Runtime.Replicas = ptr.To[int32](3)
	create(t, basicSecret(ns, "entra-basic", strongPassword), conn)
	key := client.ObjectKeyFromObject(conn)
	waitReplicas(t, key, 3)
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	update(t, key, func(c *apiv1.APIConnector) {
		c.Spec.Runtime.Autoscaling = &apiv1.RuntimeAutoscaling{MinReplicas: 2, MaxReplicas: 6, TargetCPUUtilizationPercentage: 60}
	})
	hpa := &autoscalingv2.HorizontalPodAutoscaler{}
	eventually(t, timeout, func() error {
		if err := get(t, key, hpa); err != nil {
			return err
		}
		d := deploymentOf(t, key)
		if owners := replicaOwners(d); len(owners) != 1 || owners[0] != children.ReplicasHandoverOwner+"/Apply" {
			return fmt.Errorf("spec.replicas owned by %v, want only %s", owners, children.ReplicasHandoverOwner)
		}
		return nil
	})
	if got := ptr.Deref(deploymentOf(t, key).Spec.Replicas, 0); got != 3 {
		t.Errorf("handing over changed the replicas to %d, want the 3 running", got)
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != key.Name || ref.APIVersion != "apps/v1" ||
		ptr.Deref(hpa.Spec.MinReplicas, 0) != 2 || hpa.Spec.MaxReplicas != 6 ||
		len(hpa.Spec.Metrics) != 1 || ptr.Deref(hpa.Spec.Metrics[0].Resource.Target.AverageUtilization, 0) != 60 {
		t.Errorf("HorizontalPodAutoscaler spec = %+v", hpa.Spec)
	}
	if !metav1.IsControlledBy(hpa, connectorOf(t, key)) {
		t.Error("the HorizontalPodAutoscaler is not controlled by the connector")
	}

	scaleAsTheAutoscaler(t, key, 5)
	eventually(t, timeout, func() error {
		c := connectorOf(t, key)
		if c.Status.DesiredReplicas != 5 {
			return fmt.Errorf("status.desiredReplicas = %d, want 5", c.Status.DesiredReplicas)
		}
		return nil
	})
	markDeploymentAvailable(t, key)
	eventually(t, timeout, func() error {
		c := waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")
		if c.Status.Replicas != 5 || c.Status.ReadyReplicas != 5 {
			return fmt.Errorf("status replicas %d ready %d, want 5 and 5", c.Status.Replicas, c.Status.ReadyReplicas)
		}
		return nil
	})
	// Settled: the autoscaler's count stays and the connector is not reconciled over and over.
	before := counter.get(key)
	time.Sleep(3 * time.Second)
	if n := counter.get(key) - before; n > 1 {
		t.Errorf("%d reconciles in 3 s after the autoscaler's change settled, want at most 1", n)
	}
	d := deploymentOf(t, key)
	if got := ptr.Deref(d.Spec.Replicas, 0); got != 5 {
		t.Errorf("the operator reverted the autoscaler: replicas = %d, want 5", got)
	}
	if owners := replicaOwners(d); len(owners) != 1 || owners[0] != hpaManager+"/Update" {
		t.Errorf("spec.replicas owned by %v, want only the autoscaler", owners)
	}

	// The PodDisruptionBudget follows minReplicas.
	if err := get(t, key, &policyv1.PodDisruptionBudget{}); err != nil {
		t.Fatalf("PodDisruptionBudget at minReplicas 2: %v", err)
	}
	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Runtime.Autoscaling.MinReplicas = 1 })
	eventually(t, timeout, func() error {
		if err := get(t, key, &policyv1.PodDisruptionBudget{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("PodDisruptionBudget still there at minReplicas 1 (err %v)", err)
		}
		if err := get(t, key, hpa); err != nil || ptr.Deref(hpa.Spec.MinReplicas, 0) != 1 {
			return fmt.Errorf("HorizontalPodAutoscaler minReplicas not 1 yet (err %v)", err)
		}
		return nil
	})

	// Without autoscaling the autoscaler goes and the operator owns the replicas again.
	update(t, key, func(c *apiv1.APIConnector) { c.Spec.Runtime.Autoscaling = nil })
	eventually(t, timeout, func() error {
		if err := get(t, key, &autoscalingv2.HorizontalPodAutoscaler{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("HorizontalPodAutoscaler still there (err %v)", err)
		}
		d := deploymentOf(t, key)
		if got := ptr.Deref(d.Spec.Replicas, 0); got != 3 {
			return fmt.Errorf("replicas = %d, want spec.runtime.replicas 3", got)
		}
		if owners := replicaOwners(d); len(owners) != 1 || owners[0] != children.FieldOwner+"/Apply" {
			return fmt.Errorf("spec.replicas owned by %v, want only the operator", owners)
		}
		return nil
	})
}

// A new autoscaled connector's Deployment starts at minReplicas, not at the API server's default
// of one pod, and the autoscaler owns the count from then on. A revoked credential still stops
// the runtime (the autoscaler leaves a Deployment at 0 alone) and the fix brings back minReplicas.
func TestAutoscaledConnectorStartsAtMinReplicasAndStops(t *testing.T) {
	ns := newNamespace(t)
	conn := newConnector(ns, "auto")
	conn.Spec.Runtime.Autoscaling = &apiv1.RuntimeAutoscaling{MinReplicas: 3, MaxReplicas: 8, TargetCPUUtilizationPercentage: 70}
	secret := basicSecret(ns, "entra-basic", strongPassword)
	create(t, secret, conn)
	key := client.ObjectKeyFromObject(conn)
	waitReplicas(t, key, 3)
	eventually(t, timeout, func() error {
		if owners := replicaOwners(deploymentOf(t, key)); len(owners) != 1 || owners[0] != children.ReplicasHandoverOwner+"/Apply" {
			return fmt.Errorf("spec.replicas owned by %v, want only %s", owners, children.ReplicasHandoverOwner)
		}
		return nil
	})
	markDeploymentAvailable(t, key)
	waitCondition(t, key, ConditionReady, metav1.ConditionTrue, "")

	secret.Data["password"] = []byte{}
	if err := update2(secret); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, key, 0)
	secret.Data["password"] = []byte(strongPassword)
	if err := update2(secret); err != nil {
		t.Fatal(err)
	}
	waitReplicas(t, key, 3)
}
