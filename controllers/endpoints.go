package controllers

import (
	"context"
	"fmt"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// IndexEndpoint indexes APIConnectors by the host and path Entra ID calls (endpointKey), across
// namespaces, so two connectors claiming one endpoint are found without listing every connector.
const IndexEndpoint = ".spec.exposure.endpoint"

// endpointKey is the host and path a connector is called at; a trailing slash does not make a
// different endpoint (the routes match path prefixes).
func endpointKey(c *apiv1.APIConnector) string {
	path := strings.TrimRight(children.Path(c), "/")
	return c.Spec.Exposure.Host + path + "/"
}

// endpointHolder returns the connector that keeps the endpoint c claims: the oldest of those
// claiming it (then by namespace/name, so every reconcile agrees). Nil when c keeps it.
func (r *Reconciler) endpointHolder(ctx context.Context, c *apiv1.APIConnector) (*apiv1.APIConnector, error) {
	var list apiv1.APIConnectorList
	if err := r.Client.List(ctx, &list, client.MatchingFields{IndexEndpoint: endpointKey(c)}); err != nil {
		return nil, fmt.Errorf("list connectors claiming %s: %w", endpointKey(c), err)
	}
	holder := c
	for i := range list.Items {
		o := &list.Items[i]
		if o.DeletionTimestamp.IsZero() && claimedFirst(o, holder) {
			holder = o
		}
	}
	if holder.Namespace == c.Namespace && holder.Name == c.Name {
		return nil, nil
	}
	return holder, nil
}

// claimedFirst orders connectors claiming one endpoint: creation time, then namespace/name.
func claimedFirst(a, b *apiv1.APIConnector) bool {
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// sameEndpoint maps a connector to the others claiming its endpoint, so the one that lost it is
// reconciled again when the holder moves or goes away (and the holder when a claimant appears).
func (r *Reconciler) sameEndpoint(ctx context.Context, o client.Object) []reconcile.Request {
	c, ok := o.(*apiv1.APIConnector)
	if !ok {
		return nil
	}
	var list apiv1.APIConnectorList
	if err := r.Client.List(ctx, &list, client.MatchingFields{IndexEndpoint: endpointKey(c)}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "list connectors claiming an endpoint", "connector", client.ObjectKeyFromObject(c))
		return nil
	}
	others := list.Items[:0]
	for _, other := range list.Items {
		if other.Namespace != c.Namespace || other.Name != c.Name {
			others = append(others, other)
		}
	}
	return requests(others)
}

// checkEndpoint records an EndpointConflict problem when an earlier connector claims the same host
// and path: only one of them can receive Entra ID's calls, so the later one is not applied. The
// holder gets an event too, once, so both owners learn of the clash.
func (r *Reconciler) checkEndpoint(ctx context.Context, s *scope) error {
	holder, err := r.endpointHolder(ctx, s.conn)
	if err != nil || holder == nil {
		return err
	}
	msg := fmt.Sprintf("the endpoint %s is already claimed by APIConnector %s/%s, created earlier; use another spec.exposure.host or path",
		children.Endpoint(s.conn, true), holder.Namespace, holder.Name)
	s.stall(ReasonEndpointConflict, msg)
	if cond := meta.FindStatusCondition(s.conn.Status.Conditions, ConditionStalled); cond == nil || !strings.Contains(cond.Message, msg) {
		r.Recorder.Eventf(holder, s.conn, corev1.EventTypeWarning, ReasonEndpointConflict, "Reconcile",
			"APIConnector %s/%s also claims the endpoint %s; this connector keeps it", s.conn.Namespace, s.conn.Name, children.Endpoint(s.conn, true))
	}
	return nil
}

// notHTTPSMessage says why the endpoint is plain HTTP and how to fix it.
func notHTTPSMessage(c *apiv1.APIConnector) string {
	where := "the Ingress serves no TLS: set spec.exposure.tls"
	if children.WantsRoute(c) {
		where = "no parent Gateway has an HTTPS listener for the route: add one"
	}
	return fmt.Sprintf("the endpoint %s is plain HTTP and Entra ID only calls HTTPS endpoints; %s, or set spec.exposure.externalTLS if TLS is terminated in front of the cluster",
		children.Endpoint(c, false), where)
}
