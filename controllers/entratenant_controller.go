package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/internal/graph"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// EntraOptions say how the operator reaches Microsoft Entra.
type EntraOptions struct {
	// Endpoints, when set, replace every cloud's authority and Microsoft Graph endpoints (a
	// stand-in in tests). EntraTenants only choose among the clouds: a tenant never points the
	// operator at a URL of its choosing.
	Endpoints *graph.Endpoints
	// HTTPClient, when set, carries the operator's requests to Entra (tests: trusting the
	// stand-in's certificate).
	HTTPClient *http.Client
	// Retry, when set, replaces the Graph client's retry policy (tests: shorter delays).
	Retry *policy.RetryOptions
	// ConsistencyWindow is how long after creating an object a 404 for it is taken for Graph's
	// replication lag rather than a deletion outside the cluster. Default 2 minutes.
	ConsistencyWindow time.Duration
}

// WorkloadIdentityAudience is the audience of the ServiceAccount tokens exchanged for Entra tokens
// (the audience Entra's federated credentials expect), and the only one the operator requests.
const WorkloadIdentityAudience = "api://AzureADTokenExchange"

// WorkloadIdentityClientIDAnnotation on a ServiceAccount is its owner's consent to the operator
// exchanging its tokens for the application it names (Azure Workload Identity's annotation).
const WorkloadIdentityClientIDAnnotation = "azure.workload.identity/client-id"

// DefaultEntraResync is how often registrations are read back when the tenant sets no interval.
const DefaultEntraResync = 10 * time.Minute

// Reasons of an EntraTenant's conditions.
const (
	ReasonSignedIn             = "SignedIn"
	ReasonCredentialsInvalid   = "CredentialsInvalid"
	ReasonAuthenticationFailed = "AuthenticationFailed"
)

// EntraTenantFinalizer keeps an EntraTenant while connectors registered through it exist, so they
// can still delete their registrations (when a whole namespace is deleted, for instance).
const EntraTenantFinalizer = "apiconnector.dev/entra-tenant-in-use"

// ReasonInUse: an EntraTenant being deleted waits for the connectors registered through it.
const ReasonInUse = "InUse"

// IndexTenantSecrets: the "namespace/name" of the Secret an EntraTenant's credentials are in.
const IndexTenantSecrets = ".spec.credentials.secretRef"

func resyncInterval(t *apiv1.EntraTenant) time.Duration {
	if t.Spec.ResyncInterval != nil {
		return t.Spec.ResyncInterval.Duration
	}
	return DefaultEntraResync
}

// entraClients holds one Graph client per EntraTenant, so tokens are reused; a client is rebuilt
// when the tenant's spec or its credential changes.
type entraClients struct {
	mu      sync.Mutex
	clients map[types.NamespacedName]entraClientEntry
}

type entraClientEntry struct {
	key    string
	client *graph.Client
}

// entraClient returns the Graph client for the tenant. problem says, without any secret value,
// why the tenant's credentials cannot be used (a missing Secret or key, a ServiceAccount without
// the owner's consent); err is a failure worth retrying.
func (r *Reconciler) entraClient(ctx context.Context, t *apiv1.EntraTenant) (gc *graph.Client, problem string, err error) {
	creds := graph.Credentials{TenantID: t.Spec.TenantID, ClientID: t.Spec.ClientID}
	h := sha256.New()
	spec, _ := json.Marshal(t.Spec)
	h.Write(spec)
	c := t.Spec.Credentials
	readSecret := func(name string, keys ...string) (map[string][]byte, string, error) {
		sec := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: name}, sec)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("Secret %q not found", name), nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read Secret %q: %w", name, err)
		}
		for _, k := range keys {
			if len(sec.Data[k]) == 0 {
				return nil, fmt.Sprintf("Secret %q has no key %q or it is empty", name, k), nil
			}
			h.Write([]byte(k))
			h.Write(sec.Data[k])
		}
		return sec.Data, "", nil
	}
	switch {
	case c.ClientSecret != nil:
		data, problem, err := readSecret(c.ClientSecret.Name, c.ClientSecret.Key)
		if problem != "" || err != nil {
			return nil, problem, err
		}
		creds.ClientSecret = string(data[c.ClientSecret.Key])
	case c.ClientCertificate != nil:
		data, problem, err := readSecret(c.ClientCertificate.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
		if problem != "" || err != nil {
			return nil, problem, err
		}
		creds.CertificatePEM, creds.KeyPEM = data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey]
	case c.WorkloadIdentity != nil:
		name := c.WorkloadIdentity.ServiceAccountName
		sa := &corev1.ServiceAccount{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: t.Namespace, Name: name}, sa)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("ServiceAccount %q not found", name), nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read ServiceAccount %q: %w", name, err)
		}
		if got := sa.Annotations[WorkloadIdentityClientIDAnnotation]; got != t.Spec.ClientID {
			return nil, fmt.Sprintf("ServiceAccount %q is not annotated %s: %s; the annotation is its owner's consent to the operator using its identity", name, WorkloadIdentityClientIDAnnotation, t.Spec.ClientID), nil
		}
		creds.Assertion = r.serviceAccountToken(t.Namespace, name)
	default:
		return nil, "no credentials set", nil
	}
	key := hex.EncodeToString(h.Sum(nil))

	r.entra.mu.Lock()
	defer r.entra.mu.Unlock()
	nn := types.NamespacedName{Namespace: t.Namespace, Name: t.Name}
	if e, ok := r.entra.clients[nn]; ok && e.key == key {
		return e.client, "", nil
	}
	opts := graph.Options{Transport: r.Entra.HTTPClient, Retry: r.Entra.Retry, Observe: func(method string, status int) {
		r.metrics.graphRequests.WithLabelValues(method, strconv.Itoa(status)).Inc()
	}}
	if r.Entra.Endpoints != nil {
		opts.Endpoints = *r.Entra.Endpoints
	} else if opts.Endpoints, err = graph.CloudEndpoints(string(t.Spec.Cloud)); err != nil {
		return nil, err.Error(), nil
	}
	gc, err = graph.New(creds, opts)
	if err != nil {
		return nil, err.Error(), nil // a certificate or key that cannot be parsed
	}
	if r.entra.clients == nil {
		r.entra.clients = map[types.NamespacedName]entraClientEntry{}
	}
	r.entra.clients[nn] = entraClientEntry{key: key, client: gc}
	return gc, "", nil
}

// serviceAccountToken requests, for each token exchange, a short-lived token of the tenant's
// ServiceAccount for Entra's token exchange audience only.
func (r *Reconciler) serviceAccountToken(namespace, name string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{WorkloadIdentityAudience},
			ExpirationSeconds: ptr.To[int64](600),
		}}
		if err := r.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
			return "", fmt.Errorf("request a token for ServiceAccount %s/%s: %w", namespace, name, err)
		}
		return tr.Status.Token, nil
	}
}

// cachedEntraClient is the tenant's client that last signed in, if any.
func (r *Reconciler) cachedEntraClient(key types.NamespacedName) *graph.Client {
	r.entra.mu.Lock()
	defer r.entra.mu.Unlock()
	return r.entra.clients[key].client
}

func (r *Reconciler) forgetTenant(key types.NamespacedName) {
	r.entra.mu.Lock()
	defer r.entra.mu.Unlock()
	delete(r.entra.clients, key)
}

// EntraTenantReconciler reports whether the operator can sign in to each EntraTenant.
type EntraTenantReconciler struct {
	r *Reconciler
}

// +kubebuilder:rbac:groups=apiconnector.dev,resources=entratenants,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=apiconnector.dev,resources=entratenants/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apiconnector.dev,resources=entratenants/finalizers,verbs=update

// Reconcile signs in to the tenant and records the outcome in Ready, Reconciling and Stalled.
func (t *EntraTenantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	r := t.r
	tenant := &apiv1.EntraTenant{}
	if err := r.Client.Get(ctx, req.NamespacedName, tenant); err != nil {
		if apierrors.IsNotFound(err) {
			r.forgetTenant(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !tenant.DeletionTimestamp.IsZero() {
		return t.finalize(ctx, tenant)
	}
	if err := patchFinalizers(ctx, r.Client, tenant, func(o client.Object) bool {
		return controllerutil.AddFinalizer(o, EntraTenantFinalizer)
	}); err != nil {
		return ctrl.Result{}, err
	}
	base := tenant.DeepCopy()
	set := func(typ string, st metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&tenant.Status.Conditions, metav1.Condition{Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: tenant.Generation})
	}
	stalled := func(reason, msg string) {
		set(ConditionReady, metav1.ConditionFalse, reason, msg)
		set(ConditionStalled, metav1.ConditionTrue, reason, msg)
		set(ConditionReconciling, metav1.ConditionFalse, reason, "Stalled: only a change to the tenant, its credentials or the app registration can fix it.")
	}
	var result ctrl.Result
	gc, problem, err := r.entraClient(ctx, tenant)
	if err == nil && problem == "" {
		err = gc.CheckToken(ctx)
		if err != nil && !graph.IsTransient(err) {
			problem, err = "signing in failed: "+err.Error(), nil
		}
	}
	switch {
	case err != nil:
		meta.RemoveStatusCondition(&tenant.Status.Conditions, ConditionStalled)
		set(ConditionReady, metav1.ConditionFalse, ReasonReconcileError, err.Error())
		set(ConditionReconciling, metav1.ConditionTrue, ReasonReconcileError, err.Error())
	case problem != "":
		reason := ReasonCredentialsInvalid
		if gc != nil {
			reason = ReasonAuthenticationFailed
		}
		stalled(reason, problem)
		// A fix in Entra (a federated credential, a consent) is not watched: look again.
		result.RequeueAfter = entraPermanentRecheck
	default:
		meta.RemoveStatusCondition(&tenant.Status.Conditions, ConditionStalled)
		set(ConditionReady, metav1.ConditionTrue, ReasonSignedIn, fmt.Sprintf("Signed in to tenant %s as application %s.", tenant.Spec.TenantID, tenant.Spec.ClientID))
		set(ConditionReconciling, metav1.ConditionFalse, ReasonSignedIn, "Settled.")
		result.RequeueAfter = resyncInterval(tenant)
	}
	tenant.Status.ObservedGeneration = tenant.Generation
	if !equality.Semantic.DeepEqual(base.Status, tenant.Status) {
		if perr := r.Client.Status().Patch(ctx, tenant, client.MergeFrom(base)); perr != nil && !apierrors.IsNotFound(perr) {
			return result, errors.Join(err, fmt.Errorf("patch status: %w", perr))
		}
	}
	return result, err
}

// finalize lets a deleted EntraTenant go once no connector is registered through it; until then it
// stays (its client keeps signing in) and Reconciling says which connectors hold it.
func (t *EntraTenantReconciler) finalize(ctx context.Context, tenant *apiv1.EntraTenant) (ctrl.Result, error) {
	r := t.r
	var list apiv1.APIConnectorList
	if err := r.Client.List(ctx, &list, client.MatchingFields{IndexEntraTenant: tenant.Namespace + "/" + tenant.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list connectors registered through the tenant: %w", err)
	}
	if len(list.Items) > 0 {
		names := make([]string, 0, len(list.Items))
		for _, c := range list.Items {
			names = append(names, c.Name)
		}
		slices.Sort(names)
		base := tenant.DeepCopy()
		// Ready is left as it is: the connectors still sign in through the tenant to delete
		// their registrations.
		meta.SetStatusCondition(&tenant.Status.Conditions, metav1.Condition{Type: ConditionReconciling, Status: metav1.ConditionTrue, Reason: ReasonInUse,
			Message: fmt.Sprintf("Being deleted; kept until the registrations of these connectors are removed from Entra: %s", strings.Join(names, ", ")), ObservedGeneration: tenant.Generation})
		tenant.Status.ObservedGeneration = tenant.Generation
		if !equality.Semantic.DeepEqual(base.Status, tenant.Status) {
			if err := r.Client.Status().Patch(ctx, tenant, client.MergeFrom(base)); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, fmt.Errorf("patch status: %w", err)
			}
		}
		return ctrl.Result{}, nil // the connectors going re-queue the tenant
	}
	err := patchFinalizers(ctx, r.Client, tenant, func(o client.Object) bool {
		return controllerutil.RemoveFinalizer(o, EntraTenantFinalizer)
	})
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

// tenantsOf re-queues the EntraTenants a connector is registered through when the connector goes
// or its registration changes, so a tenant being deleted can go after its last connector.
func tenantsOf(_ context.Context, o client.Object) []reconcile.Request {
	c := o.(*apiv1.APIConnector)
	var out []reconcile.Request
	for _, key := range entraTenantKeys(c) {
		ns, name, _ := strings.Cut(key, "/")
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}})
	}
	return out
}

// SetupEntraTenantWithManager registers the EntraTenant controller, sharing r's Graph clients.
func (r *Reconciler) SetupEntraTenantWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &apiv1.EntraTenant{}, IndexTenantSecrets, func(o client.Object) []string {
		c := o.(*apiv1.EntraTenant).Spec.Credentials
		switch {
		case c.ClientSecret != nil:
			return indexKeys(o.GetNamespace(), []string{c.ClientSecret.Name})
		case c.ClientCertificate != nil:
			return indexKeys(o.GetNamespace(), []string{c.ClientCertificate.Name})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index EntraTenant Secrets: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("entratenant").
		For(&apiv1.EntraTenant{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{},
			predicate.NewPredicateFuncs(func(o client.Object) bool { return !o.GetDeletionTimestamp().IsZero() })))).
		Watches(&apiv1.APIConnector{}, handler.EnqueueRequestsFromMapFunc(tenantsOf), builder.WithPredicates(predicate.Funcs{
			CreateFunc:  func(event.CreateEvent) bool { return false },
			UpdateFunc:  func(e event.UpdateEvent) bool { return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() },
			DeleteFunc:  func(event.DeleteEvent) bool { return true },
			GenericFunc: func(event.GenericEvent) bool { return false },
		})).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			var list apiv1.EntraTenantList
			if err := r.Client.List(ctx, &list, client.MatchingFields{IndexTenantSecrets: o.GetNamespace() + "/" + o.GetName()}); err != nil {
				ctrl.LoggerFrom(ctx).Error(err, "list EntraTenants referencing Secret", "secret", o.GetName())
				return nil
			}
			out := make([]reconcile.Request, 0, len(list.Items))
			for _, t := range list.Items {
				out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: t.Namespace, Name: t.Name}})
			}
			return out
		}), builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		WithOptions(opts).
		Complete(&EntraTenantReconciler{r: r})
}
