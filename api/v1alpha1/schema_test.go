package v1alpha1_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// The CRD's schema and CEL rules are the first line of defence for users applying YAML, so they are
// proven on a real kube-apiserver, not by reading the generated file.

var k8sClient client.Client
var disco *discovery.DiscoveryClient
var testEnv *envtest.Environment

func TestMain(m *testing.M) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "KUBEBUILDER_ASSETS is not set: run `make test` (it builds kube-apiserver and etcd from source)")
		os.Exit(1)
	}
	if os.Getenv("FLUX_CRDS") == "" {
		fmt.Fprintln(os.Stderr, "FLUX_CRDS is not set: run `make test` (it reads Flux's CRDs from its Go module)")
		os.Exit(1)
	}
	env := &envtest.Environment{
		// Flux's Kustomization CRD validates the Flux sample as a cluster running Flux would.
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases"), os.Getenv("FLUX_CRDS")},
		ErrorIfCRDPathMissing: true,
	}
	testEnv = env
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start envtest:", err)
		os.Exit(1)
	}
	k8sClient, err = client.New(cfg, client.Options{})
	if err == nil {
		disco, err = discovery.NewDiscoveryClientForConfig(cfg)
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, "client:", err)
	} else {
		code = m.Run()
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	os.Exit(code)
}

const validBase = `
apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata:
  name: base
  namespace: default
spec:
  step: PostAttributeCollection
  authentication:
    basic:
      secretRef: {name: entra-basic}
  lists:
  - name: blocked
    values: [mailinator.com]
  rules:
  - name: postal-code
    when: "has(claims.postalCode) && !claims.postalCode.matches('^[0-9]{5}$')"
    validationError:
      message: Please enter a valid postal code.
  exposure:
    host: signup.contoso.example
`

func base(t *testing.T) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(validBase), &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// set walks a dotted path (numeric parts index lists) and sets or, with value nil, deletes.
func set(obj map[string]any, path string, value any) {
	parts := strings.Split(path, ".")
	var cur any = obj
	for i, p := range parts {
		last := i == len(parts)-1
		switch c := cur.(type) {
		case map[string]any:
			if last {
				if value == nil {
					delete(c, p)
				} else {
					c[p] = value
				}
				return
			}
			if _, ok := c[p]; !ok {
				c[p] = map[string]any{}
			}
			cur = c[p]
		case []any:
			var idx int
			fmt.Sscanf(p, "%d", &idx)
			if last {
				c[idx] = value
				return
			}
			cur = c[idx]
		}
	}
}

func validBearer() map[string]any {
	return map[string]any{
		"tenantId": "aaaabbbb-0000-cccc-1111-dddd2222eeee",
		"audience": "00001111-aaaa-2222-bbbb-3333cccc4444",
	}
}

// validForwarded is a forwarded client certificate the API server accepts.
func validForwarded() map[string]any {
	return map[string]any{
		"header":                   "X-Forwarded-Tls-Client-Cert",
		"trustedProxies":           []any{"10.42.0.0/16"},
		"ingressNamespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "traefik"}},
		"ingressPodSelector":       map[string]any{"matchExpressions": []any{map[string]any{"key": "app.kubernetes.io/name", "operator": "In", "values": []any{"traefik"}}}},
	}
}

// setForwarded makes the object a PostFederationSignup client-certificate connector with the
// forwarded settings f.
func setForwarded(o map[string]any, f map[string]any) {
	set(o, "spec.step", "PostFederationSignup")
	set(o, "spec.rules", nil)
	set(o, "spec.authentication", map[string]any{"clientCertificate": map[string]any{
		"secretRef":       map[string]any{"name": "ca"},
		"allowedSubjects": []any{"entra.contoso.example"},
		"forwarded":       f,
	}})
}

func TestForwardedIsValidBehindAnIngress(t *testing.T) {
	obj := base(t)
	setForwarded(obj, validForwarded())
	if err := create(t, obj); err != nil {
		t.Fatalf("a forwarded connector behind an Ingress must be accepted: %v", err)
	}
	set(obj, "spec.exposure.type", "Gateway")
	set(obj, "spec.exposure.gateway", map[string]any{"parentRefs": []any{map[string]any{"name": "public"}}})
	if err := create(t, obj); err != nil {
		t.Fatalf("a forwarded connector behind a Gateway must be accepted: %v", err)
	}
}

// A connector may turn its NetworkPolicy off or on, and keep it on with a forwarded certificate.
func TestNetworkPolicyOptOut(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		obj := base(t)
		set(obj, "spec.runtime.networkPolicy", map[string]any{"enabled": enabled})
		if err := create(t, obj); err != nil {
			t.Errorf("networkPolicy.enabled %v refused: %v", enabled, err)
		}
	}
	obj := base(t)
	setForwarded(obj, validForwarded())
	set(obj, "spec.runtime.networkPolicy", map[string]any{"enabled": true})
	if err := create(t, obj); err != nil {
		t.Errorf("networkPolicy.enabled true with forwarded refused: %v", err)
	}
}

func create(t *testing.T, obj map[string]any) error {
	t.Helper()
	u := &unstructured.Unstructured{Object: obj}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := k8sClient.Create(ctx, u, client.DryRunAll)
	return err
}

// secretValue is a secretHeaders or secretQueryParams entry.
func secretValue(name, secret, key string) map[string]any {
	return map[string]any{"name": name, "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": secret, "key": key}}}
}

// secretCall is a call the API server accepts, with a header and a query parameter from a Secret.
func secretCall() map[string]any {
	return map[string]any{
		"name":              "approve",
		"url":               "https://approvals.contoso.example/api/approve?tenant=contoso",
		"headers":           map[string]any{"Accept": "application/json"},
		"auth":              map[string]any{"type": "Bearer", "secretRef": map[string]any{"name": "approvals-token"}},
		"secretHeaders":     []any{secretValue("X-Functions-Key", "approvals-key", "key")},
		"secretQueryParams": []any{secretValue("code", "approvals-key", "code")},
	}
}

func TestSecretHeadersAndQueryParamsAreAccepted(t *testing.T) {
	obj := base(t)
	set(obj, "spec.calls", []any{secretCall()})
	set(obj, "spec.events", []any{map[string]any{"name": "audit", "sink": map[string]any{
		"url":               "https://audit.contoso.example/events",
		"secretHeaders":     []any{secretValue("x-api-key", "audit-key", "key"), secretValue("Authorization", "audit-key", "sas")},
		"secretQueryParams": []any{secretValue("sig", "audit-key", "sig")},
	}}})
	if err := create(t, obj); err != nil {
		t.Fatalf("a call and a sink with Secret headers and query parameters must be accepted: %v", err)
	}
}

func TestBaseIsValid(t *testing.T) {
	if err := create(t, base(t)); err != nil {
		t.Fatalf("the base object must be valid: %v", err)
	}
}

func TestInvalidObjectsAreRejected(t *testing.T) {
	many := func(n int) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = fmt.Sprintf("v%d.example", i)
		}
		return out
	}
	tests := []struct {
		name string
		edit func(map[string]any)
		// want are substrings of the API server's message: the field path and the reason.
		want []string
	}{
		{"two auth methods", func(o map[string]any) {
			set(o, "spec.authentication.clientCertificate", map[string]any{"secretRef": map[string]any{"name": "ca"}})
		}, []string{"spec.authentication", "exactly one of basic, clientCertificate or bearer must be set"}},
		{"no auth method", func(o map[string]any) {
			set(o, "spec.authentication", map[string]any{})
		}, []string{"spec.authentication", "exactly one of basic, clientCertificate or bearer must be set"}},
		{"no authentication at all", func(o map[string]any) {
			set(o, "spec.authentication", nil)
		}, []string{"spec.authentication", "Required value"}},
		{"unknown step", func(o map[string]any) {
			set(o, "spec.step", "PreSendVerificationCode")
		}, []string{"spec.step", "Unsupported value"}},
		{"unknown connector enforcement", func(o map[string]any) {
			set(o, "spec.enforcement", "DryRun")
		}, []string{"spec.enforcement", "Unsupported value"}},
		{"unknown rule enforcement", func(o map[string]any) {
			set(o, "spec.rules.0.enforcement", "Warn")
		}, []string{"spec.rules[0].enforcement", "Unsupported value"}},
		{"validationError at PostFederationSignup", func(o map[string]any) {
			set(o, "spec.step", "PostFederationSignup")
		}, []string{"spec.rules", "validationError outcomes are only allowed at steps PostAttributeCollection and OnAttributeCollectionSubmit"}},
		{"two outcomes in one rule", func(o map[string]any) {
			set(o, "spec.rules.0.block", map[string]any{"message": "no"})
		}, []string{"spec.rules[0]", "exactly one of block, validationError, migratePassword, updatePassword or retry must be set"}},
		{"rule without outcome", func(o map[string]any) {
			set(o, "spec.rules.0.validationError", nil)
		}, []string{"spec.rules[0]", "exactly one of block, validationError, migratePassword, updatePassword or retry must be set"}},
		{"outcome without message", func(o map[string]any) {
			set(o, "spec.rules.0.validationError", map[string]any{})
		}, []string{"spec.rules[0].validationError", "one of message or messageExpression must be set"}},
		{"relative path", func(o map[string]any) {
			set(o, "spec.exposure.path", "signup")
		}, []string{"spec.exposure.path", "path must start with /"}},
		{"host is not a DNS name", func(o map[string]any) {
			set(o, "spec.exposure.host", "https://signup.contoso.example")
		}, []string{"spec.exposure.host", "should match"}},
		{"too many list values", func(o map[string]any) {
			set(o, "spec.lists.0.values", many(1001))
		}, []string{"spec.lists[0].values", "must have at most 1000 items"}},
		{"too many rules", func(o map[string]any) {
			rules := make([]any, 65)
			for i := range rules {
				rules[i] = map[string]any{"name": fmt.Sprintf("r%d", i), "when": "true", "block": map[string]any{"message": "no"}}
			}
			set(o, "spec.rules", rules)
		}, []string{"spec.rules", "must have at most 64 items"}},
		{"over-long expression", func(o map[string]any) {
			set(o, "spec.rules.0.when", strings.Repeat("x", 4097))
		}, []string{"spec.rules[0].when", "may not be more than 4096 bytes"}},
		{"list with values and configMapRef", func(o map[string]any) {
			set(o, "spec.lists.0.configMapRef", map[string]any{"name": "domains", "key": "allowed"})
		}, []string{"spec.lists[0]", "exactly one of values or configMapRef must be set"}},
		{"list name not an identifier", func(o map[string]any) {
			set(o, "spec.lists.0.name", "blocked-domains")
		}, []string{"spec.lists[0].name", "should match"}},
		{"duplicate rule names", func(o map[string]any) {
			rules := o["spec"].(map[string]any)["rules"].([]any)
			set(o, "spec.rules", append(rules, rules[0]))
		}, []string{"spec.rules[1]", "Duplicate value"}},
		{"email claim returned", func(o map[string]any) {
			set(o, "spec.claims", map[string]any{"email": "'x@y.z'"})
		}, []string{"spec.claims", "claims must not return email"}},
		{"claim name with a dash", func(o map[string]any) {
			set(o, "spec.claims", map[string]any{"given-name": "'x'"})
		}, []string{"spec.claims", "claim names must be identifiers"}},
		{"call timeout above 10s", func(o map[string]any) {
			set(o, "spec.calls", []any{map[string]any{"name": "approval", "url": "https://approvals.contoso.example/status", "timeout": "11s"}})
		}, []string{"spec.calls[0].timeout", "at most 10s"}},
		{"circuit breaker threshold above 1000", func(o map[string]any) {
			set(o, "spec.calls", []any{map[string]any{"name": "approval", "url": "https://approvals.contoso.example/status",
				"circuitBreaker": map[string]any{"consecutiveFailures": 1001}}})
		}, []string{"spec.calls[0].circuitBreaker.consecutiveFailures", "less than or equal to 1000"}},
		{"circuit breaker open under 1s", func(o map[string]any) {
			set(o, "spec.calls", []any{map[string]any{"name": "approval", "url": "https://approvals.contoso.example/status",
				"circuitBreaker": map[string]any{"openFor": "500ms"}}})
		}, []string{"spec.calls[0].circuitBreaker.openFor", "openFor must be between 1s and 10m"}},
		{"cache ttl under 1s", func(o map[string]any) {
			set(o, "spec.calls", []any{map[string]any{"name": "approval", "url": "https://approvals.contoso.example/status",
				"cache": map[string]any{"ttl": "500ms"}}})
		}, []string{"spec.calls[0].cache.ttl", "ttl must be between 1s and 24h"}},
		{"cache without ttl", func(o map[string]any) {
			set(o, "spec.calls", []any{map[string]any{"name": "approval", "url": "https://approvals.contoso.example/status",
				"cache": map[string]any{"key": "claims.email"}}})
		}, []string{"spec.calls[0].cache.ttl", "Required value"}},
		{"cache staleIfError above 24h", func(o map[string]any) {
			set(o, "spec.calls", []any{map[string]any{"name": "approval", "url": "https://approvals.contoso.example/status",
				"cache": map[string]any{"ttl": "5m", "staleIfError": "25h"}}})
		}, []string{"spec.calls[0].cache.staleIfError", "staleIfError must be between 0s and 24h"}},
		{"call URL not absolute", func(o map[string]any) {
			set(o, "spec.calls", []any{map[string]any{"name": "approval", "url": "/status"}})
		}, []string{"spec.calls[0].url", "must be an absolute http or https URL"}},
		{"secret header name not a token", func(o map[string]any) {
			c := secretCall()
			c["secretHeaders"] = []any{secretValue("x functions key", "k", "key")}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretHeaders[0].name", "should match"}},
		{"secret headers differing only in case", func(o map[string]any) {
			c := secretCall()
			c["secretHeaders"] = []any{secretValue("X-Api-Key", "k", "a"), secretValue("x-api-key", "k", "b")}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretHeaders", "header names must be unique"}},
		{"secret header also a static header", func(o map[string]any) {
			c := secretCall()
			c["headers"] = map[string]any{"X-Functions-Key": "in clear"}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretHeaders", "a header must not be both in headers and in secretHeaders"}},
		{"secret Authorization with auth", func(o map[string]any) {
			c := secretCall()
			c["auth"] = map[string]any{"type": "Bearer", "secretRef": map[string]any{"name": "t"}}
			c["secretHeaders"] = []any{secretValue("authorization", "k", "a")}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretHeaders", "secretHeaders must not set Authorization when auth is set"}},
		{"secret query parameter also in the URL", func(o map[string]any) {
			c := secretCall()
			c["url"] = "https://approvals.contoso.example/api/approve?code=clear"
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretQueryParams", "a query parameter must not be both in url and in secretQueryParams"}},
		{"secret query parameter without a name", func(o map[string]any) {
			c := secretCall()
			c["secretQueryParams"] = []any{secretValue("", "k", "code")}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretQueryParams[0].name", "should be at least 1 chars long"}},
		{"duplicate secret query parameters", func(o map[string]any) {
			c := secretCall()
			c["secretQueryParams"] = []any{secretValue("code", "k", "a"), secretValue("code", "k", "b")}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretQueryParams[1]", "Duplicate value"}},
		{"secret value without a key", func(o map[string]any) {
			c := secretCall()
			c["secretHeaders"] = []any{map[string]any{"name": "x-api-key", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"name": "k"}}}}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretHeaders[0].valueFrom.secretKeyRef.key", "Required value"}},
		{"secret value without a Secret", func(o map[string]any) {
			c := secretCall()
			c["secretQueryParams"] = []any{map[string]any{"name": "code", "valueFrom": map[string]any{"secretKeyRef": map[string]any{"key": "code"}}}}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretQueryParams[0].valueFrom.secretKeyRef.name", "Required value"}},
		{"secret value without valueFrom", func(o map[string]any) {
			c := secretCall()
			c["secretHeaders"] = []any{map[string]any{"name": "x-api-key"}}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretHeaders[0].valueFrom", "Required value"}},
		{"secret key not a Secret key", func(o map[string]any) {
			c := secretCall()
			c["secretHeaders"] = []any{secretValue("x-api-key", "k", "a/b")}
			set(o, "spec.calls", []any{c})
		}, []string{"spec.calls[0].secretHeaders[0].valueFrom.secretKeyRef.key", "should match"}},
		{"sink secret Authorization with auth", func(o map[string]any) {
			set(o, "spec.events", []any{map[string]any{"name": "audit", "sink": map[string]any{
				"url":           "https://audit.contoso.example/",
				"auth":          map[string]any{"type": "Basic", "secretRef": map[string]any{"name": "b"}},
				"secretHeaders": []any{secretValue("Authorization", "k", "a")},
			}}})
		}, []string{"spec.events[0].sink.secretHeaders", "secretHeaders must not set Authorization when auth is set"}},
		{"sink secret query parameter also in the URL", func(o map[string]any) {
			set(o, "spec.events", []any{map[string]any{"name": "audit", "sink": map[string]any{
				"url":               "https://audit.contoso.example/?code=clear",
				"secretQueryParams": []any{secretValue("code", "k", "code")},
			}}})
		}, []string{"spec.events[0].sink.secretQueryParams", "a query parameter must not be both in url and in secretQueryParams"}},
		{"connector timeout above 15s", func(o map[string]any) {
			set(o, "spec.timeout", "20s")
		}, []string{"spec.timeout", "at most 15s"}},
		{"both issuer and secret", func(o map[string]any) {
			set(o, "spec.exposure.tls", map[string]any{"secretName": "tls", "issuerRef": map[string]any{"name": "letsencrypt"}})
		}, []string{"spec.exposure.tls", "exactly one of issuerRef or secretName must be set"}},
		{"forwarded certificate from a non-CIDR", func(o map[string]any) {
			f := validForwarded()
			f["trustedProxies"] = []any{"10.0.0.1"}
			setForwarded(o, f)
		}, []string{"spec.authentication.clientCertificate.forwarded.trustedProxies[0]", "must be a CIDR"}},
		{"forwarded certificate behind a LoadBalancer", func(o map[string]any) {
			setForwarded(o, validForwarded())
			set(o, "spec.exposure.type", "LoadBalancer")
			set(o, "spec.exposure.tls", map[string]any{"secretName": "tls"})
		}, []string{"spec.authentication.clientCertificate.forwarded", "cannot be used with exposure type LoadBalancer"}},
		{"forwarded certificate without the ingress pods", func(o map[string]any) {
			f := validForwarded()
			delete(f, "ingressNamespaceSelector")
			delete(f, "ingressPodSelector")
			setForwarded(o, f)
		}, []string{"spec.authentication.clientCertificate.forwarded.ingressNamespaceSelector", "spec.authentication.clientCertificate.forwarded.ingressPodSelector", "Required value"}},
		{"forwarded certificate from every namespace", func(o map[string]any) {
			f := validForwarded()
			f["ingressNamespaceSelector"] = map[string]any{}
			setForwarded(o, f)
		}, []string{"spec.authentication.clientCertificate.forwarded.ingressNamespaceSelector", "an empty selector matches every namespace"}},
		{"forwarded certificate from every pod", func(o map[string]any) {
			f := validForwarded()
			f["ingressPodSelector"] = map[string]any{"matchLabels": map[string]any{}}
			setForwarded(o, f)
		}, []string{"spec.authentication.clientCertificate.forwarded.ingressPodSelector", "an empty selector matches every pod"}},
		{"forwarded certificate without the NetworkPolicy", func(o map[string]any) {
			setForwarded(o, validForwarded())
			set(o, "spec.runtime.networkPolicy", map[string]any{"enabled": false})
		}, []string{"spec.runtime.networkPolicy.enabled", "cannot be false with authentication.clientCertificate.forwarded"}},
		{"client certificate without a constraint", func(o map[string]any) {
			set(o, "spec.authentication", map[string]any{"clientCertificate": map[string]any{"secretRef": map[string]any{"name": "ca"}}})
		}, []string{"spec.authentication.clientCertificate", "set allowedFingerprints or allowedSubjects"}},
		{"client certificate fingerprint not SHA-256", func(o map[string]any) {
			set(o, "spec.authentication", map[string]any{"clientCertificate": map[string]any{
				"secretRef": map[string]any{"name": "ca"}, "allowedFingerprints": []any{"ab:cd"}}})
		}, []string{"spec.authentication.clientCertificate.allowedFingerprints[0]", "should match"}},
		{"bearer keys over http", func(o map[string]any) {
			set(o, "spec.step", "OnTokenIssuanceStart")
			b := validBearer()
			b["openIDConfigurationURL"] = "http://login.example.com/.well-known/openid-configuration"
			set(o, "spec.authentication", map[string]any{"bearer": b})
		}, []string{"spec.authentication.bearer.openIDConfigurationURL", "must be an absolute https URL"}},
		{"bearer issuer over http", func(o map[string]any) {
			set(o, "spec.step", "OnTokenIssuanceStart")
			b := validBearer()
			b["issuer"] = "http://login.example.com/t/v2.0"
			set(o, "spec.authentication", map[string]any{"bearer": b})
		}, []string{"spec.authentication.bearer.issuer", "must be an absolute https URL"}},
		{"bearer at PostAttributeCollection", func(o map[string]any) {
			set(o, "spec.authentication", map[string]any{"bearer": validBearer()})
		}, []string{"spec.authentication", "bearer authentication is only for custom authentication extension steps"}},
		{"basic at OnAttributeCollectionSubmit", func(o map[string]any) {
			set(o, "spec.step", "OnAttributeCollectionSubmit")
		}, []string{"spec.authentication", "custom authentication extension steps (On...) authenticate with bearer"}},
		{"bearer and basic", func(o map[string]any) {
			set(o, "spec.step", "OnAttributeCollectionSubmit")
			set(o, "spec.authentication.bearer", validBearer())
		}, []string{"spec.authentication", "exactly one of basic, clientCertificate or bearer must be set"}},
		{"validationError at OnAttributeCollectionStart", func(o map[string]any) {
			set(o, "spec.step", "OnAttributeCollectionStart")
			set(o, "spec.authentication", map[string]any{"bearer": validBearer()})
		}, []string{"spec.rules", "validationError outcomes are only allowed at steps PostAttributeCollection and OnAttributeCollectionSubmit"}},
		{"block at OnTokenIssuanceStart", func(o map[string]any) {
			set(o, "spec.step", "OnTokenIssuanceStart")
			set(o, "spec.authentication", map[string]any{"bearer": validBearer()})
			set(o, "spec.rules", []any{map[string]any{"name": "no", "when": "true", "block": map[string]any{"message": "no"}}})
		}, []string{"spec.rules", "block outcomes are not allowed at steps OnTokenIssuanceStart, PreTokenIssuance and OnOtpSend"}},
		{"block at PreTokenIssuance", func(o map[string]any) {
			set(o, "spec.step", "PreTokenIssuance")
			set(o, "spec.rules", []any{map[string]any{"name": "no", "when": "true", "block": map[string]any{"message": "no"}}})
		}, []string{"spec.rules", "block outcomes are not allowed at steps OnTokenIssuanceStart, PreTokenIssuance and OnOtpSend"}},
		{"bearer at PreTokenIssuance", func(o map[string]any) {
			set(o, "spec.step", "PreTokenIssuance")
			set(o, "spec.rules", nil)
			set(o, "spec.authentication", map[string]any{"bearer": validBearer()})
		}, []string{"spec.authentication", "the legacy steps PostFederationSignup, PostAttributeCollection and PreTokenIssuance use basic"}},
		{"claims at OnOtpSend", func(o map[string]any) {
			set(o, "spec.step", "OnOtpSend")
			set(o, "spec.rules", nil)
			set(o, "spec.authentication", map[string]any{"bearer": validBearer()})
			set(o, "spec.claims", map[string]any{"c": "'x'"})
		}, []string{"spec.claims", "claims are not allowed at steps OnOtpSend and OnPasswordSubmit"}},
		{"basic at OnOtpSend", func(o map[string]any) {
			set(o, "spec.step", "OnOtpSend")
			set(o, "spec.rules", nil)
		}, []string{"spec.authentication", "custom authentication extension steps (On...) authenticate with bearer"}},
		{"OnPasswordSubmit without passwordDecryption", func(o map[string]any) {
			set(o, "spec.step", "OnPasswordSubmit")
			set(o, "spec.rules", nil)
			set(o, "spec.authentication", map[string]any{"bearer": validBearer()})
		}, []string{"spec.passwordDecryption", "passwordDecryption is required at step OnPasswordSubmit"}},
		{"passwordDecryption elsewhere", func(o map[string]any) {
			set(o, "spec.passwordDecryption", map[string]any{"keys": []any{map[string]any{"name": "jit", "key": "current.pem"}}})
		}, []string{"spec.passwordDecryption", "not allowed elsewhere"}},
		{"migratePassword elsewhere", func(o map[string]any) {
			set(o, "spec.rules", []any{map[string]any{"name": "m", "when": "true", "migratePassword": map[string]any{}}})
		}, []string{"spec.rules", "migratePassword, updatePassword and retry outcomes are only allowed at step OnPasswordSubmit"}},
		{"three password decryption keys", func(o map[string]any) {
			set(o, "spec.step", "OnPasswordSubmit")
			set(o, "spec.rules", nil)
			set(o, "spec.authentication", map[string]any{"bearer": validBearer()})
			k := map[string]any{"name": "jit", "key": "current.pem"}
			set(o, "spec.passwordDecryption", map[string]any{"keys": []any{k, k, k}})
		}, []string{"spec.passwordDecryption.keys", "must have at most 2 items"}},
		{"the other wire name is not a step", func(o map[string]any) {
			set(o, "spec.step", "PreTokenApplicationClaims")
		}, []string{"spec.step", "Unsupported value"}},
		{"attribute on block", func(o map[string]any) {
			set(o, "spec.rules.0.validationError", nil)
			set(o, "spec.rules.0.block", map[string]any{"message": "no", "attribute": "postalCode"})
		}, []string{"spec.rules[0].block", "attribute is only allowed on validationError"}},
		{"attribute not an identifier", func(o map[string]any) {
			set(o, "spec.rules.0.validationError.attribute", "postal-code")
		}, []string{"spec.rules[0].validationError.attribute", "should match"}},
		{"bearer tenant not a GUID", func(o map[string]any) {
			set(o, "spec.step", "OnAttributeCollectionSubmit")
			b := validBearer()
			b["tenantId"] = "contoso.onmicrosoft.com"
			set(o, "spec.authentication", map[string]any{"bearer": b})
		}, []string{"spec.authentication.bearer.tenantId", "should match"}},
		{"bearer issuer not a URL", func(o map[string]any) {
			set(o, "spec.step", "OnAttributeCollectionSubmit")
			b := validBearer()
			b["issuer"] = "login.microsoftonline.com"
			set(o, "spec.authentication", map[string]any{"bearer": b})
		}, []string{"spec.authentication.bearer.issuer", "must be an absolute https URL"}},
		{"type Gateway without gateway", func(o map[string]any) {
			set(o, "spec.exposure.type", "Gateway")
		}, []string{"spec.exposure.gateway", "gateway must be set exactly when type is Gateway"}},
		{"gateway with type Ingress", func(o map[string]any) {
			set(o, "spec.exposure.gateway", map[string]any{"parentRefs": []any{map[string]any{"name": "public"}}})
		}, []string{"spec.exposure.gateway", "gateway must be set exactly when type is Gateway"}},
		{"gateway without parents", func(o map[string]any) {
			set(o, "spec.exposure.type", "Gateway")
			set(o, "spec.exposure.gateway", map[string]any{"parentRefs": []any{}})
		}, []string{"spec.exposure.gateway.parentRefs", "should have at least 1 items"}},
		{"LoadBalancer without TLS", func(o map[string]any) {
			set(o, "spec.exposure.type", "LoadBalancer")
		}, []string{"spec.exposure", "type LoadBalancer needs tls"}},
		{"too many replicas", func(o map[string]any) {
			set(o, "spec.runtime", map[string]any{"replicas": 51})
		}, []string{"spec.runtime.replicas", "less than or equal to 50"}},
		{"autoscaling min above max", func(o map[string]any) {
			set(o, "spec.runtime", map[string]any{"autoscaling": map[string]any{"minReplicas": 5, "maxReplicas": 3}})
		}, []string{"spec.runtime.autoscaling", "minReplicas must not exceed maxReplicas"}},
		{"autoscaling default min above max", func(o map[string]any) {
			set(o, "spec.runtime", map[string]any{"autoscaling": map[string]any{"maxReplicas": 1}})
		}, []string{"spec.runtime.autoscaling", "minReplicas must not exceed maxReplicas"}},
		{"autoscaling to zero", func(o map[string]any) {
			set(o, "spec.runtime", map[string]any{"autoscaling": map[string]any{"minReplicas": 0, "maxReplicas": 3}})
		}, []string{"spec.runtime.autoscaling.minReplicas", "greater than or equal to 1"}},
		{"autoscaling without max", func(o map[string]any) {
			set(o, "spec.runtime", map[string]any{"autoscaling": map[string]any{"minReplicas": 2}})
		}, []string{"spec.runtime.autoscaling.maxReplicas", "Required value"}},
		{"autoscaling target above 100", func(o map[string]any) {
			set(o, "spec.runtime", map[string]any{"autoscaling": map[string]any{"maxReplicas": 3, "targetCPUUtilizationPercentage": 101}})
		}, []string{"spec.runtime.autoscaling.targetCPUUtilizationPercentage", "less than or equal to 100"}},
		// A name that is a valid object name but not a Service name would half-create children.
		{"name with a dot", func(o map[string]any) {
			set(o, "metadata.name", "signup.v2")
		}, []string{"metadata.name must be at most 55 lowercase letters"}},
		{"name starting with a digit", func(o map[string]any) {
			set(o, "metadata.name", "2signup")
		}, []string{"metadata.name must be at most 55 lowercase letters"}},
		{"name too long for <name>-metrics", func(o map[string]any) {
			set(o, "metadata.name", strings.Repeat("a", v1alpha1.MaxNameLength+1))
		}, []string{"metadata.name must be at most 55 lowercase letters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := base(t)
			tt.edit(obj)
			err := create(t, obj)
			if err == nil {
				t.Fatal("the API server accepted an invalid object")
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid error, got %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLongestNameIsAccepted(t *testing.T) {
	obj := base(t)
	set(obj, "metadata.name", "a"+strings.Repeat("-b", (v1alpha1.MaxNameLength-1)/2))
	if n := len(lookup(obj, "metadata.name").(string)); n != v1alpha1.MaxNameLength {
		t.Fatalf("test name has %d characters, want %d", n, v1alpha1.MaxNameLength)
	}
	if err := create(t, obj); err != nil {
		t.Fatal(err)
	}
}

// An APIConnector as `kubectl apply` returns it, before any controller has seen it, must not be
// judged Current by kstatus (Flux's wait, Argo CD's and kubectl's readiness): nothing serves it yet.
// No manager runs in this suite, so this is exactly "operator not installed".
func TestUnreconciledConnectorIsInProgress(t *testing.T) {
	ctx := context.Background()
	obj := base(t)
	set(obj, "metadata.name", "never-reconciled")
	u := &unstructured.Unstructured{Object: obj}
	if err := k8sClient.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(ctx, u) })
	if got := lookup(u.Object, "status.observedGeneration"); got != int64(0) {
		t.Errorf("create returned status.observedGeneration %#v, want the default 0", got)
	}
	read := &unstructured.Unstructured{}
	read.SetGroupVersionKind(u.GroupVersionKind())
	if err := k8sClient.Get(ctx, client.ObjectKeyFromObject(u), read); err != nil {
		t.Fatal(err)
	}
	res, err := kstatus.Compute(read)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != kstatus.InProgressStatus {
		t.Fatalf("kstatus of an unreconciled connector = %s (%s), want InProgress", res.Status, res.Message)
	}
}

func TestDefaultsAreApplied(t *testing.T) {
	obj := base(t)
	set(obj, "spec.calls", []any{map[string]any{"name": "approval", "url": "https://approvals.contoso.example/status",
		"circuitBreaker": map[string]any{}}})
	set(obj, "spec.events", []any{map[string]any{"name": "audit", "sink": map[string]any{"url": "https://audit.contoso.example/"}}})
	set(obj, "spec.runtime.autoscaling", map[string]any{"maxReplicas": 6})
	u := &unstructured.Unstructured{Object: obj}
	if err := k8sClient.Create(context.Background(), u, client.DryRunAll); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"spec.failurePolicy":                                      "Fail",
		"spec.enforcement":                                        "Enforce",
		"spec.rules.0.enforcement":                                "Enforce",
		"spec.runtime.replicas":                                   int64(2),
		"spec.calls.0.method":                                     "POST",
		"spec.calls.0.timeout":                                    "2s",
		"spec.calls.0.failurePolicy":                              "Fail",
		"spec.calls.0.circuitBreaker.consecutiveFailures":         int64(5),
		"spec.calls.0.circuitBreaker.openFor":                     "30s",
		"spec.events.0.delivery":                                  "Async",
		"spec.events.0.failurePolicy":                             "Ignore",
		"spec.authentication.basic.secretRef.name":                "entra-basic",
		"spec.runtime.autoscaling.minReplicas":                    int64(2),
		"spec.runtime.autoscaling.targetCPUUtilizationPercentage": int64(70),
	}
	for path, w := range want {
		got := lookup(u.Object, path)
		if got != w {
			t.Errorf("%s = %#v, want %#v", path, got, w)
		}
	}
}

func lookup(obj map[string]any, path string) any {
	var cur any = obj
	for _, p := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var idx int
			fmt.Sscanf(p, "%d", &idx)
			cur = c[idx]
		default:
			return nil
		}
	}
	return cur
}

// Every committed sample must be accepted as written: users copy them.
func TestSamplesAreAccepted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "samples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, f := range files {
		for i, doc := range readDocs(t, f) {
			if doc["kind"] != "APIConnector" && doc["kind"] != "EntraTenant" {
				continue
			}
			seen++
			t.Run(fmt.Sprintf("%s#%d", filepath.Base(f), i), func(t *testing.T) {
				u := &unstructured.Unstructured{Object: doc}
				if u.GetNamespace() == "" {
					u.SetNamespace("default")
				}
				ensureNamespace(t, u.GetNamespace())
				if err := k8sClient.Create(context.Background(), u, client.DryRunAll); err != nil {
					t.Fatalf("sample rejected: %v", err)
				}
			})
		}
	}
	if seen == 0 {
		t.Fatal("no APIConnector samples found under config/samples")
	}
}

func readDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var out []map[string]any
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("%s: %v", path, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

// kubectl explain reads the published OpenAPI v3 document; every field there must carry a
// description so `kubectl explain apiconnector.spec.<field>` teaches the user.
func TestEveryFieldIsExplained(t *testing.T) {
	body, err := openAPI()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	raw, ok := doc.Components.Schemas["dev.apiconnector.v1alpha1.APIConnector"]
	if !ok {
		t.Fatalf("APIConnector is not published in OpenAPI v3; schemas: %d", len(doc.Components.Schemas))
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	spec := schema["properties"].(map[string]any)["spec"].(map[string]any)
	var missing []string
	checked := walkDescriptions("spec", spec, &missing)
	if len(missing) > 0 {
		t.Errorf("fields without a description (kubectl explain shows nothing): %v", missing)
	}
	if checked < 60 {
		t.Errorf("only %d fields checked; the walk did not reach the nested fields", checked)
	}
}

func walkDescriptions(path string, s map[string]any, missing *[]string) int {
	n := 1
	if d, _ := s["description"].(string); d == "" {
		// allOf-wrapped references (metav1.Duration, corev1 types) carry their description on the ref.
		if _, ref := s["allOf"]; !ref {
			*missing = append(*missing, path)
		}
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for name, p := range props {
			n += walkDescriptions(path+"."+name, p.(map[string]any), missing)
		}
	}
	// A list's items are described by the list field itself; walk into their properties.
	if items, ok := s["items"].(map[string]any); ok {
		if props, ok := items["properties"].(map[string]any); ok {
			for name, p := range props {
				n += walkDescriptions(path+"[]."+name, p.(map[string]any), missing)
			}
		}
	}
	return n
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
	if err := k8sClient.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// `kubectl explain` (built from source by hack/envtest-assets.sh) teaches the user every field.
func TestKubectlExplain(t *testing.T) {
	if _, err := openAPI(); err != nil {
		t.Fatal(err)
	}
	user, err := testEnv.AddUser(envtest.User{Name: "explainer", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubectl, err := user.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"apiconnector.spec.step":                   "PostAttributeCollection runs before the user is created",
		"apic.spec.authentication.basic.secretRef": "keys username and password",
		"apiconnector.spec.rules.when":             "CEL expression returning bool",
		"apiconnector.spec.exposure.tls.issuerRef": "cert-manager",
		"apiconnector.status.conditions":           "Ready, Reconciling, Stalled",
		"apiconnector.spec.lists.configMapRef":     "one per line",
	} {
		stdout, stderr, err := kubectl.Run("explain", field)
		out, _ := io.ReadAll(stdout)
		if err != nil {
			msg, _ := io.ReadAll(stderr)
			t.Fatalf("kubectl explain %s: %v\n%s", field, err, msg)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(out)), " "), want) {
			t.Errorf("kubectl explain %s does not say %q:\n%s", field, want, out)
		}
	}
}

// openAPI returns the group's OpenAPI v3 document, waiting for the API server to publish it: that
// happens asynchronously after the CRD is established.
func openAPI() ([]byte, error) {
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var body []byte
		body, err = disco.RESTClient().Get().AbsPath("/openapi/v3/apis/apiconnector.dev/v1alpha1").Do(context.Background()).Raw()
		if err == nil && bytes.Contains(body, []byte("dev.apiconnector.v1alpha1.APIConnector")) {
			return body, nil
		}
	}
	return nil, fmt.Errorf("the API server did not publish the APIConnector OpenAPI schema: %v", err)
}

// The Flux example users copy is a valid Kustomization for Flux's own CRD and waits for health.
func TestFluxSampleIsAccepted(t *testing.T) {
	docs := readDocs(t, filepath.Join("..", "..", "config", "samples", "flux", "kustomization.yaml"))
	if len(docs) != 1 || docs[0]["kind"] != "Kustomization" {
		t.Fatalf("want one Kustomization, got %d documents", len(docs))
	}
	if wait := lookup(docs[0], "spec.wait"); wait != true {
		t.Errorf("spec.wait = %v, want true: the example exists to wait on connectors", wait)
	}
	u := &unstructured.Unstructured{Object: docs[0]}
	ensureNamespace(t, u.GetNamespace())
	// Strict: a misspelt field (`wiat: true`) is an error, not silently pruned.
	if err := k8sClient.Create(context.Background(), u, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("Flux's Kustomization CRD rejects the sample: %v", err)
	}
}
