package v1alpha1

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Step is the point of an Entra ID user flow at which Entra calls the connector. What each step
// allows (answers, authentication, time budget) is in step.go.
//
// The legacy API connector steps (PostFederationSignup, PostAttributeCollection and Azure AD B2C's
// PreTokenIssuance) speak the flat claims protocol and authenticate with basic or
// clientCertificate. The custom authentication extension events (OnAttributeCollectionStart,
// OnAttributeCollectionSubmit, OnTokenIssuanceStart, OnOtpSend, OnPasswordSubmit) speak the extension envelope and
// authenticate with an Entra-issued bearer token.
// +kubebuilder:validation:Enum=PostFederationSignup;PostAttributeCollection;PreTokenIssuance;OnAttributeCollectionStart;OnAttributeCollectionSubmit;OnTokenIssuanceStart;OnOtpSend;OnPasswordSubmit
type Step string

const (
	// StepPostFederationSignup runs after the user federated with an identity provider, before the
	// attribute collection page. Claims returned on Continue prefill that page.
	StepPostFederationSignup Step = "PostFederationSignup"
	// StepPostAttributeCollection runs before the user is created. Claims returned on Continue
	// override what the user entered. Only this step may answer ValidationError.
	StepPostAttributeCollection Step = "PostAttributeCollection"
	// StepPreTokenIssuance is Azure AD B2C's "Before sending the token (preview)" step, at sign-up
	// and sign-in: claims returned on Continue go into the token (when selected as application
	// claims). Its only answer is Continue, so rules cannot decide there. B2C's documentation also
	// names the step PreTokenApplicationClaims in its example request; both are accepted in the
	// request's step claim (StepFromWire).
	StepPreTokenIssuance Step = "PreTokenIssuance"
	// StepOnAttributeCollectionStart is the custom authentication extension event before the
	// attribute collection page (External ID). Claims returned on Continue prefill the page
	// (setPrefillValues); block answers showBlockPage.
	StepOnAttributeCollectionStart Step = "OnAttributeCollectionStart"
	// StepOnAttributeCollectionSubmit is the custom authentication extension event after the user
	// submitted the attribute page (External ID). Claims returned on Continue override what the
	// user entered (modifyAttributeValues); validationError answers showValidationError, with
	// per-field errors for rules that name an attribute; block answers showBlockPage.
	StepOnAttributeCollectionSubmit Step = "OnAttributeCollectionSubmit"
	// StepOnTokenIssuanceStart is the custom claims provider event before a token is issued.
	// Claims returned are added to the token (provideClaimsForToken); it has no block page and no
	// validation error, so rules cannot decide there.
	StepOnTokenIssuanceStart Step = "OnTokenIssuanceStart"
	// StepOnOtpSend is the custom e-mail one-time passcode event (External ID, preview): Entra
	// hands the code and the address to the connector, whose calls deliver it through the tenant's
	// own e-mail service. The answer is continueWithDefaultBehavior; there are no rules and no
	// claims. The code and the address are only visible to calls' expressions (the otp variable).
	StepOnOtpSend Step = "OnOtpSend"
	// StepOnPasswordSubmit is the just-in-time password migration event (External ID, preview):
	// a user still marked for migration signed in with a password Entra does not know. The
	// runtime decrypts the password context with spec.passwordDecryption's keys; a call verifies
	// the password with the legacy identity system (the credentials variable, calls only), and
	// rules answer migratePassword, updatePassword, retry or block. No rule matching answers Retry.
	StepOnPasswordSubmit Step = "OnPasswordSubmit"
)

// EntraAuthenticationEventsAppID is the application ID of the Microsoft Entra authentication
// events service, the azp (v2 tokens) or appid (v1 tokens) of the bearer tokens Entra sends to
// custom authentication extensions.
const EntraAuthenticationEventsAppID = "99045fe1-7639-4a75-9d4a-577b6ca3810f"

// FailurePolicy says what happens when something the connector depends on fails at request time.
// +kubebuilder:validation:Enum=Fail;Ignore
type FailurePolicy string

const (
	// FailurePolicyFail fails closed: the sign-up is stopped (ShowBlockPage with the connector's
	// failure message) or, for an event, the delivery error is reported.
	FailurePolicyFail FailurePolicy = "Fail"
	// FailurePolicyIgnore fails open: the failure is logged and counted, and evaluation goes on.
	FailurePolicyIgnore FailurePolicy = "Ignore"
)

// Enforcement says whether a rule, or a whole connector, changes the answer.
// +kubebuilder:validation:Enum=Enforce;Audit
type Enforcement string

const (
	// EnforcementEnforce applies the decision: a matching rule answers ShowBlockPage or
	// ValidationError.
	EnforcementEnforce Enforcement = "Enforce"
	// EnforcementAudit evaluates and records without changing the answer: a matching rule is
	// counted (apiconnector_rule_audit_total) and listed in the request's log line, and the next
	// rules are evaluated as if it had not matched.
	EnforcementAudit Enforcement = "Audit"
)

// AnswerPolicy is the failure policy that answers when the connector cannot decide (an
// expression or evaluation error, the deadline): failurePolicy, Fail when empty, and Ignore for a
// connector in Audit, which never changes a sign-up.
func (s *APIConnectorSpec) AnswerPolicy() FailurePolicy {
	switch {
	case s.Enforcement == EnforcementAudit:
		return FailurePolicyIgnore
	case s.FailurePolicy == "":
		return FailurePolicyFail
	}
	return s.FailurePolicy
}

// DeliveryMode says whether an event is delivered before or after Entra gets its answer.
// +kubebuilder:validation:Enum=Sync;Async
type DeliveryMode string

const (
	// DeliverySync delivers the event before answering Entra.
	DeliverySync DeliveryMode = "Sync"
	// DeliveryAsync queues the event and answers Entra at once.
	DeliveryAsync DeliveryMode = "Async"
)

// APIConnectorSpec declares one Entra ID API connector endpoint.
//
// +kubebuilder:validation:XValidation:rule="self.step in ['PostAttributeCollection', 'OnAttributeCollectionSubmit'] || !has(self.rules) || self.rules.all(r, !has(r.validationError))",message="validationError outcomes are only allowed at steps PostAttributeCollection and OnAttributeCollectionSubmit; use block elsewhere",fieldPath=".rules"
// +kubebuilder:validation:XValidation:rule="!(self.step in ['OnTokenIssuanceStart', 'PreTokenIssuance', 'OnOtpSend']) || !has(self.rules) || self.rules.all(r, !has(r.block))",message="block outcomes are not allowed at steps OnTokenIssuanceStart, PreTokenIssuance and OnOtpSend: they have no block page",fieldPath=".rules"
// +kubebuilder:validation:XValidation:rule="!(self.step in ['OnAttributeCollectionStart', 'OnAttributeCollectionSubmit', 'OnTokenIssuanceStart', 'OnOtpSend', 'OnPasswordSubmit']) || has(self.authentication.bearer)",message="custom authentication extension steps (On...) authenticate with bearer",fieldPath=".authentication"
// +kubebuilder:validation:XValidation:rule="self.step in ['OnAttributeCollectionStart', 'OnAttributeCollectionSubmit', 'OnTokenIssuanceStart', 'OnOtpSend', 'OnPasswordSubmit'] || !has(self.authentication.bearer)",message="bearer authentication is only for custom authentication extension steps; the legacy steps PostFederationSignup, PostAttributeCollection and PreTokenIssuance use basic or clientCertificate",fieldPath=".authentication"
// +kubebuilder:validation:XValidation:rule="!(self.step in ['OnOtpSend', 'OnPasswordSubmit']) || !has(self.claims)",message="claims are not allowed at steps OnOtpSend and OnPasswordSubmit: their answers carry none",fieldPath=".claims"
// +kubebuilder:validation:XValidation:rule="self.step == 'OnPasswordSubmit' || !has(self.rules) || self.rules.all(r, !has(r.migratePassword) && !has(r.updatePassword) && !has(r.retry))",message="migratePassword, updatePassword and retry outcomes are only allowed at step OnPasswordSubmit",fieldPath=".rules"
// +kubebuilder:validation:XValidation:rule="(self.step == 'OnPasswordSubmit') == has(self.passwordDecryption)",message="passwordDecryption is required at step OnPasswordSubmit and not allowed elsewhere",fieldPath=".passwordDecryption"
// +kubebuilder:validation:XValidation:rule="!has(self.authentication.clientCertificate) || !has(self.authentication.clientCertificate.forwarded) || !has(self.exposure.type) || self.exposure.type != 'LoadBalancer'",message="clientCertificate.forwarded cannot be used with exposure type LoadBalancer: the load balancer can make any internet client look like a trusted proxy; use type Ingress or Gateway, or drop forwarded so the runtime checks the certificate in its own TLS handshake",fieldPath=".authentication.clientCertificate.forwarded"
// +kubebuilder:validation:XValidation:rule="!has(self.entra) || self.step in ['PostFederationSignup', 'PostAttributeCollection', 'PreTokenIssuance'] || (!has(self.entra.userFlows) && !has(self.entra.clientCertificate) && !has(self.entra.userFlowKind))",message="entra.userFlows, userFlowKind and clientCertificate are for the legacy steps; extension steps list entra.applications",fieldPath=".entra"
// +kubebuilder:validation:XValidation:rule="!has(self.entra) || !(self.step in ['PostFederationSignup', 'PostAttributeCollection', 'PreTokenIssuance']) || (!has(self.entra.applications) && !has(self.entra.timeout) && !has(self.entra.maximumRetries))",message="entra.applications, timeout and maximumRetries are for the custom authentication extension steps; legacy steps list entra.userFlows",fieldPath=".entra"
// +kubebuilder:validation:XValidation:rule="!has(self.entra) || !has(self.entra.clientCertificate) || has(self.authentication.clientCertificate)",message="entra.clientCertificate is what Entra presents to a connector with authentication.clientCertificate",fieldPath=".entra.clientCertificate"
// +kubebuilder:validation:XValidation:rule="!has(self.entra) || !has(self.authentication.clientCertificate) || has(self.entra.clientCertificate)",message="a connector with authentication.clientCertificate needs entra.clientCertificate: the certificate Entra presents",fieldPath=".entra"
// +kubebuilder:validation:XValidation:rule="!has(self.entra) || self.step != 'PreTokenIssuance' || (has(self.entra.userFlowKind) && self.entra.userFlowKind == 'B2C')",message="PreTokenIssuance exists only in Azure AD B2C user flows: set entra.userFlowKind to B2C",fieldPath=".entra.userFlowKind"
// +kubebuilder:validation:XValidation:rule="!has(self.runtime) || !has(self.runtime.networkPolicy) || !has(self.runtime.networkPolicy.enabled) || self.runtime.networkPolicy.enabled || !has(self.authentication.clientCertificate) || !has(self.authentication.clientCertificate.forwarded)",message="networkPolicy.enabled cannot be false with authentication.clientCertificate.forwarded: the NetworkPolicy is what keeps pods other than the ingress controller from sending the forwarded certificate header",fieldPath=".runtime.networkPolicy.enabled"
type APIConnectorSpec struct {
	// Step is the user-flow step this connector serves. PostFederationSignup runs after the user
	// signs in with an identity provider (returned claims prefill the attribute page);
	// PostAttributeCollection runs before the user is created (returned claims override input);
	// PreTokenIssuance is Azure AD B2C's "before sending the token" step (returned claims go into
	// the token; no rules). OnAttributeCollectionStart, OnAttributeCollectionSubmit,
	// OnTokenIssuanceStart, OnOtpSend and OnPasswordSubmit are the custom authentication extension
	// events of Entra External ID; they use the extension wire
	// format and bearer authentication (docs/extensions.md).
	// +required
	Step Step `json:"step"`

	// Authentication says how Entra ID authenticates to this endpoint. Exactly one method is set.
	// +required
	Authentication Authentication `json:"authentication"`

	// Lists are named string sets that rules reference as lists.<name> (allow and deny lists).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Lists []List `json:"lists,omitempty"`

	// Calls are outbound HTTP requests to external systems (approval systems, identity
	// verification, data look-ups). They run before the rules; their results are calls.<name>.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Calls []Call `json:"calls,omitempty"`

	// Rules are evaluated in order; the first whose when expression is true decides the answer.
	// When none matches, the answer is Continue.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	Rules []Rule `json:"rules,omitempty"`

	// Claims maps a claim name to a CEL expression whose string result is returned on Continue,
	// overwriting or appending that claim. An expression may return an optional.none() to leave
	// the claim untouched. The email claim cannot be returned.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, k.size() <= 128 && k.matches('^[A-Za-z][A-Za-z0-9_]*$'))",message="claim names must be identifiers of at most 128 characters (letters, digits, underscore)"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['email', 'version', 'action', 'status', 'userMessage']))",message="claims must not return email or the response fields version, action, status, userMessage"
	Claims map[string]Expression `json:"claims,omitempty"`

	// PasswordDecryption holds the keys that decrypt the password context Entra sends at step
	// OnPasswordSubmit (required there, not allowed elsewhere).
	// +optional
	PasswordDecryption *PasswordDecryption `json:"passwordDecryption,omitempty"`

	// Events are downstream business events (CloudEvents 1.0 over HTTP) sent after the decision.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Events []Event `json:"events,omitempty"`

	// FailurePolicy applies when a rule or claim expression fails at request time. Fail (the
	// default) answers ShowBlockPage with failureMessage; Ignore answers Continue.
	// +optional
	// +kubebuilder:default=Fail
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// Enforcement Audit runs the whole connector without changing any sign-up, for a first
	// rollout: every request is evaluated as in Enforce (calls included) and what the connector
	// would have answered is recorded (apiconnector_rule_audit_total, the request's log line), but
	// the answer is always Continue with no claims, failures of calls, expressions and the
	// deadline answer Continue too whatever the failure policies say, and events are not sent.
	// +optional
	// +kubebuilder:default=Enforce
	Enforcement Enforcement `json:"enforcement,omitempty"`

	// FailureMessage is the userMessage shown when the connector fails closed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	FailureMessage string `json:"failureMessage,omitempty"`

	// Timeout bounds all work for one request (calls, rules, sync events). Entra waits 20s and
	// retries once at the legacy steps, so the default is 8s and the maximum 15s. Custom
	// authentication extensions are given 200-2000ms by Entra, so their default is 1500ms.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('15s')",message="timeout must be greater than 0s and at most 15s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Exposure says where the endpoint is published.
	// +required
	Exposure Exposure `json:"exposure"`

	// Runtime tunes the pods that serve the connector.
	// +optional
	// +kubebuilder:default={}
	Runtime RuntimeSpec `json:"runtime,omitempty"`

	// Entra registers the connector in Microsoft Entra through Microsoft Graph
	// (docs/entra-registration.md). Without it, the endpoint in status is configured in Entra by
	// hand, as before.
	// +optional
	Entra *EntraRegistration `json:"entra,omitempty"`
}

// PasswordDecryption decrypts encryptedPasswordContext, the JWE (RSA-OAEP-256 or RSA-OAEP) that
// carries the password at OnPasswordSubmit, encrypted to the public key registered on the
// extension's app registration (keyCredentials with usage Encrypt, tokenEncryptionKeyId).
type PasswordDecryption struct {
	// Keys are Secret keys holding the RSA private key as PEM (PKCS#8 PRIVATE KEY or PKCS#1 RSA
	// PRIVATE KEY; a certificate next to it is skipped). Each is tried in turn: list the current
	// and the next key while rolling the key Entra encrypts to over. The controller mounts them
	// into the runtime pods and rolls the pods when they change.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	Keys []SecretKeySelector `json:"keys"`
}

// Expression is a CEL expression. See docs/rules.md for the variables in scope.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=4096
type Expression string

// Authentication selects exactly one way Entra ID authenticates to the connector.
// +kubebuilder:validation:XValidation:rule="(has(self.basic) ? 1 : 0) + (has(self.clientCertificate) ? 1 : 0) + (has(self.bearer) ? 1 : 0) == 1",message="exactly one of basic, clientCertificate or bearer must be set"
type Authentication struct {
	// Basic is HTTP Basic authentication. The Secret holds the keys username and password.
	// +optional
	Basic *BasicAuth `json:"basic,omitempty"`

	// ClientCertificate is TLS client-certificate authentication. The Secret holds the key ca.crt:
	// a PEM bundle of the client certificates or CAs to trust. Several may be trusted at once so a
	// certificate can be rolled over.
	// +optional
	ClientCertificate *ClientCertificateAuth `json:"clientCertificate,omitempty"`

	// Bearer validates the Entra-issued bearer token of custom authentication extensions (the
	// On... steps): signature against the tenant's published keys, issuer, audience, authorized
	// party and lifetime. No Secret is needed.
	// +optional
	Bearer *BearerAuth `json:"bearer,omitempty"`
}

// BearerAuth validates the JWT Entra sends to a custom authentication extension.
type BearerAuth struct {
	// TenantID is the directory (tenant) ID. The token's issuer must be
	// https://login.microsoftonline.com/<tenantId>/v2.0 or
	// https://<domain>.ciamlogin.com/<tenantId>/v2.0 unless issuer is set.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=36
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	TenantID string `json:"tenantId"`

	// Audience is the application (client) ID of the app registration that represents this API;
	// the token's aud must equal it.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Audience string `json:"audience"`

	// Issuer, when set, is the only accepted iss (for example a custom URL domain); the OpenID
	// configuration is then read from <issuer>/.well-known/openid-configuration.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && self.startsWith('https://')",message="must be an absolute https URL"
	Issuer string `json:"issuer,omitempty"`

	// OpenIDConfigurationURL overrides where the signing keys are discovered (its jwks_uri).
	// Default: https://login.microsoftonline.com/<tenantId>/v2.0/.well-known/openid-configuration,
	// or <issuer>/.well-known/openid-configuration when issuer is set.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && self.startsWith('https://')",message="must be an absolute https URL: the signing keys are fetched from it"
	OpenIDConfigurationURL string `json:"openIDConfigurationURL,omitempty"`

	// AllowedAuthorizedParties are the accepted azp (v2 tokens) or appid (v1 tokens). Default:
	// the Microsoft Entra authentication events service, 99045fe1-7639-4a75-9d4a-577b6ca3810f.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	AllowedAuthorizedParties []string `json:"allowedAuthorizedParties,omitempty"`
}

// DiscoveryURL is the OpenID configuration the runtime reads the signing keys' location from.
func (b *BearerAuth) DiscoveryURL() string {
	switch {
	case b.OpenIDConfigurationURL != "":
		return b.OpenIDConfigurationURL
	case b.Issuer != "":
		return strings.TrimSuffix(b.Issuer, "/") + "/.well-known/openid-configuration"
	default:
		return "https://login.microsoftonline.com/" + strings.ToLower(b.TenantID) + "/v2.0/.well-known/openid-configuration"
	}
}

// BasicAuth is HTTP Basic authentication.
type BasicAuth struct {
	// SecretRef names a Secret in the connector's namespace with the keys username and password.
	// The password must be at least 16 characters with at least 5 different characters; a
	// shorter one stalls the connector (reason WeakPassword) and no runtime pod serves it.
	// +required
	SecretRef SecretReference `json:"secretRef"`
}

// ClientCertificateAuth is TLS client-certificate authentication. A certificate is accepted when it
// is trusted by ca.crt (pinned there or chaining to a CA there), matches every constraint that is
// set (allowedFingerprints, allowedSubjects), and lists the clientAuth extended key usage unless
// allowAnyExtKeyUsage is true. At least one of allowedFingerprints and allowedSubjects is required:
// a CA issues certificates to others too.
// +kubebuilder:validation:XValidation:rule="has(self.allowedFingerprints) || has(self.allowedSubjects)",message="set allowedFingerprints or allowedSubjects: without a constraint any certificate the CA in ca.crt ever issued would be accepted"
type ClientCertificateAuth struct {
	// SecretRef names a Secret in the connector's namespace with the key ca.crt.
	// +required
	SecretRef SecretReference `json:"secretRef"`

	// AllowedFingerprints pins the accepted client certificates by the SHA-256 of their DER
	// encoding, as hex with or without colons (openssl x509 -noout -fingerprint -sha256). When set,
	// the client's certificate must be one of them. List the current and the next certificate to
	// roll over. Required when ca.crt holds a well-known public CA.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:items:Pattern=`^([0-9A-Fa-f]{64}|([0-9A-Fa-f]{2}:){31}[0-9A-Fa-f]{2})$`
	AllowedFingerprints []string `json:"allowedFingerprints,omitempty"`

	// AllowedSubjects are the accepted subject common names or DNS subject alternative names of the
	// client certificate (compared exactly, case-insensitively; no wildcard matching). When set, the
	// client's certificate must carry one of them.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	AllowedSubjects []string `json:"allowedSubjects,omitempty"`

	// AllowAnyExtKeyUsage accepts client certificates without the clientAuth extended key usage
	// (for example publicly issued certificates, which are losing it). Off by default: a
	// certificate issued for a server is then refused.
	// +optional
	AllowAnyExtKeyUsage bool `json:"allowAnyExtKeyUsage,omitempty"`

	// Forwarded trusts a client certificate forwarded in a header by an ingress controller that
	// verified it itself. Off unless set; only requests from trustedProxies are believed.
	// +optional
	Forwarded *ForwardedClientCertificate `json:"forwarded,omitempty"`
}

// ForwardedClientCertificate trusts a client certificate forwarded by a proxy.
//
// The header is a bearer credential: a certificate is public, so whoever can send a request with
// the header from a trusted address is let in. Its safety is the network path, which the
// controller closes with a NetworkPolicy that lets only the ingress controller's pods reach the
// runtime's port.
type ForwardedClientCertificate struct {
	// Header carrying the URL-escaped PEM (ingress-nginx ssl-client-cert) or base64 DER
	// (Traefik X-Forwarded-Tls-Client-Cert) client certificate.
	// +kubebuilder:validation:Enum=ssl-client-cert;X-Forwarded-Tls-Client-Cert
	// +required
	Header string `json:"header"`

	// TrustedProxies are the CIDRs of the proxies allowed to set the header: the ingress
	// controller's pod addresses, as narrow as possible. A range wider than an IPv4 /16 or an IPv6
	// /64 is reported as TrustedProxiesScoped=False.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=43
	// +kubebuilder:validation:items:XValidation:rule="isCIDR(self)",message="must be a CIDR such as 10.0.0.0/8"
	TrustedProxies []string `json:"trustedProxies"`

	// IngressNamespaceSelector selects the namespaces of the ingress controller (or Gateway) pods
	// that forward the header, for example
	// {matchLabels: {kubernetes.io/metadata.name: traefik}}. With ingressPodSelector it forms the
	// only source the connector's NetworkPolicy admits to the runtime's port. Must not be empty.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="must select the ingress controller's namespace: an empty selector matches every namespace"
	IngressNamespaceSelector metav1.LabelSelector `json:"ingressNamespaceSelector"`

	// IngressPodSelector selects the ingress controller's pods inside those namespaces, for
	// example {matchLabels: {app.kubernetes.io/name: traefik}}. Must not be empty.
	// +required
	// +kubebuilder:validation:XValidation:rule="(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)",message="must select the ingress controller's pods: an empty selector matches every pod"
	IngressPodSelector metav1.LabelSelector `json:"ingressPodSelector"`
}

// SecretReference names a Secret in the connector's namespace.
type SecretReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// List is a named set of strings, written inline or read from a ConfigMap key.
// +kubebuilder:validation:XValidation:rule="has(self.values) != has(self.configMapRef)",message="exactly one of values or configMapRef must be set"
type List struct {
	// Name is how rules refer to the list: lists.<name>.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// Values are the list's entries.
	// +optional
	// +kubebuilder:validation:MaxItems=1000
	// +kubebuilder:validation:items:MaxLength=256
	Values []string `json:"values,omitempty"`

	// ConfigMapRef reads the entries from a ConfigMap key, one per line. Blank lines and lines
	// starting with # are skipped. The controller resolves it into values for the runtime.
	// +optional
	ConfigMapRef *ConfigMapKeyReference `json:"configMapRef,omitempty"`
}

// ConfigMapKeyReference names a key of a ConfigMap in the connector's namespace.
type ConfigMapKeyReference struct {
	// Name of the ConfigMap.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Key in the ConfigMap's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Key string `json:"key"`
}

// Call is an outbound HTTP request made before the rules are evaluated.
// +kubebuilder:validation:XValidation:rule="!has(self.secretHeaders) || !has(self.headers) || self.secretHeaders.all(h, !self.headers.exists(k, k.lowerAscii() == h.name.lowerAscii()))",message="a header must not be both in headers and in secretHeaders (names compare case-insensitively)",fieldPath=".secretHeaders"
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.secretHeaders) || self.secretHeaders.all(h, h.name.lowerAscii() != 'authorization')",message="secretHeaders must not set Authorization when auth is set: auth writes that header",fieldPath=".secretHeaders"
// +kubebuilder:validation:XValidation:rule="!has(self.secretQueryParams) || !isURL(self.url) || self.secretQueryParams.all(p, !(p.name in url(self.url).getQuery()))",message="a query parameter must not be both in url and in secretQueryParams",fieldPath=".secretQueryParams"
type Call struct {
	// Name is how rules refer to the result: calls.<name>.status and calls.<name>.body.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_]*$`
	Name string `json:"name"`

	// URL of the external system.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="must be an absolute http or https URL"
	URL string `json:"url"`

	// Method is the HTTP method.
	// +optional
	// +kubebuilder:default=POST
	// +kubebuilder:validation:Enum=GET;POST;PUT;PATCH
	Method string `json:"method,omitempty"`

	// Headers are static request headers. Put API keys in secretHeaders instead: the connector is
	// readable by whoever can read it, and its rendered configuration by whoever can read
	// ConfigMaps.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	Headers map[string]string `json:"headers,omitempty"`

	SecretValues `json:",inline"`

	// Body is a CEL expression producing the JSON request body (a map). When empty, the request's
	// claims are sent.
	// +optional
	Body Expression `json:"body,omitempty"`

	// Auth authenticates the call.
	// +optional
	Auth *OutboundAuth `json:"auth,omitempty"`

	// When is a CEL expression; the call runs only when it is true. Empty means always.
	// +optional
	When Expression `json:"when,omitempty"`

	// Timeout of the call; it also never outlives the connector's own deadline.
	// +optional
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s') && duration(self) <= duration('10s')",message="timeout must be greater than 0s and at most 10s"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// FailurePolicy applies when the call times out, answers non-2xx or returns bad JSON. Fail
	// stops the sign-up with the connector's failure message; Ignore goes on with
	// calls.<name>.status set to 0 (or the status received).
	// +optional
	// +kubebuilder:default=Fail
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`

	// Idempotent marks a POST, PUT or PATCH call as safe to send twice, so that, like a GET, it is
	// retried once when it fails and the time budget leaves room for a whole second attempt.
	// +optional
	Idempotent bool `json:"idempotent,omitempty"`

	// CircuitBreaker stops calling a dependency that keeps failing. When absent the breaker is on
	// with its defaults (5 consecutive failures, open for 30s).
	// +optional
	CircuitBreaker *CircuitBreaker `json:"circuitBreaker,omitempty"`

	// Cache keeps the call's 2xx JSON answers, so requests with the same key within ttl are
	// answered without calling the dependency.
	// +optional
	Cache *CallCache `json:"cache,omitempty"`
}

// CallCache keeps a call's successful answers (2xx, JSON) in the runtime's memory, bounded in
// entries and bytes per connector.
type CallCache struct {
	// TTL is how long an answer is used.
	// +required
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('24h')",message="ttl must be between 1s and 24h"
	TTL metav1.Duration `json:"ttl"`

	// Key is a CEL expression (a string, seeing claims, request, identity and lists) naming what
	// the answer depends on, such as "claims.email.lowerAscii()". When empty, the key is the
	// rendered request: method, URL with its query, and body.
	// +optional
	Key Expression `json:"key,omitempty"`

	// StaleIfError is how long after ttl an answer may still be used when the call fails (a
	// transport error, a timeout, a 5xx or 429 answer, or an open circuit breaker), so a look-up
	// keeps working through a dependency's outage. 0 (the default) never uses an expired answer.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s') && duration(self) <= duration('24h')",message="staleIfError must be between 0s and 24h"
	StaleIfError *metav1.Duration `json:"staleIfError,omitempty"`
}

// CircuitBreaker makes a call fail at once, without a request, after consecutive failures: its
// failurePolicy applies for openFor, then one request probes the dependency and closes the
// breaker again if it succeeds. Failures are transport errors, timeouts, 5xx and 429 answers.
type CircuitBreaker struct {
	// ConsecutiveFailures opens the breaker; 0 turns it off.
	// +optional
	// +kubebuilder:default=5
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	ConsecutiveFailures *int32 `json:"consecutiveFailures,omitempty"`

	// OpenFor is how long the call fails at once before a request probes the dependency.
	// +optional
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s') && duration(self) <= duration('10m')",message="openFor must be between 1s and 10m"
	OpenFor *metav1.Duration `json:"openFor,omitempty"`
}

// OutboundAuthType is how the connector authenticates to an external system.
// +kubebuilder:validation:Enum=Basic;Bearer
type OutboundAuthType string

const (
	// OutboundAuthBasic sends the Secret's username and password as HTTP Basic.
	OutboundAuthBasic OutboundAuthType = "Basic"
	// OutboundAuthBearer sends the Secret's token as a bearer token.
	OutboundAuthBearer OutboundAuthType = "Bearer"
)

// OutboundAuth authenticates a call or an event delivery.
type OutboundAuth struct {
	// Type is Basic (Secret keys username, password) or Bearer (Secret key token).
	// +required
	Type OutboundAuthType `json:"type"`
	// SecretRef names the Secret in the connector's namespace.
	// +required
	SecretRef SecretReference `json:"secretRef"`
}

// Rule decides the answer when its condition holds.
// +kubebuilder:validation:XValidation:rule="(has(self.block) ? 1 : 0) + (has(self.validationError) ? 1 : 0) + (has(self.migratePassword) ? 1 : 0) + (has(self.updatePassword) ? 1 : 0) + (has(self.retry) ? 1 : 0) == 1",message="exactly one of block, validationError, migratePassword, updatePassword or retry must be set"
// +kubebuilder:validation:XValidation:rule="!has(self.block) || !has(self.block.attribute)",message="attribute is only allowed on validationError",fieldPath=".block"
type Rule struct {
	// Name identifies the rule in logs, metrics and events.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	Name string `json:"name"`

	// When is a CEL expression returning bool.
	// +required
	When Expression `json:"when"`

	// Block stops the sign-up with a ShowBlockPage answer.
	// +optional
	Block *Outcome `json:"block,omitempty"`

	// ValidationError sends the user back to the attribute page with a message (HTTP 400 at
	// PostAttributeCollection, showValidationError at OnAttributeCollectionSubmit). Only allowed at
	// those two steps.
	// +optional
	ValidationError *Outcome `json:"validationError,omitempty"`

	// MigratePassword answers MigratePassword at OnPasswordSubmit: the legacy system verified the
	// password, and Entra stores it and clears the user's migration flag. Only at that step.
	// +optional
	MigratePassword *PasswordOutcome `json:"migratePassword,omitempty"`

	// UpdatePassword answers UpdatePassword at OnPasswordSubmit: the password is right but weak
	// or expired, and the user must set a new one. Only at that step.
	// +optional
	UpdatePassword *PasswordOutcome `json:"updatePassword,omitempty"`

	// Retry answers Retry at OnPasswordSubmit: the password is wrong and the user may try again
	// (also the answer when no rule matches). Only at that step.
	// +optional
	Retry *PasswordOutcome `json:"retry,omitempty"`
	// Enforcement Audit evaluates the rule and records a match (apiconnector_rule_audit_total,
	// the request's log line) without changing the answer: the next rules are evaluated as if it
	// had not matched. Use it to watch what a new rule would do before it blocks anyone.
	// +optional
	// +kubebuilder:default=Enforce
	Enforcement Enforcement `json:"enforcement,omitempty"`
}

// PasswordOutcome is an answer of OnPasswordSubmit that carries nothing but its kind.
type PasswordOutcome struct{}

// Outcome is the message shown to the user.
// +kubebuilder:validation:XValidation:rule="has(self.message) || has(self.messageExpression)",message="one of message or messageExpression must be set"
type Outcome struct {
	// Attribute attaches a validationError to one attribute of the form (showValidationError's
	// attributeErrors at OnAttributeCollectionSubmit). At PostAttributeCollection, which only has
	// form-level errors, it is ignored, so one rule set serves both steps. Not allowed on block.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z][A-Za-z0-9_]*$`
	Attribute string `json:"attribute,omitempty"`

	// Message is the userMessage shown to the user.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`

	// MessageExpression is a CEL expression returning the userMessage. It wins over message;
	// message is the fallback when it fails.
	// +optional
	MessageExpression Expression `json:"messageExpression,omitempty"`
}

// Event is a downstream business event sent as a CloudEvent.
type Event struct {
	// Name identifies the event; it is also the CloudEvent type suffix.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	Name string `json:"name"`

	// When is a CEL expression; the event is sent only when it is true. Empty means always.
	// decision.action, decision.rule and decision.claims are in scope.
	// +optional
	When Expression `json:"when,omitempty"`

	// Data is a CEL expression producing the event's JSON data (a map). When empty, the data is
	// the step, the decision and the returned claims.
	// +optional
	Data Expression `json:"data,omitempty"`

	// Sink receives the event.
	// +required
	Sink Sink `json:"sink"`

	// Delivery is Sync (delivered before answering Entra) or Async (queued, retried).
	// +optional
	// +kubebuilder:default=Async
	Delivery DeliveryMode `json:"delivery,omitempty"`

	// FailurePolicy applies when a Sync delivery fails: Fail stops the sign-up with the
	// connector's failure message, Ignore answers as decided.
	// +optional
	// +kubebuilder:default=Ignore
	FailurePolicy FailurePolicy `json:"failurePolicy,omitempty"`
}

// Sink is where an event is delivered.
// +kubebuilder:validation:XValidation:rule="!has(self.auth) || !has(self.secretHeaders) || self.secretHeaders.all(h, h.name.lowerAscii() != 'authorization')",message="secretHeaders must not set Authorization when auth is set: auth writes that header",fieldPath=".secretHeaders"
// +kubebuilder:validation:XValidation:rule="!has(self.secretQueryParams) || !isURL(self.url) || self.secretQueryParams.all(p, !(p.name in url(self.url).getQuery()))",message="a query parameter must not be both in url and in secretQueryParams",fieldPath=".secretQueryParams"
type Sink struct {
	// URL of the sink.
	// +required
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="must be an absolute http or https URL"
	URL string `json:"url"`

	// Auth authenticates the delivery.
	// +optional
	Auth *OutboundAuth `json:"auth,omitempty"`

	SecretValues `json:",inline"`
}

// SecretValues are request headers and query parameters of a call or an event delivery whose
// values are read from Secrets: API keys such as an Azure Functions key (x-functions-key header
// or code parameter) or an x-api-key header. The values are never written in the connector or
// its rendered configuration, and never logged: a failed request is reported with its URL
// without the query. Like auth, they are only sent over https, or plain http to a Service of the
// cluster (*.svc, *.svc.cluster.local) or loopback.
type SecretValues struct {
	// SecretHeaders are request headers whose values are read from Secrets. One trailing newline
	// of a value is ignored. A header must not also be in a call's headers, nor be Authorization
	// when auth is set.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	// +kubebuilder:validation:XValidation:rule="self.all(h, self.exists_one(o, o.name.lowerAscii() == h.name.lowerAscii()))",message="header names must be unique (they compare case-insensitively)"
	SecretHeaders []SecretHeader `json:"secretHeaders,omitempty"`

	// SecretQueryParams are query parameters whose values are read from Secrets, added to the
	// URL (and to a GET call's parameters from body, which they override). One trailing newline
	// of a value is ignored. A parameter must not also be in url.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	SecretQueryParams []SecretQueryParam `json:"secretQueryParams,omitempty"`
}

// SecretHeader is a request header whose value is read from a Secret.
type SecretHeader struct {
	// Name of the header, for example x-functions-key or x-api-key: an HTTP header name (a token).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern="^[-!#$%&'*+.^_`|~0-9A-Za-z]+$"
	Name string `json:"name"`

	// ValueFrom is the Secret key holding the value.
	// +required
	ValueFrom SecretValueSource `json:"valueFrom"`
}

// SecretQueryParam is a query parameter whose value is read from a Secret.
type SecretQueryParam struct {
	// Name of the query parameter, for example code.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Name string `json:"name"`

	// ValueFrom is the Secret key holding the value.
	// +required
	ValueFrom SecretValueSource `json:"valueFrom"`
}

// SecretValueSource says where a value is read from.
type SecretValueSource struct {
	// SecretKeyRef selects a key of a Secret in the connector's namespace. The controller stalls
	// the connector (SecretNotFound, SecretKeyMissing) until it exists, mounts it read-only into
	// the runtime pods, and rolls them when the value changes.
	// +required
	SecretKeyRef SecretKeySelector `json:"secretKeyRef"`
}

// SecretKeySelector selects a key of a Secret in the connector's namespace.
type SecretKeySelector struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
	// Key in the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// ExposureType is how the endpoint is published.
type ExposureType string

const (
	// ExposureIngress routes through an Ingress.
	ExposureIngress ExposureType = "Ingress"
	// ExposureLoadBalancer publishes the runtime's TLS listener through a LoadBalancer Service.
	ExposureLoadBalancer ExposureType = "LoadBalancer"
	// ExposureGateway attaches the endpoint to Gateway API Gateways with an HTTPRoute (or a
	// TLSRoute in passthrough mode when the runtime terminates TLS for client certificates).
	ExposureGateway ExposureType = "Gateway"
)

// Exposure publishes the endpoint.
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type != 'LoadBalancer' || has(self.tls)",message="type LoadBalancer needs tls: the runtime terminates TLS itself"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'Gateway') == has(self.gateway)",message="gateway must be set exactly when type is Gateway",fieldPath=".gateway"
// +kubebuilder:validation:XValidation:rule="!has(self.path) || self.path.startsWith('/')",message="path must start with /",fieldPath=".path"
type Exposure struct {
	// Type is how the endpoint is published. Ingress (the default) routes through an ingress
	// controller. LoadBalancer publishes the runtime's own TLS listener on port 443 through a
	// LoadBalancer Service, for client-certificate connectors whose ingress controller cannot pass
	// TLS through; point the host's DNS at the Service's address.
	// +optional
	// +kubebuilder:default=Ingress
	// +kubebuilder:validation:Enum=Ingress;LoadBalancer;Gateway
	Type ExposureType `json:"type,omitempty"`

	// Gateway attaches the endpoint to Gateways you already run (Gateway API), for type Gateway.
	// +optional
	Gateway *GatewayExposure `json:"gateway,omitempty"`

	// Host is the DNS name Entra ID calls.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Host string `json:"host"`

	// Path of the endpoint. Defaults to /<namespace>/<name>.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Path string `json:"path,omitempty"`

	// IngressClassName selects the ingress controller. Empty uses the cluster default.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	IngressClassName *string `json:"ingressClassName,omitempty"`

	// Annotations are added to the Ingress (for example for the ingress controller). Only keys the
	// operator allows (--allowed-exposure-annotations) are accepted, and never those that inject
	// configuration into the ingress controller (such as ingress-nginx's *-snippet); another key
	// stalls the connector with reason AnnotationNotAllowed and the last good Ingress is kept.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Annotations map[string]string `json:"annotations,omitempty"`

	// TLS says where the endpoint's certificate comes from. Entra only calls HTTPS endpoints.
	// +optional
	TLS *TLS `json:"tls,omitempty"`

	// ExternalTLS says TLS is terminated in front of the cluster: a CDN, a cloud load balancer or
	// an API gateway receives Entra ID's HTTPS calls and forwards them to the Ingress or Gateway
	// over plain HTTP. Without it, an endpoint whose Ingress or Gateway serves no TLS is reported
	// NotHTTPS and is not Ready, since Entra ID only calls HTTPS endpoints.
	// +optional
	ExternalTLS bool `json:"externalTLS,omitempty"`
}

// GatewayExposure attaches the connector's route to Gateways.
type GatewayExposure struct {
	// ParentRefs are the Gateways (and optionally their listeners) the route attaches to. A Gateway
	// in another namespace must allow routes from the connector's namespace (allowedRoutes).
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=8
	ParentRefs []GatewayParentReference `json:"parentRefs"`
}

// GatewayParentReference names a Gateway and optionally one of its listeners.
type GatewayParentReference struct {
	// Name of the Gateway.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// Namespace of the Gateway. Defaults to the connector's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Namespace string `json:"namespace,omitempty"`
	// SectionName is the listener of the Gateway to attach to. Empty attaches to every listener
	// that accepts the route.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SectionName string `json:"sectionName,omitempty"`
}

// TLS is the certificate of the endpoint: issued by cert-manager or brought by the user.
// +kubebuilder:validation:XValidation:rule="(has(self.issuerRef) ? 1 : 0) + (has(self.secretName) ? 1 : 0) == 1",message="exactly one of issuerRef or secretName must be set"
type TLS struct {
	// IssuerRef asks cert-manager for a certificate from this Issuer or ClusterIssuer.
	// +optional
	IssuerRef *IssuerReference `json:"issuerRef,omitempty"`

	// SecretName is a kubernetes.io/tls Secret the user provides.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`
}

// IssuerReference names a cert-manager issuer.
type IssuerReference struct {
	// Kind is Issuer (same namespace) or ClusterIssuer.
	// +optional
	// +kubebuilder:default=ClusterIssuer
	// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
	Kind string `json:"kind,omitempty"`
	// Name of the issuer.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// RuntimeSpec tunes the pods that serve the connector.
type RuntimeSpec struct {
	// Replicas of the runtime Deployment. Ignored when autoscaling is set.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=50
	Replicas *int32 `json:"replicas,omitempty"`

	// Image overrides the operator's runtime image for this connector. It must match one of the
	// operator's allowed runtime image patterns (by default, any tag or digest of its runtime
	// image's repository): the install's admission policy refuses another image, and the operator
	// stalls a connector that has one with reason ImageNotAllowed.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// Resources of the runtime container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// NodeSelector constrains the pods to matching nodes.
	// +optional
	// +kubebuilder:validation:MaxProperties=16
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// Tolerations of the pods.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// NetworkPolicy controls the NetworkPolicy <name> that fences the runtime pods: the connector
	// port only from the ingress controller (anywhere with exposure type LoadBalancer), the metrics
	// port only from the metrics scraper, and out only DNS and the ports of the connector's calls,
	// event sinks and bearer key discovery. See docs/exposure.md.
	// +optional
	NetworkPolicy *RuntimeNetworkPolicy `json:"networkPolicy,omitempty"`

	// Autoscaling scales the runtime Deployment with a HorizontalPodAutoscaler <name> on CPU
	// utilization, between minReplicas and maxReplicas; replicas is then ignored and the operator
	// leaves the Deployment's replica count to the autoscaler. Scaling to zero is not offered:
	// Entra ID waits a few seconds for an answer, too short for a pod to start.
	// +optional
	Autoscaling *RuntimeAutoscaling `json:"autoscaling,omitempty"`
}

// RuntimeAutoscaling are the bounds and target of the connector's HorizontalPodAutoscaler.
// +kubebuilder:validation:XValidation:rule="self.minReplicas <= self.maxReplicas",message="minReplicas must not exceed maxReplicas"
type RuntimeAutoscaling struct {
	// MinReplicas is the fewest runtime pods; at least 1 (scale to zero is not offered).
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	MinReplicas int32 `json:"minReplicas,omitempty"`

	// MaxReplicas is the most runtime pods.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	MaxReplicas int32 `json:"maxReplicas"`

	// TargetCPUUtilizationPercentage is the average CPU use, in percent of the runtime
	// container's CPU request, the autoscaler keeps the pods at.
	// +optional
	// +kubebuilder:default=70
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	TargetCPUUtilizationPercentage int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// RuntimeNetworkPolicy turns the connector's NetworkPolicy on or off.
type RuntimeNetworkPolicy struct {
	// Enabled creates the NetworkPolicy (true) or removes it (false). Unset follows the operator
	// (--network-policies, on by default). A connector with
	// authentication.clientCertificate.forwarded always has one: false is refused.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
}

// APIConnectorStatus is the observed state of the connector.
type APIConnectorStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready, Reconciling, Stalled, and the details RulesValid, DeploymentAvailable,
	// CertificateReady, RouteReady, TrustedProxiesScoped.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// Endpoints are the full HTTPS URLs to configure in Entra ID.
	// +optional
	// +kubebuilder:validation:MaxItems=8
	Endpoints []string `json:"endpoints,omitempty"`

	// ReadyReplicas is the number of runtime pods ready to serve.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas,omitempty"`

	// Replicas is the number of runtime pods that exist (current).
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// DesiredReplicas is the number of runtime pods the Deployment asks for: spec.runtime.replicas,
	// or the autoscaler's choice with spec.runtime.autoscaling.
	// +optional
	DesiredReplicas int32 `json:"desiredReplicas,omitempty"`

	// ConfigHash identifies the configuration (rendered spec and referenced Secret data) the
	// runtime pods were rolled out with. It is an HMAC keyed by a key only the operator holds, so
	// it cannot be used to guess a Secret's value.
	// +optional
	ConfigHash string `json:"configHash,omitempty"`

	// Entra is what the operator registered in Entra (spec.entra).
	// +optional
	Entra *EntraStatus `json:"entra,omitempty"`
}

// MaxNameLength is the longest connector name: every child's name is derived from it and the
// longest, the metrics Service `<name>-metrics`, must stay a DNS-1035 label (63 characters).
const MaxNameLength = 63 - len("-metrics")

// APIConnector turns declarative CEL rules into an Entra ID API connector endpoint.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apic
// +kubebuilder:printcolumn:name="Step",type=string,JSONPath=`.spec.step`
// +kubebuilder:printcolumn:name="Enforcement",type=string,JSONPath=`.spec.enforcement`,priority=1
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoints[0]`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 55 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be at most 55 lowercase letters, digits and '-', start with a letter and end with a letter or digit (a DNS-1035 label): it names the connector's Service and <name>-metrics"
type APIConnector struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired connector.
	// +required
	Spec APIConnectorSpec `json:"spec"`

	// Status is the observed state. Its default observedGeneration of 0 (generations start at 1) tells kstatus (Flux,
	// Argo CD, kubectl wait) that no controller has judged the connector yet, so a connector the
	// operator never reconciled is in progress rather than current.
	// +optional
	// +kubebuilder:default={observedGeneration: 0}
	Status APIConnectorStatus `json:"status,omitempty"`
}

// APIConnectorList is a list of APIConnectors.
// +kubebuilder:object:root=true
type APIConnectorList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIConnector `json:"items"`
}
