package controllers

import (
	"fmt"
	"path"
	"slices"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
)

// Whoever may create an APIConnector gets the operator to write a Deployment and an Ingress for
// them. What in those objects reaches beyond the connector's own namespace is limited by the
// platform team's policy: spec.runtime.image decides which image runs with the connector's Secrets
// mounted (--allowed-runtime-images, images.go), and spec.exposure.annotations configure the
// shared ingress controller (--allowed-exposure-annotations). A connector outside the policy is
// stalled before anything is applied, so the last good children keep serving.

// matchesAny reports whether the annotation key s matches one of the path.Match patterns (where *
// does not cross /).
func matchesAny(s string, patterns []string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool {
		ok, err := path.Match(p, s)
		return err == nil && ok
	})
}

// checkPolicy records in s every way the connector is outside the operator's policy.
func (r *Reconciler) checkPolicy(s *scope) {
	if msg := r.imageProblem(s.conn); msg != "" {
		s.stall(ReasonImageNotAllowed, msg)
	}
	if msg := annotationProblem(s.conn, r.Options.AllowedExposureAnnotations); msg != "" {
		s.stall(ReasonAnnotationNotAllowed, msg)
	}
}

// DefaultAllowedExposureAnnotations are the annotation keys a connector may set on its Ingress
// unless the operator is given --allowed-exposure-annotations: what the documented setups need
// (TLS passthrough, client-certificate verification for forwarded certificates, rate limits,
// source ranges, timeouts, entry points). The ingress-nginx ones are rated Low or Medium by
// ingress-nginx's own annotation risk levels; none references an object of another namespace
// except auth-tls-secret, which names a CA bundle. Left out on purpose: Traefik's
// router.middlewares, which can name a Middleware of any namespace; redirects, rewrites, CORS,
// canaries and external authentication, which a connector called only by Entra ID does not need.
var DefaultAllowedExposureAnnotations = []string{
	"nginx.ingress.kubernetes.io/ssl-passthrough",
	"nginx.ingress.kubernetes.io/backend-protocol",
	"nginx.ingress.kubernetes.io/ssl-redirect",
	"nginx.ingress.kubernetes.io/force-ssl-redirect",
	"nginx.ingress.kubernetes.io/limit-*",
	"nginx.ingress.kubernetes.io/allowlist-source-range",
	"nginx.ingress.kubernetes.io/whitelist-source-range",
	"nginx.ingress.kubernetes.io/denylist-source-range",
	"nginx.ingress.kubernetes.io/proxy-connect-timeout",
	"nginx.ingress.kubernetes.io/proxy-read-timeout",
	"nginx.ingress.kubernetes.io/proxy-send-timeout",
	"nginx.ingress.kubernetes.io/auth-tls-verify-client",
	"nginx.ingress.kubernetes.io/auth-tls-secret",
	"nginx.ingress.kubernetes.io/auth-tls-verify-depth",
	"nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream",
	"traefik.ingress.kubernetes.io/router.entrypoints",
	"traefik.ingress.kubernetes.io/router.tls",
	"haproxy.org/ssl-passthrough",
	"haproxy.org/ssl-redirect",
	"haproxy.org/rate-limit-*",
}

// deniedExposureAnnotations are refused whatever --allowed-exposure-annotations says, so a broad
// pattern such as nginx.ingress.kubernetes.io/* cannot let them through. Each one writes raw
// configuration into the ingress controller, which serves every namespace and (ingress-nginx by
// default) can read every Secret of the cluster, or takes over other host names.
var deniedExposureAnnotations = []struct{ pattern, why string }{
	// ingress-nginx's *-snippet (rated Critical by ingress-nginx), NGINX Inc's nginx.org/*-snippets,
	// HAProxy's haproxy.org/*-config-snippet.
	{"*snippet*", "it injects raw configuration into the ingress controller"},
	{"*/*snippet*", "it injects raw configuration into the ingress controller"},
	// haproxy-ingress's config-backend, config-frontend, config-global... under both its prefixes.
	{"haproxy-ingress.github.io/config-*", "it injects raw configuration into the ingress controller"},
	{"ingress.kubernetes.io/config-*", "it injects raw configuration into the ingress controller"},
	{"nginx.ingress.kubernetes.io/auth-url", "it injected configuration into ingress-nginx (CVE-2025-24514)"},
	{"nginx.ingress.kubernetes.io/auth-tls-match-cn", "it injected configuration into ingress-nginx (CVE-2025-1097)"},
	{"nginx.ingress.kubernetes.io/mirror-*", "it injected configuration into ingress-nginx (CVE-2025-1098) and copies every request elsewhere"},
	{"nginx.ingress.kubernetes.io/auth-proxy-set-headers", "it injected configuration into ingress-nginx (CVE-2025-15566)"},
	{"nginx.ingress.kubernetes.io/permanent-redirect", "it injected configuration into ingress-nginx (CVE-2023-5044)"},
	{"nginx.ingress.kubernetes.io/server-alias", "it makes the Ingress answer for other host names"},
}

// annotationProblem is why the connector's exposure annotations may not be applied, "" when they
// may. It names the refused keys, never their values.
func annotationProblem(conn *apiv1.APIConnector, allowed []string) string {
	keys := make([]string, 0, len(conn.Spec.Exposure.Annotations))
	for k := range conn.Spec.Exposure.Annotations {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var refused []string
	for _, k := range keys {
		if why := annotationRefusal(k, allowed); why != "" {
			refused = append(refused, fmt.Sprintf("key %q is not allowed: %s", k, why))
		}
	}
	if len(refused) == 0 {
		return ""
	}
	return "spec.exposure.annotations: " + strings.Join(refused, "; ") + "; nothing is applied until it is removed, the last good Ingress keeps serving"
}

// annotationRefusal is why the annotation key may not be set, "" when it may.
func annotationRefusal(key string, allowed []string) string {
	for _, d := range deniedExposureAnnotations {
		if ok, _ := path.Match(d.pattern, key); ok {
			return d.why
		}
	}
	if !matchesAny(key, allowed) {
		return "the operator's --allowed-exposure-annotations do not list it"
	}
	return ""
}
