package config_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/internal/graph"
	"github.com/apiconnector/operator/internal/graph/graphtest"
	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"
)

const managerSA = "system:serviceaccount:" + operatorNamespace + ":apiconnector-controller-manager"

// asManager is the manager's ServiceAccount, as the API server sees a pod running under it.
func asManager(cfg *rest.Config) *rest.Config {
	sa := rest.CopyConfig(cfg)
	sa.Impersonate = rest.ImpersonationConfig{UserName: managerSA,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace, "system:authenticated"}}
	return sa
}

// can asks the API server whether user may do verb on resource in namespace ("" = cluster-wide).
func can(t *testing.T, c client.Client, user, verb, group, resource, namespace string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:               user,
		Groups:             []string{"system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: namespace},
	}}
	if strings.HasPrefix(user, "system:serviceaccount:") {
		sar.Spec.Groups = append(sar.Spec.Groups, "system:serviceaccounts", "system:serviceaccounts:"+operatorNamespace)
	}
	if err := c.Create(t.Context(), sar); err != nil {
		t.Fatal(err)
	}
	return sar.Status.Allowed
}

// startManager runs the manager as main.go builds it (cache, client, leader election, hash key,
// controller) with the given client config, until the test ends.
func startManager(t *testing.T, cfg *rest.Config, namespaces []string, entra ...*graphtest.Server) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		LeaderElection:                true,
		LeaderElectionID:              controllers.LeaderElectionID,
		LeaderElectionNamespace:       operatorNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(namespaces),
		Client:                        controllers.ClientOptions(),
		GracefulShutdownTimeout:       ptr.To(5 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hashKey, err := controllers.EnsureHashKey(ctx, mgr.GetClient(), mgr.GetAPIReader(), client.ObjectKey{Namespace: operatorNamespace, Name: controllers.DefaultHashKeySecret})
	if err != nil {
		cancel()
		t.Fatalf("hash key as the manager: %v", err)
	}
	r := controllers.NewReconciler(mgr, children.Options{RuntimeImage: "apiconnector-runtime:dev", HashKey: hashKey})
	for _, s := range entra {
		endpoints := s.Endpoints()
		r.Entra = controllers.EntraOptions{Endpoints: &endpoints, HTTPClient: s.HTTPClient()}
	}
	// Each subtest runs a manager in this process: the controller name repeats.
	if err := r.SetupWithManager(ctx, mgr, controller.Options{SkipNameValidation: ptr.To(true)}); err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := r.SetupEntraTenantWithManager(ctx, mgr, controller.Options{SkipNameValidation: ptr.To(true)}); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(15 * time.Second): // a manager whose caches never synced may not stop
			t.Error("the manager did not stop within 15s")
		}
	})
}

// With only the RBAC config/namespaced or the chart with watchNamespaces installs, the manager,
// as its ServiceAccount, reconciles a connector of a watched namespace to all its children, and
// the ServiceAccount cannot read Secrets anywhere else.
func TestNamespacedManagerRBAC(t *testing.T) {
	cfg, c := apiServer(t)
	const elsewhere = "elsewhere"
	for _, ns := range []string{operatorNamespace, elsewhere} {
		ensureNamespace(t, c, ns)
	}
	other := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: elsewhere, Name: "not-yours"}, StringData: map[string]string{"password": "x"}}
	if err := c.Create(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		name, watched string
		objs          objects
	}{
		{"kustomize", "identity", renderKustomize(t, "namespaced")},
		{"helm", "partners", renderChart(t, map[string]any{"watchNamespaces": []any{"partners"}})},
	} {
		t.Run(src.name, func(t *testing.T) {
			ensureNamespace(t, c, src.watched)
			install(t, c, src.objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
			// The authorizer reads RBAC from an informer.
			eventually(t, 10*time.Second, func() error {
				if !can(t, c, managerSA, "list", "", "secrets", src.watched) {
					return fmt.Errorf("the RBAC is not in force yet")
				}
				return nil
			})
			if can(t, c, managerSA, "list", "", "secrets", "") || can(t, c, managerSA, "get", "", "secrets", elsewhere) {
				t.Error("the manager may read Secrets outside the watched namespace")
			}
			sa, err := client.New(asManager(cfg), client.Options{Scheme: scheme})
			if err != nil {
				t.Fatal(err)
			}
			if err := sa.Get(t.Context(), client.ObjectKeyFromObject(other), &corev1.Secret{}); !apierrors.IsForbidden(err) {
				t.Errorf("the manager's ServiceAccount read a Secret in %s: %v", elsewhere, err)
			}

			standIn := graphtest.New(t)
			startManager(t, asManager(cfg), []string{src.watched}, standIn)
			secret, conn := sample(t, "demo.yaml", src.watched)
			// Certificates exercise the optional-kind watch, started once the connector needs it.
			conn.Spec.Exposure.TLS = &apiv1.TLS{IssuerRef: &apiv1.IssuerReference{Name: "letsencrypt", Kind: "ClusterIssuer"}}
			for _, o := range []client.Object{secret, conn} {
				if err := c.Create(t.Context(), o); err != nil {
					t.Fatal(err)
				}
			}
			cert := &unstructured.Unstructured{}
			cert.SetGroupVersionKind(controllers.CertificateGVK)
			key := client.ObjectKeyFromObject(conn)
			eventually(t, 30*time.Second, func() error {
				for _, o := range []struct {
					name string
					obj  client.Object
				}{
					{children.DeploymentName(conn), &appsv1.Deployment{}},
					{children.ServiceName(conn), &corev1.Service{}},
					{children.ConfigMapName(conn), &corev1.ConfigMap{}},
					{children.IngressName(conn), &networkingv1.Ingress{}},
					{children.CertificateName(conn), cert},
				} {
					if err := c.Get(t.Context(), client.ObjectKey{Namespace: key.Namespace, Name: o.name}, o.obj); err != nil {
						return fmt.Errorf("%T %s: %w", o.obj, o.name, err)
					}
				}
				got := &apiv1.APIConnector{}
				if err := c.Get(t.Context(), key, got); err != nil {
					return err
				}
				if got.Status.ObservedGeneration != got.Generation || meta.FindStatusCondition(got.Status.Conditions, "Reconciling") == nil {
					return fmt.Errorf("status not written: %+v", got.Status)
				}
				return nil
			})
			registerAsManager(t, cfg, c, standIn, src.watched, conn)
		})
	}
}

// registerAsManager registers a connector in Entra (the stand-in) with workload identity, as the
// manager's ServiceAccount with only the installed RBAC: the ServiceAccount token it requests
// for the tenant, its record of the Basic credential, the finalizers and the statuses all need
// rules of their own.
func registerAsManager(t *testing.T, cfg *rest.Config, c client.Client, standIn *graphtest.Server, ns string, conn *apiv1.APIConnector) {
	t.Helper()
	clientID := uuid.NewString()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "entra-registration",
		Annotations: map[string]string{controllers.WorkloadIdentityClientIDAnnotation: clientID}}}
	if err := c.Create(t.Context(), sa); err != nil {
		t.Fatal(err)
	}
	if err := standIn.TrustServiceAccount(t.Context(), cfg, clientID, controllers.WorkloadIdentityAudience, ns, sa.Name); err != nil {
		t.Fatal(err)
	}
	flow := "B2X_1_signup"
	standIn.AddUserFlow(graph.UserFlowB2X, flow)
	tenant := &apiv1.EntraTenant{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "contoso"},
		Spec: apiv1.EntraTenantSpec{TenantID: standIn.TenantID, ClientID: clientID,
			Credentials: apiv1.EntraCredentials{WorkloadIdentity: &apiv1.EntraWorkloadIdentity{ServiceAccountName: sa.Name}}}}
	if err := c.Create(t.Context(), tenant); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKeyFromObject(conn)
	eventually(t, 30*time.Second, func() error {
		got := &apiv1.APIConnector{}
		if err := c.Get(t.Context(), key, got); err != nil {
			return err
		}
		got.Spec.Exposure.TLS = &apiv1.TLS{SecretName: "demo-tls"}
		got.Spec.Entra = &apiv1.EntraRegistration{TenantRef: apiv1.LocalObjectReference{Name: tenant.Name}, UserFlows: []string{flow}}
		return c.Update(t.Context(), got)
	})
	if err := c.Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "demo-tls"}, Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{"tls.crt": []byte("x"), "tls.key": []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	// No kube-controller-manager: write the Deployment status it would, as often as it rolls.
	eventually(t, 60*time.Second, func() error {
		d := &appsv1.Deployment{}
		if err := c.Get(t.Context(), key, d); err != nil {
			return err
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		if d.Status.ObservedGeneration != d.Generation || d.Status.AvailableReplicas != n {
			d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}}
			if err := c.Status().Update(t.Context(), d); err != nil {
				return err
			}
		}
		got := &apiv1.APIConnector{}
		if err := c.Get(t.Context(), key, got); err != nil {
			return err
		}
		cond := meta.FindStatusCondition(got.Status.Conditions, controllers.ConditionEntraRegistered)
		if cond == nil || cond.Status != metav1.ConditionTrue {
			return fmt.Errorf("EntraRegistered = %+v; tenant conditions: %+v", cond, tenantConditions(t, c, tenant))
		}
		if id := standIn.UserFlowConnector(graph.UserFlowB2X, flow, "postAttributeCollection"); id == "" || id != got.Status.Entra.APIConnectorID {
			return fmt.Errorf("user flow has %q, status %+v", id, got.Status.Entra)
		}
		return nil
	})
	// Deleting the connector deletes its registration first (the finalizer).
	if err := c.Delete(t.Context(), conn); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		if err := c.Get(t.Context(), key, &apiv1.APIConnector{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("connector still there: %v", err)
		}
		if n := len(standIn.APIConnectors()); n != 0 {
			return fmt.Errorf("%d API connectors left in Entra", n)
		}
		return nil
	})
}

func tenantConditions(t *testing.T, c client.Client, tenant *apiv1.EntraTenant) []metav1.Condition {
	got := &apiv1.EntraTenant{}
	if err := c.Get(t.Context(), client.ObjectKeyFromObject(tenant), got); err != nil {
		t.Log(err)
	}
	return got.Status.Conditions
}

// The manager's only cluster-scoped need, config/namespaced/manager_crd_role.yaml, is exactly the
// rules of the generated manager role (config/rbac/role.yaml) for cluster-scoped resources, as
// the API server's discovery tells them apart; everything else works through RoleBindings.
func TestCRDRoleIsTheClusterScopedPartOfTheManagerRole(t *testing.T) {
	_, c := apiServer(t)
	read := func(file string) *rbacv1.ClusterRole {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := &rbacv1.ClusterRole{}
		if err := yaml.UnmarshalStrict(b, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	var clusterRules []rbacv1.PolicyRule
	for _, rule := range read("rbac/role.yaml").Rules {
		scoped := map[bool]bool{}
		for _, g := range rule.APIGroups {
			for _, res := range rule.Resources {
				gvk, err := c.RESTMapper().KindFor(schema.GroupVersionResource{Group: g, Resource: strings.Split(res, "/")[0]})
				if err != nil {
					t.Fatalf("%s/%s: %v", g, res, err)
				}
				namespaced, err := c.IsObjectNamespaced(&unstructured.Unstructured{Object: map[string]any{"apiVersion": gvk.GroupVersion().String(), "kind": gvk.Kind}})
				if err != nil {
					t.Fatal(err)
				}
				scoped[namespaced] = true
			}
		}
		if len(scoped) != 1 {
			t.Errorf("rule %v mixes namespaced and cluster-scoped resources", rule)
		}
		if scoped[false] {
			clusterRules = append(clusterRules, rule)
		}
	}
	if got := read("namespaced/manager_crd_role.yaml").Rules; !reflect.DeepEqual(got, clusterRules) {
		t.Errorf("manager_crd_role.yaml rules %v, want role.yaml's cluster-scoped rules %v", got, clusterRules)
	}
}

// The connector roles, as both install paths render them, let whoever is bound to them in a
// namespace manage (editor) or read (viewer) connectors and EntraTenants there and nowhere else, and carry the
// labels that aggregate them into the API server's built-in admin, edit and view roles.
func TestConnectorRolesGrantNamespaceUsers(t *testing.T) {
	_, c := apiServer(t)
	for _, src := range []struct {
		name string
		objs objects
	}{{"kustomize", renderKustomize(t, "default")}, {"helm", renderChart(t, nil)}} {
		t.Run(src.name, func(t *testing.T) {
			team, other := "team-"+src.name, "other-"+src.name
			for _, ns := range []string{team, other} {
				ensureNamespace(t, c, ns)
			}
			roles := objects{}
			for _, k := range []string{"ClusterRole/apiconnector-editor-role", "ClusterRole/apiconnector-viewer-role"} {
				roles[k] = src.objs[k]
			}
			install(t, c, roles, "ClusterRole")
			alice, bob := "alice-"+src.name, "bob-"+src.name
			for user, role := range map[string]string{alice: "apiconnector-editor-role", bob: "apiconnector-viewer-role"} {
				rb := &rbacv1.RoleBinding{
					ObjectMeta: metav1.ObjectMeta{Namespace: team, Name: user},
					RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
					Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: user}},
				}
				if err := c.Create(t.Context(), rb); err != nil {
					t.Fatal(err)
				}
			}
			want := []struct {
				user, verb, resource, ns string
				allowed                  bool
			}{
				{alice, "create", "apiconnectors", team, true},
				{alice, "delete", "apiconnectors", team, true},
				{alice, "get", "apiconnectors/status", team, true},
				{alice, "update", "apiconnectors/status", team, false}, // status is the operator's
				{alice, "create", "apiconnectors", other, false},
				{bob, "list", "apiconnectors", team, true},
				{bob, "get", "apiconnectors/status", team, true},
				{bob, "create", "apiconnectors", team, false},
				{bob, "list", "apiconnectors", other, false},
				{alice, "create", "entratenants", team, true},
				{alice, "update", "entratenants/status", team, false},
				{alice, "create", "entratenants", other, false},
				{bob, "get", "entratenants", team, true},
				{bob, "get", "entratenants/status", team, true},
				{bob, "update", "entratenants", team, false},
			}
			eventually(t, 10*time.Second, func() error {
				for _, w := range want {
					res, sub, _ := strings.Cut(w.resource, "/")
					sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
						User: w.user, Groups: []string{"system:authenticated"},
						ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: w.verb, Group: apiv1.GroupVersion.Group, Resource: res, Subresource: sub, Namespace: w.ns},
					}}
					if err := c.Create(t.Context(), sar); err != nil {
						return err
					}
					if sar.Status.Allowed != w.allowed {
						return fmt.Errorf("%s %s %s in %s: allowed=%v, want %v", w.user, w.verb, w.resource, w.ns, sar.Status.Allowed, w.allowed)
					}
				}
				return nil
			})

			// envtest runs no clusterrole-aggregation controller: check that the built-in roles'
			// aggregation selectors pick the connector roles up.
			for builtin, role := range map[string]string{"admin": "apiconnector-editor-role", "edit": "apiconnector-editor-role", "view": "apiconnector-viewer-role"} {
				cr := &rbacv1.ClusterRole{}
				if err := c.Get(t.Context(), client.ObjectKey{Name: builtin}, cr); err != nil {
					t.Fatal(err)
				}
				ours := &rbacv1.ClusterRole{}
				if err := c.Get(t.Context(), client.ObjectKey{Name: role}, ours); err != nil {
					t.Fatal(err)
				}
				selected := false
				for _, ls := range cr.AggregationRule.ClusterRoleSelectors {
					sel, err := metav1.LabelSelectorAsSelector(&ls)
					if err != nil {
						t.Fatal(err)
					}
					selected = selected || sel.Matches(labels.Set(ours.Labels))
				}
				if !selected {
					t.Errorf("the built-in %s role does not aggregate %s (labels %v)", builtin, role, ours.Labels)
				}
			}
		})
	}
}
