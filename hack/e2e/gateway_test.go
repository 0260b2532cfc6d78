//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
)

// The Gateway the e2e runs on Traefik's Gateway provider (hack/cluster starts Traefik with
// --providers.kubernetesgateway and the entry point "gateway" on APIC_E2E_GATEWAY, 127.0.0.1:18444:
// a listener binds to the entry point whose port it names).
const (
	gwNS          = "gateways"
	gwName        = "public"
	gwClass       = "traefik"
	gwController  = "traefik.io/gateway-controller"
	gwListener    = "https"
	gwPort        = 18444
	gwDomain      = "gateway.e2e.example"
	gwTLS         = "public-gateway-tls"
	gwAccessLabel = "apic-e2e/gateway-access"
	outsiderNS    = "gw-outsider"
	outsiderName  = "signup-outsider"
	gwAPIVersion  = "gateway.networking.k8s.io/v1"
)

// gatewayCopies are the sample connectors also exposed through the Gateway (as <name>-gw, same
// namespace, host <name>.gateway.e2e.example).
var gatewayCopies = []string{"signup", "input-validation"}

func gwObject(kind, namespace, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": gwAPIVersion, "kind": kind, "spec": spec}}
	u.SetName(name)
	if namespace != "" {
		u.SetNamespace(namespace)
	}
	return u
}

// conditionOf reads one condition from an unstructured object's status.conditions.
func conditionOf(u *unstructured.Unstructured, typ string) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			status, _ = m["status"].(string)
			reason, _ = m["reason"].(string)
			message, _ = m["message"].(string)
			return
		}
	}
	return "", "", ""
}

func (s *suite) getGW(kind, namespace, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(gwAPIVersion)
	u.SetKind(kind)
	return u, s.c.Get(s.ctx, client.ObjectKey{Namespace: namespace, Name: name}, u)
}

// labelNamespace adds a label without taking over the namespace's other labels.
func (s *suite) labelNamespace(t *testing.T, name, key, value string) {
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{key: value}}})
	if err := s.c.Patch(s.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatal(err)
	}
}

// gatewayExposure is the exposure of a copy attached to the e2e Gateway's HTTPS listener.
func gatewayExposure(host, path string) map[string]any {
	e := map[string]any{
		"type": "Gateway",
		"host": host,
		"gateway": map[string]any{"parentRefs": []any{
			map[string]any{"name": gwName, "namespace": gwNS, "sectionName": gwListener},
		}},
	}
	if path != "" {
		e["path"] = path
	}
	return e
}

// gatewayAPI proves that the same sample connector works through Ingress and through Gateway API:
// a GatewayClass and Gateway for Traefik's Gateway provider, copies of samples exposed with
// type Gateway (HTTPRoute), Ready only once Traefik accepted the route, and every documented case
// answered identically through both. A route from a namespace the Gateway does not allow is
// reported as refused in RouteReady.
func (s *suite) gatewayAPI(t *testing.T) {
	if s.gateway == "" {
		t.Fatal("APIC_E2E_GATEWAY is not set")
	}
	start := time.Now()
	// The Gateway: HTTPS listener on Traefik's gateway entry point, certificate from the harness
	// CA, routes only from namespaces labelled apic-e2e/gateway-access=true.
	s.createNamespace(gwNS, nil)
	s.applySecret(gwNS, gwTLS, corev1.SecretTypeTLS, s.serverCert("*."+gwDomain))
	s.apply(gwObject("GatewayClass", "", gwClass, map[string]any{"controllerName": gwController}))
	s.apply(gwObject("Gateway", gwNS, gwName, map[string]any{
		"gatewayClassName": gwClass,
		"listeners": []any{map[string]any{
			"name": gwListener, "protocol": "HTTPS", "port": int64(gwPort), "hostname": "*." + gwDomain,
			"tls": map[string]any{"mode": "Terminate", "certificateRefs": []any{map[string]any{"kind": "Secret", "group": "", "name": gwTLS}}},
			"allowedRoutes": map[string]any{"namespaces": map[string]any{
				"from":     "Selector",
				"selector": map[string]any{"matchLabels": map[string]any{gwAccessLabel: "true"}},
			}},
		}},
	}))
	eventually(t, s.ctx, 2*time.Minute, "GatewayClass accepted and Gateway programmed by Traefik", func() error {
		gc, err := s.getGW("GatewayClass", "", gwClass)
		if err != nil {
			return err
		}
		if st, r, m := conditionOf(gc, "Accepted"); st != "True" {
			return fmt.Errorf("GatewayClass Accepted=%q %s %s", st, r, m)
		}
		gw, err := s.getGW("Gateway", gwNS, gwName)
		if err != nil {
			return err
		}
		for _, typ := range []string{"Accepted", "Programmed"} {
			if st, r, m := conditionOf(gw, typ); st != "True" {
				return fmt.Errorf("Gateway %s=%q %s %s", typ, st, r, m)
			}
		}
		return nil
	})
	s.timings["gateway: GatewayClass accepted, Gateway programmed"] = time.Since(start)

	// The copies, each in its original's namespace (which gets the access label).
	start = time.Now()
	var copies []string
	for _, orig := range gatewayCopies {
		u := s.connectors[orig]
		if u == nil {
			t.Logf("sample connector %s not present, no Gateway copy", orig)
			continue
		}
		s.labelNamespace(t, u.GetNamespace(), gwAccessLabel, "true")
		c := u.DeepCopy()
		c.SetName(orig + "-gw")
		spec := c.Object["spec"].(map[string]any)
		path, _ := spec["exposure"].(map[string]any)["path"].(string)
		// No tls: the Gateway listener's certificate serves HTTPRoutes.
		spec["exposure"] = gatewayExposure(orig+"."+gwDomain, path)
		s.apply(c)
		s.connectors[c.GetName()] = c
		copies = append(copies, c.GetName())
	}
	if len(copies) == 0 {
		t.Fatal("none of the Gateway copies' samples is present")
	}
	// A copy in a namespace the Gateway does not allow.
	s.createNamespace(outsiderNS, nil)
	out := s.connectors[copies[0]].DeepCopy()
	out.SetName(outsiderName)
	out.SetNamespace(outsiderNS)
	if secret := basicSecret(out); secret != "" {
		s.applySecret(outsiderNS, secret, corev1.SecretTypeOpaque, map[string]string{"username": "entra", "password": s.passwords[secret]})
	}
	for _, cm := range configMapRefs(out) {
		var src corev1.ConfigMap
		if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: s.connectors[copies[0]].GetNamespace(), Name: cm}, &src); err != nil {
			t.Fatal(err)
		}
		s.apply(&corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: cm, Namespace: outsiderNS}, Data: src.Data})
	}
	out.Object["spec"].(map[string]any)["exposure"] = gatewayExposure("outsider."+gwDomain, "")
	outsiderApplied := time.Now()
	s.apply(out)

	// Ready (kstatus Current) needs RouteReady=True, which the controller only sets from the
	// route's status.parents written by Traefik.
	for _, name := range copies {
		s.waitCurrent(t, name, 4*time.Minute)
		conn := s.getConnector(t, s.connectors[name].GetNamespace(), name)
		rr := meta.FindStatusCondition(conn.Status.Conditions, "RouteReady")
		if rr == nil || rr.Status != metav1.ConditionTrue {
			t.Fatalf("%s is Current without RouteReady=True: %+v", name, rr)
		}
		route, err := s.getGW(children.HTTPRouteKind, conn.Namespace, children.RouteName(conn))
		if err != nil {
			t.Fatalf("%s: HTTPRoute: %v", name, err)
		}
		parents, _, _ := unstructured.NestedSlice(route.Object, "status", "parents")
		b, _ := json.Marshal(parents)
		if !strings.Contains(string(b), `"controllerName":"`+gwController+`"`) {
			t.Errorf("%s: route status not written by %s: %s", name, gwController, b)
		}
		t.Logf("%s: RouteReady %s/%s %q; endpoint %s; HTTPRoute status.parents %s", name, rr.Status, rr.Reason, rr.Message, s.endpoints[name], b)
		if want := "https://" + strings.TrimSuffix(name, "-gw") + "." + gwDomain + "/"; !strings.HasPrefix(s.endpoints[name], want) {
			t.Errorf("%s: endpoint %q, want prefix %q", name, s.endpoints[name], want)
		}
	}
	s.timings["gateway: copies Ready (route accepted by Traefik) after apply"] = time.Since(start)

	// Routed: the runtime's 401 through the Gateway entry point (404 from Traefik before).
	gwc := s.clientVia(s.gateway)
	for _, name := range copies {
		s.waitRouted(t, gwc, name, "the Gateway")
		a, err := s.call(gwc, name, "entra", "wrong-password", map[string]any{"email": "a@b.example"})
		if err != nil || a.status != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password through the Gateway: %v %s", name, err, a)
		}
	}
	s.timings["gateway: copies routed after apply"] = time.Since(start)

	// The same documented cases through both: the answers must be identical.
	cases, _ := s.documentedCases(t)
	ing := s.entraClient()
	ran := 0
	for _, name := range copies {
		orig := strings.TrimSuffix(name, "-gw")
		pass := s.passwords[basicSecret(s.connectors[orig])]
		for _, tc := range cases[orig] {
			ran++
			t.Run(name+"/"+tc.Name, func(t *testing.T) {
				viaGW, err := s.call(gwc, name, "entra", pass, tc.Claims)
				if err != nil {
					t.Fatal(err)
				}
				viaIngress, err := s.call(ing, orig, "entra", pass, tc.Claims)
				if err != nil {
					t.Fatal(err)
				}
				expectAction(t, viaGW, string(tc.Expect.Action), deref(tc.Expect.UserMessage), tc.Expect.Claims)
				if viaGW.status != viaIngress.status || !reflect.DeepEqual(viaGW.body, viaIngress.body) {
					t.Errorf("Gateway and Ingress answers differ:\n gateway %s\n ingress %s", viaGW, viaIngress)
				}
			})
		}
	}
	if ran == 0 {
		t.Fatal("no documented case for the Gateway copies")
	}
	t.Logf("%d documented sample cases answered identically through the Gateway (HTTPRoute) and the Ingress", ran)

	// Each entry point serves only its own routes: the Gateway host is not routed on the Ingress
	// entry point, the Ingress original not on the Gateway's.
	notRouted := func(what string, hc *http.Client, conn string) {
		a, err := s.call(hc, conn, "", "", map[string]any{})
		switch {
		case err != nil:
			t.Logf("%s: refused before HTTP: %v", what, err)
		case a.status != http.StatusNotFound:
			t.Errorf("%s: want 404, got %s", what, a)
		}
	}
	for _, name := range copies {
		orig := strings.TrimSuffix(name, "-gw")
		notRouted(name+"'s Gateway host on the Ingress entry point", ing, name)
		notRouted(orig+"'s Ingress host on the Gateway entry point", gwc, orig)
	}

	// The refused route: Traefik reports Accepted=False reason NotAllowedByListeners for the
	// parent; the controller copies it into RouteReady and the connector is not Ready.
	var rr *metav1.Condition
	eventually(t, s.ctx, 2*time.Minute, outsiderName+" RouteReady refused by the Gateway", func() error {
		conn := s.getConnector(t, outsiderNS, outsiderName)
		rr = meta.FindStatusCondition(conn.Status.Conditions, "RouteReady")
		route, _ := s.getGW(children.HTTPRouteKind, outsiderNS, children.RouteName(conn))
		parents, _, _ := unstructured.NestedSlice(route.Object, "status", "parents")
		b, _ := json.Marshal(parents)
		if rr == nil || rr.Status != metav1.ConditionFalse || !strings.Contains(rr.Message, "NotAllowedByListeners") {
			return fmt.Errorf("RouteReady %+v; HTTPRoute status.parents %s", rr, b)
		}
		t.Logf("%s/%s: RouteReady %s/%s %q; HTTPRoute status.parents %s", outsiderNS, outsiderName, rr.Status, rr.Reason, rr.Message, b)
		return nil
	})
	s.timings["gateway: refusal (NotAllowedByListeners) in RouteReady after apply"] = time.Since(outsiderApplied)
	conn := s.getConnector(t, outsiderNS, outsiderName)
	if ready := meta.FindStatusCondition(conn.Status.Conditions, "Ready"); ready == nil || ready.Status == metav1.ConditionTrue {
		t.Errorf("refused connector Ready: %+v", ready)
	}
	if !strings.Contains(rr.Message, gwNS+"/"+gwName) {
		t.Errorf("RouteReady message does not name the Gateway: %q", rr.Message)
	}
	// Not routed either.
	s.endpoints[outsiderName] = "https://outsider." + gwDomain + "/" + outsiderNS + "/" + outsiderName
	if len(conn.Status.Endpoints) > 0 {
		s.endpoints[outsiderName] = conn.Status.Endpoints[0]
	}
	s.connectors[outsiderName] = out
	if a, err := s.call(gwc, outsiderName, "", "", map[string]any{}); err != nil || a.status != http.StatusNotFound {
		t.Errorf("refused route answered: %v %s", err, a)
	}
	delete(s.connectors, outsiderName)
	delete(s.endpoints, outsiderName)
}

func (s *suite) getConnector(t *testing.T, namespace, name string) *apiv1.APIConnector {
	t.Helper()
	var c apiv1.APIConnector
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: namespace, Name: name}, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// configMapRefs are the ConfigMaps a connector's lists read.
func configMapRefs(u *unstructured.Unstructured) []string {
	var out []string
	for _, l := range asList(u.Object["spec"].(map[string]any)["lists"]) {
		if ref, ok := l["configMapRef"].(map[string]any); ok {
			if n, _ := ref["name"].(string); n != "" {
				out = append(out, n)
			}
		}
	}
	return out
}
