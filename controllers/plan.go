package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// applyConfiguration is a typed client-go apply configuration.
type applyConfiguration interface {
	runtime.ApplyConfiguration
	GetName() *string
	GetKind() *string
	GetAPIVersion() *string
}

// child is one object the connector wants applied.
type child struct {
	gvk  schema.GroupVersionKind
	name string
	ac   runtime.ApplyConfiguration
}

// childRef names a child the connector no longer wants.
type childRef struct {
	kind optionalKind // gvk only for built-in kinds
	name string
}

// plan is every child of one reconcile: what to apply and what to remove. Nothing is written
// until the whole plan is checked (checkOwnership).
type plan struct {
	apply []child
	stale []childRef
	// certificate and route are set when the connector wants one and its kind is installed.
	certificate, route *unstructured.Unstructured
	// recheck is set when an optional kind's CRD is there but its API not served yet.
	recheck time.Duration
}

// installed is Reconciler.installed for the plan: a CRD whose version is not served yet counts
// as not installed and has the connector looked at again shortly.
func (p *plan) installed(ctx context.Context, r *Reconciler, k optionalKind) (bool, error) {
	ok, err := r.installed(ctx, k)
	if errors.Is(err, errNotServedYet) {
		p.recheck = notServedRecheck
		return false, nil
	}
	return ok, err
}

// ensureWatch is Reconciler.ensureWatch for the plan: while the watch settles, the connector is
// looked at again shortly, so a child deleted before the watch delivers events is recreated.
func (p *plan) ensureWatch(r *Reconciler, k optionalKind) error {
	if err := r.ensureWatch(k); err != nil {
		return err
	}
	if r.watchSettling(k) && (p.recheck == 0 || notServedRecheck < p.recheck) {
		p.recheck = notServedRecheck
	}
	return nil
}

func typedChild(ac applyConfiguration) child {
	gv, _ := schema.ParseGroupVersion(ptr.Deref(ac.GetAPIVersion(), ""))
	return child{gvk: gv.WithKind(ptr.Deref(ac.GetKind(), "")), name: ptr.Deref(ac.GetName(), ""), ac: ac}
}

func unstructuredChild(u *unstructured.Unstructured) child {
	return child{gvk: u.GroupVersionKind(), name: u.GetName(), ac: client.ApplyConfigurationFromUnstructured(u)}
}

func builtin(gvk schema.GroupVersionKind, name string) childRef {
	return childRef{kind: optionalKind{gvk: gvk}, name: name}
}

// plan lists the children the spec wants and those it no longer wants (an Ingress after switching
// to LoadBalancer, a PDB at one replica, a Certificate after switching to a user Secret). A
// Certificate or route whose CRD is missing is reported in its condition and left out.
func (r *Reconciler) plan(ctx context.Context, conn *apiv1.APIConnector, config []byte, hash string) (*plan, error) {
	p := &plan{}
	deployment := children.MakeDeployment(conn, r.Options, hash)
	if children.WantsAutoscaler(conn) {
		// A new Deployment starts at minReplicas rather than the API server's default of 1; the
		// next reconcile hands the field over to the autoscaler (handOverReplicas).
		existing, err := r.existing(ctx, appsv1.SchemeGroupVersion.WithKind("Deployment"), conn.Namespace, children.DeploymentName(conn))
		if err != nil {
			return nil, err
		}
		if existing == nil {
			deployment.Spec.WithReplicas(children.MinReplicas(conn))
		}
	}
	for _, ac := range []applyConfiguration{
		children.MakeConfigMap(conn, config),
		deployment,
		children.MakeService(conn),
		children.MakeMetricsService(conn),
	} {
		p.apply = append(p.apply, typedChild(ac))
	}
	if children.WantsIngress(conn) {
		p.apply = append(p.apply, typedChild(children.MakeIngress(conn)))
	} else {
		p.stale = append(p.stale, builtin(networkingv1.SchemeGroupVersion.WithKind("Ingress"), children.IngressName(conn)))
	}
	if children.WantsNetworkPolicy(conn, r.Options) {
		ports, err := r.serviceTargetPorts(ctx, conn)
		if err != nil {
			return nil, err
		}
		p.apply = append(p.apply, typedChild(children.MakeNetworkPolicy(conn, r.Options, ports)))
	} else {
		p.stale = append(p.stale, builtin(networkingv1.SchemeGroupVersion.WithKind("NetworkPolicy"), children.NetworkPolicyName(conn)))
	}
	if children.WantsPodDisruptionBudget(conn) {
		p.apply = append(p.apply, typedChild(children.MakePodDisruptionBudget(conn)))
	} else {
		p.stale = append(p.stale, builtin(policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"), children.PDBName(conn)))
	}

	if hpa := children.MakeHorizontalPodAutoscaler(conn); hpa != nil {
		p.apply = append(p.apply, typedChild(hpa))
	} else {
		p.stale = append(p.stale, builtin(autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"), children.HPAName(conn)))
	}

	// A PodMonitor only when the operator makes them and the Prometheus Operator is installed;
	// nothing to report otherwise (scraping is the platform's business, not the connector's).
	if pm := children.MakePodMonitor(conn, r.Options); pm == nil {
		p.stale = append(p.stale, childRef{podMonitorKind, children.PodMonitorName(conn)})
	} else {
		installed, err := p.installed(ctx, r, podMonitorKind)
		if err != nil {
			return nil, err
		}
		if installed {
			if err := p.ensureWatch(r, podMonitorKind); err != nil {
				return nil, err
			}
			p.apply = append(p.apply, unstructuredChild(pm))
		}
	}

	if cert := children.MakeCertificate(conn); cert == nil {
		meta.RemoveStatusCondition(&conn.Status.Conditions, ConditionCertificateReady)
		p.stale = append(p.stale, childRef{certificateKind, children.CertificateName(conn)})
	} else {
		installed, err := p.installed(ctx, r, certificateKind)
		if err != nil {
			return nil, err
		}
		if installed {
			if err := p.ensureWatch(r, certificateKind); err != nil {
				return nil, err
			}
			p.certificate = cert
			p.apply = append(p.apply, unstructuredChild(cert))
		} else {
			setCondition(conn, ConditionCertificateReady, metav1.ConditionFalse, ReasonCertManagerNotInstalled,
				"spec.exposure.tls.issuerRef needs cert-manager, which is not installed; install it or set spec.exposure.tls.secretName")
		}
	}

	route := children.MakeRoute(conn)
	for _, k := range []optionalKind{httpRouteKind, tlsRouteKind} {
		if route == nil || k.gvk.Kind != route.GetKind() {
			// The route kinds the connector no longer wants (switched exposure, or TLS mode).
			p.stale = append(p.stale, childRef{k, children.RouteName(conn)})
		}
	}
	if route == nil {
		meta.RemoveStatusCondition(&conn.Status.Conditions, ConditionRouteReady)
		return p, nil
	}
	k := routeKindOf(route.GetKind())
	installed, err := p.installed(ctx, r, k)
	if err != nil {
		return nil, err
	}
	if !installed {
		setCondition(conn, ConditionRouteReady, metav1.ConditionFalse, ReasonGatewayAPINotInstalled,
			fmt.Sprintf("spec.exposure.type Gateway needs the Gateway API's %s CRD, which is not installed", route.GetKind()))
		return p, nil
	}
	if err := p.ensureWatch(r, k); err != nil {
		return nil, err
	}
	p.route = route
	p.apply = append(p.apply, unstructuredChild(route))
	return p, nil
}

// childConflictRecheck is how often a connector blocked by another owner's object looks again.
const childConflictRecheck = 30 * time.Second

// checkOwnership records a ChildConflict problem for every object the plan would write that
// exists and is not controlled by this connector: someone else's Service or Ingress of the same
// name is never rewritten, adopted or (through garbage collection) deleted.
func (r *Reconciler) checkOwnership(ctx context.Context, s *scope, p *plan) error {
	for _, c := range p.apply {
		existing, err := r.existing(ctx, c.gvk, s.conn.Namespace, c.name)
		if err != nil {
			return err
		}
		if existing == nil || metav1.IsControlledBy(existing, s.conn) {
			continue
		}
		// Only our own children are watched, so whether the other object went away is polled.
		s.recheck = childConflictRecheck
		s.stall(ReasonChildConflict, fmt.Sprintf("%s %q already exists and %s; it is left untouched: delete or rename it, or give the connector another name",
			c.gvk.Kind, c.name, controlledBy(existing)))
	}
	return nil
}

// existing reads an object's metadata from the informer the controller already runs for its kind:
// typed for Deployments, unstructured for the optional kinds, metadata-only for the rest. Nil when
// there is none.
func (r *Reconciler) existing(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) (client.Object, error) {
	var obj client.Object
	switch {
	case gvk.Group == appsv1.GroupName && gvk.Kind == "Deployment":
		obj = &appsv1.Deployment{}
	case isOptionalKind(gvk):
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		obj = u
	default:
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(gvk)
		obj = m
	}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read %s %s: %w", gvk.Kind, name, err)
	}
	return obj, nil
}

func isOptionalKind(gvk schema.GroupVersionKind) bool {
	for _, k := range optionalKinds {
		if k.gvk == gvk {
			return true
		}
	}
	return false
}

// controlledBy describes who controls an object, for a conflict message.
func controlledBy(obj client.Object) string {
	if ref := metav1.GetControllerOf(obj); ref != nil {
		return fmt.Sprintf("is controlled by %s %q", ref.Kind, ref.Name)
	}
	if len(obj.GetOwnerReferences()) > 0 {
		owners := make([]string, 0, len(obj.GetOwnerReferences()))
		for _, o := range obj.GetOwnerReferences() {
			owners = append(owners, fmt.Sprintf("%s %q", o.Kind, o.Name))
		}
		return "is owned by " + strings.Join(owners, ", ")
	}
	return "was not created by this connector"
}

// applyPlan server-side applies every child as our field owner, taking over fields someone else
// changed (the connector is the source of truth for its children), then removes stale children.
func (r *Reconciler) applyPlan(ctx context.Context, conn *apiv1.APIConnector, p *plan) error {
	if err := r.handOverReplicas(ctx, conn); err != nil {
		return err
	}
	for _, c := range p.apply {
		if err := r.Client.Apply(ctx, c.ac, client.FieldOwner(children.FieldOwner), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", c.gvk.Kind, c.name, err)
		}
	}
	for _, ref := range p.stale {
		if ref.kind.crd != "" {
			if err := r.deleteIfInstalled(ctx, conn, ref.kind, ref.name); err != nil {
				return err
			}
			continue
		}
		if err := r.deleteOwned(ctx, conn, ref.kind.gvk, ref.name); err != nil {
			return err
		}
	}
	return nil
}

// deleteOwned deletes a child we no longer want, but only if we control it. It reads metadata
// only, from the informers the Owns watches already run.
func (r *Reconciler) deleteOwned(ctx context.Context, conn *apiv1.APIConnector, gvk schema.GroupVersionKind, name string) error {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(gvk)
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: name}, obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(obj, conn) {
		return nil
	}
	if err := r.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete %s %s: %w", gvk.Kind, name, err)
	}
	return nil
}

// handOverReplicas gives the Deployment's spec.replicas to the autoscaler. With autoscaling the
// operator's apply leaves the field out; were the operator its only owner, the API server would
// then remove it and default it to 1 pod until the autoscaler's next pass. So while the operator
// owns it (before autoscaling was turned on, or after stopRuntime scaled to 0) another field
// manager, ReplicasHandoverOwner, first applies the current count within the autoscaler's bounds;
// the autoscaler's scale updates take the field from that manager. Without autoscaling the
// operator's apply, forced, takes the field back.
func (r *Reconciler) handOverReplicas(ctx context.Context, conn *apiv1.APIConnector) error {
	a := conn.Spec.Runtime.Autoscaling
	if a == nil {
		return nil
	}
	d := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: children.DeploymentName(conn)}, d); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !metav1.IsControlledBy(d, conn) || !ownsReplicas(d, children.FieldOwner) {
		return nil
	}
	n := min(max(ptr.Deref(d.Spec.Replicas, 1), a.MinReplicas), a.MaxReplicas)
	ac := appsv1ac.Deployment(d.Name, d.Namespace).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(n))
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(children.ReplicasHandoverOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("hand the replicas of Deployment %s over to the autoscaler: %w", d.Name, err)
	}
	return nil
}

// ownsReplicas says whether the field manager (by any operation) owns the Deployment's spec.replicas.
func ownsReplicas(d *appsv1.Deployment, manager string) bool {
	for _, f := range d.ManagedFields {
		if f.Manager != manager || f.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Spec map[string]json.RawMessage `json:"f:spec"`
		}
		if json.Unmarshal(f.FieldsV1.GetRawBytes(), &fields) == nil && fields.Spec["f:replicas"] != nil {
			return true
		}
	}
	return false
}
