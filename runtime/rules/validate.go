package rules

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// These mirror the CRD's patterns so that a connector loaded from a file (runtime config,
// the local test runner) gets the same answers as one admitted by the API server.
var (
	listOrCallNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	ruleOrEventRE    = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	claimNameRE      = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)
	guidRE           = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	headerNameRE     = regexp.MustCompile("^[-!#$%&'*+.^_`|~0-9A-Za-z]+$")
	secretNameRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	secretKeyRE      = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

const (
	maxConnectorTimeout = 15 * time.Second
	maxCallTimeout      = 10 * time.Second
	maxExpressionLength = 4096
	maxMessageLength    = 1024
	maxSecretValues     = 8
)

// Validate runs the structural checks the CRD's schema and CEL validation rules perform (one
// outcome per rule, validationError only at PostAttributeCollection, no email claim, unique
// names, enums, timeouts). It does not compile expressions; Compile calls it and does both.
func Validate(conn *v1alpha1.APIConnector) error {
	var c errs
	validate(&c, conn)
	return c.err(&conn.Spec)
}

func validate(c *errs, conn *v1alpha1.APIConnector) {
	s := &conn.Spec
	if !s.Step.Valid() {
		c.add("spec.step", "must be one of %v, got %q", v1alpha1.Steps, s.Step)
	}
	a := s.Authentication
	methods := 0
	for _, set := range []bool{a.Basic != nil, a.ClientCertificate != nil, a.Bearer != nil} {
		if set {
			methods++
		}
	}
	if methods != 1 {
		c.add("spec.authentication", "exactly one of basic, clientCertificate or bearer must be set")
	}
	if s.Step.IsExtension() && a.Bearer == nil {
		c.add("spec.authentication", "custom authentication extension steps (On...) authenticate with bearer")
	}
	if !s.Step.IsExtension() && a.Bearer != nil {
		c.add("spec.authentication", "bearer authentication is only for custom authentication extension steps; the legacy steps PostFederationSignup, PostAttributeCollection and PreTokenIssuance use basic or clientCertificate")
	}
	if b := a.Bearer; b != nil {
		if !guidRE.MatchString(b.TenantID) {
			c.add("spec.authentication.bearer.tenantId", "must be a GUID, got %q", b.TenantID)
		}
		if b.Audience == "" || len(b.Audience) > 256 {
			c.add("spec.authentication.bearer.audience", "must be 1 to 256 characters")
		}
		// https only: the signing keys are discovered from these. (The runtime's tests allow
		// loopback http through a server option; connectors never can.)
		if b.Issuer != "" {
			checkHTTPSURL(c, "spec.authentication.bearer.issuer", b.Issuer)
		}
		if b.OpenIDConfigurationURL != "" {
			checkHTTPSURL(c, "spec.authentication.bearer.openIDConfigurationURL", b.OpenIDConfigurationURL)
		}
		if len(b.AllowedAuthorizedParties) > 8 {
			c.add("spec.authentication.bearer.allowedAuthorizedParties", "must have at most 8 items")
		}
		for i, p := range b.AllowedAuthorizedParties {
			if p == "" || len(p) > 256 {
				c.add(fmt.Sprintf("spec.authentication.bearer.allowedAuthorizedParties[%d]", i), "must be 1 to 256 characters")
			}
		}
	}
	if a.Basic != nil && a.Basic.SecretRef.Name == "" {
		c.add("spec.authentication.basic.secretRef.name", "must not be empty")
	}
	if cc := a.ClientCertificate; cc != nil {
		if cc.SecretRef.Name == "" {
			c.add("spec.authentication.clientCertificate.secretRef.name", "must not be empty")
		}
		checkCertConstraints(c, "spec.authentication.clientCertificate", cc)
	}
	if s.Exposure.Host == "" {
		c.add("spec.exposure.host", "must not be empty")
	}
	if s.Exposure.Path != "" && !strings.HasPrefix(s.Exposure.Path, "/") {
		c.add("spec.exposure.path", "path must start with /")
	}
	checkPolicy(c, "spec.failurePolicy", s.FailurePolicy)
	checkEnforcement(c, "spec.enforcement", s.Enforcement)
	if len(s.FailureMessage) > maxMessageLength {
		c.add("spec.failureMessage", "must be at most %d characters", maxMessageLength)
	}
	if s.Timeout != nil && (s.Timeout.Duration <= 0 || s.Timeout.Duration > maxConnectorTimeout) {
		c.add("spec.timeout", "timeout must be greater than 0s and at most 15s")
	}

	names := map[string]bool{}
	for i, l := range s.Lists {
		p := fmt.Sprintf("spec.lists[%d]", i)
		checkName(c, p+".name", l.Name, listOrCallNameRE, names)
		if (l.Values != nil) == (l.ConfigMapRef != nil) {
			c.add(p, "exactly one of values or configMapRef must be set")
		}
		if l.ConfigMapRef != nil && (l.ConfigMapRef.Name == "" || l.ConfigMapRef.Key == "") {
			c.add(p+".configMapRef", "name and key must be set")
		}
	}

	names = map[string]bool{}
	for i, call := range s.Calls {
		p := fmt.Sprintf("spec.calls[%d]", i)
		checkName(c, p+".name", call.Name, listOrCallNameRE, names)
		checkURL(c, p+".url", call.URL)
		switch call.Method {
		case "", "GET", "POST", "PUT", "PATCH":
		default:
			c.add(p+".method", "must be one of GET, POST, PUT, PATCH, got %q", call.Method)
		}
		if call.Timeout != nil && (call.Timeout.Duration <= 0 || call.Timeout.Duration > maxCallTimeout) {
			c.add(p+".timeout", "timeout must be greater than 0s and at most 10s")
		}
		checkPolicy(c, p+".failurePolicy", call.FailurePolicy)
		if cb := call.CircuitBreaker; cb != nil {
			if n := cb.ConsecutiveFailures; n != nil && (*n < 0 || *n > 1000) {
				c.add(p+".circuitBreaker.consecutiveFailures", "must be between 0 and 1000")
			}
			if d := cb.OpenFor; d != nil && (d.Duration < time.Second || d.Duration > 10*time.Minute) {
				c.add(p+".circuitBreaker.openFor", "openFor must be between 1s and 10m")
			}
		}
		if cache := call.Cache; cache != nil {
			if d := cache.TTL.Duration; d < time.Second || d > 24*time.Hour {
				c.add(p+".cache.ttl", "ttl must be between 1s and 24h")
			}
			if d := cache.StaleIfError; d != nil && (d.Duration < 0 || d.Duration > 24*time.Hour) {
				c.add(p+".cache.staleIfError", "staleIfError must be between 0s and 24h")
			}
		}
		checkAuth(c, p+".auth", call.Auth)
		checkSecretValues(c, p, call.URL, call.Headers, call.Auth, call.SecretValues)
		checkCredentialsOverTLS(c, p+".url", call.URL, call.Auth, call.SecretValues)
	}

	names = map[string]bool{}
	for i, r := range s.Rules {
		p := fmt.Sprintf("spec.rules[%d]", i)
		checkName(c, p+".name", r.Name, ruleOrEventRE, names)
		if r.When == "" {
			c.add(p+".when", "must not be empty")
		}
		checkEnforcement(c, p+".enforcement", r.Enforcement)
		outcomes := 0
		for _, set := range []bool{r.Block != nil, r.ValidationError != nil, r.MigratePassword != nil, r.UpdatePassword != nil, r.Retry != nil} {
			if set {
				outcomes++
			}
		}
		if outcomes != 1 {
			c.add(p, "exactly one of block, validationError, migratePassword, updatePassword or retry must be set")
		}
		if (r.MigratePassword != nil || r.UpdatePassword != nil || r.Retry != nil) && !s.Step.AllowsPasswordOutcomes() {
			c.add(p, "migratePassword, updatePassword and retry outcomes are only allowed at step OnPasswordSubmit")
		}
		if r.ValidationError != nil && !s.Step.AllowsValidationError() {
			c.add(p+".validationError", "validationError outcomes are only allowed at steps PostAttributeCollection and OnAttributeCollectionSubmit; use block elsewhere")
		}
		if r.Block != nil && !s.Step.AllowsBlockPage() {
			c.add(p+".block", "block outcomes are not allowed at step %s: it has no block page", s.Step)
		}
		if r.Block != nil && r.Block.Attribute != "" {
			c.add(p+".block", "attribute is only allowed on validationError")
		}
		if r.ValidationError != nil && r.ValidationError.Attribute != "" &&
			(len(r.ValidationError.Attribute) > 256 || !claimNameRE.MatchString(r.ValidationError.Attribute)) {
			c.add(p+".validationError.attribute", "must be an attribute name (letters, digits, underscore; at most 256 characters)")
		}
		for field, o := range map[string]*v1alpha1.Outcome{"block": r.Block, "validationError": r.ValidationError} {
			if o == nil {
				continue
			}
			if o.Message == "" && o.MessageExpression == "" {
				c.add(p+"."+field, "one of message or messageExpression must be set")
			}
			if len(o.Message) > maxMessageLength {
				c.add(p+"."+field+".message", "must be at most %d characters", maxMessageLength)
			}
		}
	}

	if (s.PasswordDecryption != nil) != (s.Step == v1alpha1.StepOnPasswordSubmit) {
		c.add("spec.passwordDecryption", "passwordDecryption is required at step OnPasswordSubmit and not allowed elsewhere")
	}
	if pd := s.PasswordDecryption; pd != nil {
		if len(pd.Keys) < 1 || len(pd.Keys) > 2 {
			c.add("spec.passwordDecryption.keys", "must have 1 or 2 items")
		}
		for i, k := range pd.Keys {
			checkSecretKeyRef(c, fmt.Sprintf("spec.passwordDecryption.keys[%d]", i), k)
		}
	}
	if len(s.Claims) > 0 && s.Step.Valid() && !s.Step.ReturnsClaims() {
		c.add("spec.claims", "claims are not allowed at step %s: its answer carries none", s.Step)
	}
	for name := range s.Claims {
		p := "spec.claims." + name
		if len(name) > 128 || !claimNameRE.MatchString(name) {
			c.add(p, "claim names must be identifiers of at most 128 characters (letters, digits, underscore)")
		}
		if v1alpha1.IsReservedClaim(name) {
			c.add(p, "claims must not return email or the response fields version, action, status, userMessage")
		}
	}

	names = map[string]bool{}
	for i, ev := range s.Events {
		p := fmt.Sprintf("spec.events[%d]", i)
		checkName(c, p+".name", ev.Name, ruleOrEventRE, names)
		checkURL(c, p+".sink.url", ev.Sink.URL)
		checkAuth(c, p+".sink.auth", ev.Sink.Auth)
		checkSecretValues(c, p+".sink", ev.Sink.URL, nil, ev.Sink.Auth, ev.Sink.SecretValues)
		checkCredentialsOverTLS(c, p+".sink.url", ev.Sink.URL, ev.Sink.Auth, ev.Sink.SecretValues)
		switch ev.Delivery {
		case "", v1alpha1.DeliverySync, v1alpha1.DeliveryAsync:
		default:
			c.add(p+".delivery", "must be Sync or Async, got %q", ev.Delivery)
		}
		checkPolicy(c, p+".failurePolicy", ev.FailurePolicy)
	}
	if a := s.Runtime.Autoscaling; a != nil {
		checkAutoscaling(c, a)
	}
}

// checkAutoscaling mirrors the CRD's bounds of spec.runtime.autoscaling (defaults applied).
func checkAutoscaling(c *errs, a *v1alpha1.RuntimeAutoscaling) {
	const p = "spec.runtime.autoscaling"
	if a.MinReplicas < 1 || a.MinReplicas > 50 {
		c.add(p+".minReplicas", "must be 1 to 50 (scale to zero is not offered), got %d", a.MinReplicas)
	}
	if a.MaxReplicas < 1 || a.MaxReplicas > 50 {
		c.add(p+".maxReplicas", "must be 1 to 50, got %d", a.MaxReplicas)
	}
	if a.MinReplicas > a.MaxReplicas {
		c.add(p, "minReplicas must not exceed maxReplicas")
	}
	if a.TargetCPUUtilizationPercentage < 1 || a.TargetCPUUtilizationPercentage > 100 {
		c.add(p+".targetCPUUtilizationPercentage", "must be 1 to 100, got %d", a.TargetCPUUtilizationPercentage)
	}
}

func checkName(c *errs, path, name string, re *regexp.Regexp, seen map[string]bool) {
	switch {
	case name == "":
		c.add(path, "must not be empty")
	case len(name) > 63:
		c.add(path, "must be at most 63 characters")
	case !re.MatchString(name):
		c.add(path, "%q must match %s", name, re)
	case seen[name]:
		c.add(path, "duplicate name %q", name)
	}
	seen[name] = true
}

func checkURL(c *errs, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.add(path, "must be an absolute http or https URL, got %q", raw)
	}
}

// checkCredentialsOverTLS refuses to send credentials in clear text over a network: a call or
// sink with auth, secretHeaders or secretQueryParams must use https, unless its host is a Service
// of this cluster (*.svc, *.svc.cluster.local; the traffic stays on the cluster network) or
// loopback (a sidecar in the same pod).
func checkCredentialsOverTLS(c *errs, path, raw string, a *v1alpha1.OutboundAuth, sv v1alpha1.SecretValues) {
	var sent []string
	if a != nil {
		sent = append(sent, "auth")
	}
	if len(sv.SecretHeaders) > 0 {
		sent = append(sent, "secretHeaders")
	}
	if len(sv.SecretQueryParams) > 0 {
		sent = append(sent, "secretQueryParams")
	}
	u, err := url.Parse(raw)
	if len(sent) == 0 || err != nil || u.Scheme != "http" {
		return
	}
	host := strings.TrimSuffix(u.Hostname(), ".")
	if v1alpha1.IsClusterServiceHost(host) || v1alpha1.IsLoopbackHost(host) {
		return
	}
	c.add(path, "sends credentials (%s) over plain http to %s; use https (http is allowed only for in-cluster Service hosts *.svc and *.svc.cluster.local, and loopback)",
		strings.Join(sent, ", "), host)
}

// checkSecretValues mirrors the CRD's rules on secretHeaders and secretQueryParams. path is the
// call or the sink; headers are the call's static headers.
func checkSecretValues(c *errs, path, rawURL string, headers map[string]string, a *v1alpha1.OutboundAuth, sv v1alpha1.SecretValues) {
	if len(sv.SecretHeaders) > maxSecretValues {
		c.add(path+".secretHeaders", "must have at most %d items", maxSecretValues)
	}
	if len(sv.SecretQueryParams) > maxSecretValues {
		c.add(path+".secretQueryParams", "must have at most %d items", maxSecretValues)
	}
	static := map[string]bool{}
	for k := range headers {
		static[strings.ToLower(k)] = true
	}
	seen := map[string]bool{}
	for i, h := range sv.SecretHeaders {
		p := fmt.Sprintf("%s.secretHeaders[%d]", path, i)
		lower := strings.ToLower(h.Name)
		switch {
		case len(h.Name) > 256 || !headerNameRE.MatchString(h.Name):
			c.add(p+".name", "must be an HTTP header name of at most 256 characters (letters, digits and !#$%%&'*+-.^_`|~), got %q", h.Name)
		case seen[lower]:
			c.add(path+".secretHeaders", "header names must be unique (they compare case-insensitively): %q", h.Name)
		case static[lower]:
			c.add(path+".secretHeaders", "a header must not be both in headers and in secretHeaders (names compare case-insensitively): %q", h.Name)
		case a != nil && lower == "authorization":
			c.add(path+".secretHeaders", "secretHeaders must not set Authorization when auth is set: auth writes that header")
		}
		seen[lower] = true
		checkSecretKeyRef(c, p+".valueFrom.secretKeyRef", h.ValueFrom.SecretKeyRef)
	}
	var inURL url.Values
	if u, err := url.Parse(rawURL); err == nil {
		inURL = u.Query()
	}
	seen = map[string]bool{}
	for i, q := range sv.SecretQueryParams {
		p := fmt.Sprintf("%s.secretQueryParams[%d]", path, i)
		switch {
		case q.Name == "" || len(q.Name) > 256:
			c.add(p+".name", "must be 1 to 256 characters")
		case seen[q.Name]:
			c.add(p, "duplicate name %q", q.Name)
		case inURL.Has(q.Name):
			c.add(path+".secretQueryParams", "a query parameter must not be both in url and in secretQueryParams: %q", q.Name)
		}
		seen[q.Name] = true
		checkSecretKeyRef(c, p+".valueFrom.secretKeyRef", q.ValueFrom.SecretKeyRef)
	}
}

func checkSecretKeyRef(c *errs, path string, ref v1alpha1.SecretKeySelector) {
	if len(ref.Name) > 253 || !secretNameRE.MatchString(ref.Name) {
		c.add(path+".name", "must be a Secret name (lower-case letters, digits, '-' and '.'; at most 253 characters), got %q", ref.Name)
	}
	if len(ref.Key) > 253 || !secretKeyRE.MatchString(ref.Key) {
		c.add(path+".key", "must be a Secret key (letters, digits, '-', '_' and '.'; at most 253 characters), got %q", ref.Key)
	}
}

func checkHTTPSURL(c *errs, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		c.add(path, "must be an absolute https URL, got %q", raw)
	}
}

// FingerprintRE is the accepted form of clientCertificate.allowedFingerprints: the SHA-256 of a
// certificate's DER as 64 hex digits, or 32 colon-separated pairs as openssl prints it.
var FingerprintRE = regexp.MustCompile(`^([0-9A-Fa-f]{64}|([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2})$`)

func checkCertConstraints(c *errs, path string, cc *v1alpha1.ClientCertificateAuth) {
	if len(cc.AllowedFingerprints) == 0 && len(cc.AllowedSubjects) == 0 {
		c.add(path, "set allowedFingerprints or allowedSubjects: without a constraint any certificate the CA in ca.crt ever issued would be accepted")
	}
	if len(cc.AllowedFingerprints) > 8 {
		c.add(path+".allowedFingerprints", "must have at most 8 items")
	}
	for i, f := range cc.AllowedFingerprints {
		if !FingerprintRE.MatchString(f) {
			c.add(fmt.Sprintf("%s.allowedFingerprints[%d]", path, i), "must be a SHA-256 fingerprint: 64 hex digits, optionally colon-separated pairs")
		}
	}
	if len(cc.AllowedSubjects) > 16 {
		c.add(path+".allowedSubjects", "must have at most 16 items")
	}
	for i, s := range cc.AllowedSubjects {
		if s == "" || len(s) > 253 {
			c.add(fmt.Sprintf("%s.allowedSubjects[%d]", path, i), "must be 1 to 253 characters")
		}
	}
}

func checkPolicy(c *errs, path string, p v1alpha1.FailurePolicy) {
	switch p {
	case "", v1alpha1.FailurePolicyFail, v1alpha1.FailurePolicyIgnore:
	default:
		c.add(path, "must be Fail or Ignore, got %q", p)
	}
}

func checkEnforcement(c *errs, path string, e v1alpha1.Enforcement) {
	switch e {
	case "", v1alpha1.EnforcementEnforce, v1alpha1.EnforcementAudit:
	default:
		c.add(path, "must be Enforce or Audit, got %q", e)
	}
}

func checkAuth(c *errs, path string, a *v1alpha1.OutboundAuth) {
	if a == nil {
		return
	}
	if a.Type != v1alpha1.OutboundAuthBasic && a.Type != v1alpha1.OutboundAuthBearer {
		c.add(path+".type", "must be Basic or Bearer, got %q", a.Type)
	}
	if a.SecretRef.Name == "" {
		c.add(path+".secretRef.name", "must not be empty")
	}
}
