package controllers

import (
	"context"
	"fmt"
	"slices"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Field indexes on APIConnector: the "namespace/name" of every Secret and ConfigMap it references,
// of every Gateway its route attaches to, and of every cluster Service its calls and event sinks
// connect to (whose target ports its NetworkPolicy admits), so a change to one enqueues only the
// connectors that use it.
const (
	IndexSecrets    = ".spec.secretRefs"
	IndexConfigMaps = ".spec.configMapRefs"
	IndexGateways   = ".spec.exposure.gateway.parentRefs"
	IndexServices   = ".spec.serviceRefs"
	// IndexEntraTenant: the EntraTenant a connector is registered through (spec, or status once
	// the section is removed and the registration still has to be deleted).
	IndexEntraTenant = ".spec.entra.tenantRef"
)

// LeaderElectionID names the Lease the manager's replicas elect their leader with.
const LeaderElectionID = "apiconnector-operator.apiconnector.dev"

// CacheOptions are the manager's cache settings. Only the operator's own Deployments are cached
// (the rest of the cluster's are none of its business). With namespaces, every namespaced kind is
// listed and watched in those namespaces only, so RoleBindings there are all the RBAC it needs
// besides reading CRDs, which are cluster-scoped (config/namespaced).
func CacheOptions(namespaces []string) cache.Options {
	opts := cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.Deployment{}: {Label: labels.SelectorFromSet(labels.Set{"app.kubernetes.io/managed-by": children.ManagedBy})},
		},
	}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}

// ClientOptions make the manager's client read Secrets and ConfigMaps live (they are watched
// metadata-only), so the manager never holds every Secret it may read in memory.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}, &corev1.ConfigMap{}}}}
}

// SetupWithManager registers the indexes and watches. Children are watched by owner; referenced
// Secrets and ConfigMaps metadata-only (their data is read live, never cached).
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	return r.setup(ctx, mgr, opts, r)
}

// setup lets tests wrap the reconciler (to count reconciles) while keeping the real watches.
func (r *Reconciler) setup(ctx context.Context, mgr ctrl.Manager, opts controller.Options, rec reconcile.Reconciler) error {
	if len(r.Options.HashKey) < children.HashKeySize {
		return fmt.Errorf("the config hash key must be at least %d bytes (EnsureHashKey), got %d", children.HashKeySize, len(r.Options.HashKey))
	}
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(ctx, &apiv1.APIConnector{}, IndexSecrets, func(o client.Object) []string {
		c := o.(*apiv1.APIConnector)
		return indexKeys(c.Namespace, append(children.SecretNames(c), entraSecretNames(c)...))
	}); err != nil {
		return fmt.Errorf("index Secrets: %w", err)
	}
	if err := indexer.IndexField(ctx, &apiv1.APIConnector{}, IndexEntraTenant, func(o client.Object) []string {
		return entraTenantKeys(o.(*apiv1.APIConnector))
	}); err != nil {
		return fmt.Errorf("index EntraTenants: %w", err)
	}
	if err := indexer.IndexField(ctx, &apiv1.APIConnector{}, IndexConfigMaps, func(o client.Object) []string {
		c := o.(*apiv1.APIConnector)
		return indexKeys(c.Namespace, children.ConfigMapNames(c))
	}); err != nil {
		return fmt.Errorf("index ConfigMaps: %w", err)
	}
	if err := indexer.IndexField(ctx, &apiv1.APIConnector{}, IndexServices, func(o client.Object) []string {
		return serviceKeys(o.(*apiv1.APIConnector))
	}); err != nil {
		return fmt.Errorf("index Services: %w", err)
	}

	if err := indexer.IndexField(ctx, &apiv1.APIConnector{}, IndexGateways, func(o client.Object) []string {
		return gatewayKeys(o.(*apiv1.APIConnector))
	}); err != nil {
		return fmt.Errorf("index Gateways: %w", err)
	}
	if err := indexer.IndexField(ctx, &apiv1.APIConnector{}, IndexEndpoint, func(o client.Object) []string {
		return []string{endpointKey(o.(*apiv1.APIConnector))}
	}); err != nil {
		return fmt.Errorf("index endpoints: %w", err)
	}

	ctl, err := ctrl.NewControllerManagedBy(mgr).
		Named("apiconnector").
		For(&apiv1.APIConnector{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			predicate.NewPredicateFuncs(func(o client.Object) bool { return !o.GetDeletionTimestamp().IsZero() })))).
		// A connector that lost its endpoint to an earlier one is reconciled again when that one
		// moves or goes away.
		Watches(&apiv1.APIConnector{}, handler.EnqueueRequestsFromMapFunc(r.sameEndpoint),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}, builder.OnlyMetadata).
		Owns(&networkingv1.Ingress{}, builder.OnlyMetadata).
		Owns(&networkingv1.NetworkPolicy{}, builder.OnlyMetadata).
		Owns(&policyv1.PodDisruptionBudget{}, builder.OnlyMetadata).
		// The autoscaler rewrites its status every pass; only spec edits and deletion matter.
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}, builder.OnlyMetadata, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&corev1.ConfigMap{}, builder.OnlyMetadata).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.referencing(IndexSecrets)),
			builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		// A tenant turning Ready (or not) re-queues the connectors registered through it.
		Watches(&apiv1.EntraTenant{}, handler.EnqueueRequestsFromMapFunc(r.referencing(IndexEntraTenant))).
		WatchesMetadata(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.referencing(IndexConfigMaps)),
			builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		WatchesMetadata(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.referencing(IndexServices)),
			builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		// cert-manager and the Gateway API may be installed after the operator: their CRDs
		// appearing re-queue the connectors that wait for them.
		WatchesMetadata(&apiextensionsv1.CustomResourceDefinition{}, handler.EnqueueRequestsFromMapFunc(r.waitingForOptionalKind),
			builder.WithPredicates(predicate.NewPredicateFuncs(isOptionalCRD))).
		WithOptions(opts).
		Build(rec)
	if err != nil {
		return err
	}
	// Owns(Certificate) or Owns(HTTPRoute) cannot be registered up front: a watch on a missing CRD
	// fails the cache sync. Each starts the first time a connector needs it and its CRD is there.
	r.watch = func(gvk schema.GroupVersionKind) error {
		if gvk == gatewayKind.gvk {
			// Gateways are not ours: their metadata is watched so a spec change (a listener
			// added or switched to HTTPS) re-queues the connectors routed through them.
			gw := &metav1.PartialObjectMetadata{}
			gw.SetGroupVersionKind(gvk)
			return ctl.Watch(source.Kind(mgr.GetCache(), client.Object(gw), handler.EnqueueRequestsFromMapFunc(r.referencing(IndexGateways)),
				predicate.GenerationChangedPredicate{}))
		}
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(gvk)
		return ctl.Watch(source.Kind(mgr.GetCache(), client.Object(obj),
			handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &apiv1.APIConnector{}, handler.OnlyControllerOwner())))
	}
	return nil
}

// gatewayKeys are the "namespace/name" of the Gateways a connector's route attaches to.
func gatewayKeys(c *apiv1.APIConnector) []string {
	if !children.WantsRoute(c) {
		return nil
	}
	out := make([]string, 0, len(c.Spec.Exposure.Gateway.ParentRefs))
	for _, p := range c.Spec.Exposure.Gateway.ParentRefs {
		out = append(out, children.ParentNamespace(c, p)+"/"+p.Name)
	}
	return out
}

// referencing maps a Secret, ConfigMap, Service or Gateway to the connectors whose index lists it.
// Services and Gateways may be used by connectors of any namespace; keys carry the namespace.
func (r *Reconciler) referencing(index string) handler.MapFunc {
	return func(ctx context.Context, o client.Object) []reconcile.Request {
		var list apiv1.APIConnectorList
		key := o.GetNamespace() + "/" + o.GetName()
		if err := r.Client.List(ctx, &list, client.MatchingFields{index: key}); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "list connectors referencing object", "index", index, "object", key)
			return nil
		}
		return requests(list.Items)
	}
}

// entraTenantKeys are the "namespace/name" of the EntraTenant a connector is registered through.
func entraTenantKeys(c *apiv1.APIConnector) []string {
	var names []string
	if c.Spec.Entra != nil {
		names = append(names, c.Spec.Entra.TenantRef.Name)
	}
	if st := c.Status.Entra; st != nil && st.Tenant != "" && !slices.Contains(names, st.Tenant) {
		names = append(names, st.Tenant)
	}
	return indexKeys(c.Namespace, names)
}

// serviceKeys are the "namespace/name" of the cluster Services the connector connects to.
func serviceKeys(c *apiv1.APIConnector) []string {
	var out []string
	for _, d := range children.Destinations(c) {
		if ns, name, ok := apiv1.ClusterServiceHost(d.Host); ok && !slices.Contains(out, ns+"/"+name) {
			out = append(out, ns+"/"+name)
		}
	}
	slices.Sort(out)
	return out
}

func isOptionalCRD(o client.Object) bool {
	for _, k := range optionalKinds {
		if o.GetName() == k.crd {
			return true
		}
	}
	return false
}

// waitingForOptionalKind re-queues the connectors that need the kind whose CRD changed.
func (r *Reconciler) waitingForOptionalKind(ctx context.Context, crd client.Object) []reconcile.Request {
	var list apiv1.APIConnectorList
	if err := r.Client.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list connectors waiting for a CRD", "crd", crd.GetName())
		return nil
	}
	var waiting []apiv1.APIConnector
	for _, c := range list.Items {
		needsCert := c.Spec.Exposure.TLS != nil && c.Spec.Exposure.TLS.IssuerRef != nil
		switch crd.GetName() {
		case certificateKind.crd:
			if needsCert {
				waiting = append(waiting, c)
			}
		case podMonitorKind.crd:
			if r.Options.PodMonitor.Enabled {
				waiting = append(waiting, c)
			}
		default:
			if children.WantsRoute(&c) {
				waiting = append(waiting, c)
			}
		}
	}
	return requests(waiting)
}

func requests(items []apiv1.APIConnector) []reconcile.Request {
	out := make([]reconcile.Request, 0, len(items))
	for _, c := range items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: c.Namespace, Name: c.Name}})
	}
	return out
}

// NewReconciler wires a Reconciler to a manager's clients.
func NewReconciler(mgr ctrl.Manager, opts children.Options) *Reconciler {
	return &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Mapper:    mgr.GetRESTMapper(),
		Recorder:  mgr.GetEventRecorder("apiconnector-controller"),
		Options:   opts,
		metrics:   newOperatorMetrics(mgr.GetClient()),
	}
}
