package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// optionalKind is a child kind whose CRD may be missing (cert-manager, Gateway API, Prometheus
// Operator). The operator
// must run without it, notice when it is installed, and only then watch it: a watch on a missing
// CRD would fail the cache sync.
type optionalKind struct {
	crd string
	gvk schema.GroupVersionKind
}

var (
	certificateKind = optionalKind{"certificates.cert-manager.io", schema.GroupVersionKind{Group: "cert-manager.io", Version: "v1", Kind: children.CertificateKind}}
	httpRouteKind   = optionalKind{"httproutes.gateway.networking.k8s.io", schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: children.HTTPRouteKind}}
	tlsRouteKind    = optionalKind{"tlsroutes.gateway.networking.k8s.io", schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: children.TLSRouteKind}}
	// gatewayKind is only read, never written: whether a parent Gateway serves HTTPS.
	gatewayKind    = optionalKind{"gateways.gateway.networking.k8s.io", schema.GroupVersionKind{Group: "gateway.networking.k8s.io", Version: "v1", Kind: "Gateway"}}
	podMonitorKind = optionalKind{"podmonitors.monitoring.coreos.com", schema.GroupVersionKind{Group: "monitoring.coreos.com", Version: "v1", Kind: children.PodMonitorKind}}
	optionalKinds  = []optionalKind{certificateKind, httpRouteKind, tlsRouteKind, gatewayKind, podMonitorKind}
)

// CertificateGVK is cert-manager's Certificate.
var CertificateGVK = certificateKind.gvk

// PodMonitorGVK is the Prometheus Operator's PodMonitor.
var PodMonitorGVK = podMonitorKind.gvk

func routeKindOf(kind string) optionalKind {
	if kind == children.TLSRouteKind {
		return tlsRouteKind
	}
	return httpRouteKind
}

// errNotServedYet: the kind's CRD exists but discovery does not list its version (yet: the API
// server serves a new CRD a moment after the last event about it; or never, for a CRD without
// that version). The kind counts as not installed, and the connector is looked at again soon.
var errNotServedYet = errors.New("CRD present, version not served")

// notServedRecheck is when a connector that found a CRD whose version is not served looks again.
const notServedRecheck = 5 * time.Second

// installed looks for the kind's CRD in the (metadata-only, watched) cache first, so a cluster
// without it costs no discovery request per reconcile; when the CRD is there the RESTMapper, which
// re-runs discovery on a miss, confirms the version is served (errNotServedYet when not).
func (r *Reconciler) installed(ctx context.Context, k optionalKind) (bool, error) {
	crd := &metav1.PartialObjectMetadata{}
	crd.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinition"))
	if err := r.Client.Get(ctx, client.ObjectKey{Name: k.crd}, crd); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("look up CRD %s: %w", k.crd, err)
	}
	_, err := r.Mapper.RESTMapping(k.gvk.GroupKind(), k.gvk.Version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, errNotServedYet
	default:
		return false, fmt.Errorf("discover %s: %w", k.gvk, err)
	}
}

// ensureWatch starts watching the kind's objects owned by connectors, once.
func (r *Reconciler) ensureWatch(k optionalKind) error {
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	if r.watched[k.gvk] || r.watch == nil {
		return nil
	}
	if err := r.watch(k.gvk); err != nil {
		return fmt.Errorf("watch %s: %w", k.gvk.Kind, err)
	}
	if r.watched == nil {
		r.watched = map[schema.GroupVersionKind]bool{}
		r.watchedAt = map[schema.GroupVersionKind]time.Time{}
	}
	r.watched[k.gvk] = true
	r.watchedAt[k.gvk] = time.Now()
	return nil
}

// watchSettle is how long a watch started on a newly installed kind may take to deliver events:
// its informer lists only once the API server serves the kind, and an owned object deleted before
// that is never reported. Connectors using the kind are looked at again until then.
const watchSettle = 30 * time.Second

// watchSettling reports whether the kind's watch started less than watchSettle ago.
func (r *Reconciler) watchSettling(k optionalKind) bool {
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	t, ok := r.watchedAt[k.gvk]
	return ok && time.Since(t) < watchSettle
}

// deleteIfInstalled removes a child of an optional kind we no longer want.
func (r *Reconciler) deleteIfInstalled(ctx context.Context, conn *apiv1.APIConnector, k optionalKind, name string) error {
	ok, err := r.installed(ctx, k)
	if errors.Is(err, errNotServedYet) || err == nil && !ok {
		return nil
	}
	if err != nil {
		return err
	}
	return r.deleteOwned(ctx, conn, k.gvk, name)
}

// observeRoute reads what each parent Gateway says about the route: Ready needs every parent to
// have Accepted it and resolved its backend. A refusal (for example a cross-namespace Gateway whose
// allowedRoutes exclude the connector's namespace) is reported with the Gateway's own reason.
func (r *Reconciler) observeRoute(ctx context.Context, conn *apiv1.APIConnector) error {
	k := routeKindOf(children.RouteKind(conn))
	route := &unstructured.Unstructured{}
	route.SetGroupVersionKind(k.gvk)
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: conn.Namespace, Name: children.RouteName(conn)}, route); err != nil {
		return client.IgnoreNotFound(err)
	}
	statuses, _, _ := unstructured.NestedSlice(route.Object, "status", "parents")
	for _, p := range conn.Spec.Exposure.Gateway.ParentRefs {
		ns := children.ParentNamespace(conn, p)
		gw := ns + "/" + p.Name
		conds := parentConditions(statuses, p, conn.Namespace)
		if conds == nil {
			setCondition(conn, ConditionRouteReady, metav1.ConditionFalse, ReasonRouteNotAccepted,
				fmt.Sprintf("Gateway %s has not reported on the %s yet", gw, k.gvk.Kind))
			return nil
		}
		for _, typ := range []string{"Accepted", "ResolvedRefs"} {
			c := conds[typ]
			if c == nil || c["status"] != "True" {
				reason, msg := "", ""
				if c != nil {
					reason, _ = c["reason"].(string)
					msg, _ = c["message"].(string)
				}
				detail := fmt.Sprintf("Gateway %s: %s is not True", gw, typ)
				if reason != "" {
					detail += " (" + reason + ")"
				}
				if msg != "" {
					detail += ": " + msg
				}
				setCondition(conn, ConditionRouteReady, metav1.ConditionFalse, ReasonRouteNotAccepted, detail)
				return nil
			}
		}
	}
	setCondition(conn, ConditionRouteReady, metav1.ConditionTrue, ReasonAccepted, "Every parent Gateway accepted the route.")
	return nil
}

// parentConditions finds the route status entry of one parent Gateway, by conditions type.
func parentConditions(statuses []any, p apiv1.GatewayParentReference, connNamespace string) map[string]map[string]any {
	wantNS := p.Namespace
	if wantNS == "" {
		wantNS = connNamespace
	}
	for _, s := range statuses {
		st, _ := s.(map[string]any)
		ref, _ := st["parentRef"].(map[string]any)
		ns, _ := ref["namespace"].(string)
		if ns == "" {
			ns = connNamespace
		}
		section, _ := ref["sectionName"].(string)
		if ref["name"] != p.Name || ns != wantNS || (p.SectionName != "" && section != p.SectionName) {
			continue
		}
		out := map[string]map[string]any{}
		list, _ := st["conditions"].([]any)
		for _, c := range list {
			if m, ok := c.(map[string]any); ok {
				if t, ok := m["type"].(string); ok {
					out[t] = m
				}
			}
		}
		return out
	}
	return nil
}

// gatewayServesHTTPS says whether a parent Gateway of the connector's HTTPRoute has an HTTPS
// listener the route attaches to (the one named by sectionName, or any). Gateways are watched by
// metadata (a spec change re-queues the connectors using them) and read live, like Secrets. A
// Gateway that is missing or not readable with the operator's RBAC gives no verdict (true):
// RouteReady already reports a Gateway that does not accept the route.
func (r *Reconciler) gatewayServesHTTPS(ctx context.Context, conn *apiv1.APIConnector) (bool, error) {
	installed, err := r.installed(ctx, gatewayKind)
	if errors.Is(err, errNotServedYet) || err == nil && !installed {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if err := r.ensureWatch(gatewayKind); err != nil {
		return false, err
	}
	for _, p := range conn.Spec.Exposure.Gateway.ParentRefs {
		ns := children.ParentNamespace(conn, p)
		gw := &unstructured.Unstructured{}
		gw.SetGroupVersionKind(gatewayKind.gvk)
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: p.Name}, gw)
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("read Gateway %s/%s: %w", ns, p.Name, err)
		}
		listeners, _, _ := unstructured.NestedSlice(gw.Object, "spec", "listeners")
		for _, l := range listeners {
			m, _ := l.(map[string]any)
			if m["protocol"] == "HTTPS" && (p.SectionName == "" || m["name"] == p.SectionName) {
				return true, nil
			}
		}
	}
	return false, nil
}
