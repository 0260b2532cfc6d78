package v1alpha1

import "time"

// The Entra wire contract's facts about steps live here, in one place: the runtime, the
// controller, the local test runner and the documentation read them.

// Steps are the steps a connector can serve, in the order a user flow meets them.
var Steps = []Step{
	StepPostFederationSignup, StepOnOtpSend, StepOnAttributeCollectionStart, StepOnAttributeCollectionSubmit,
	StepPostAttributeCollection, StepOnPasswordSubmit, StepOnTokenIssuanceStart, StepPreTokenIssuance,
}

// stepFacts is what Entra's contract says about one step.
type stepFacts struct {
	// extension: a custom authentication extension event (envelope, bearer token), else a
	// legacy API connector step (flat claims, basic or client certificate).
	extension bool
	// blockPage: the step can stop the flow with a message (ShowBlockPage, showBlockPage).
	blockPage bool
	// validationError: the step can send the user back to the form (ValidationError,
	// showValidationError).
	validationError bool
	// wireNames are other names Entra's documentation gives the step in the request's step claim.
	wireNames []string
	// noClaims: the answer carries no claims.
	noClaims bool
	// passwordOutcomes: rules may answer migratePassword, updatePassword and retry.
	passwordOutcomes bool
	// sensitive names the CEL variable holding what the request carries that only calls may see
	// (a one-time code, a password); "" when none.
	sensitive string
	// graph is how Microsoft Graph registers a connector at the step.
	graph GraphRegistration
}

// GraphRegistration is how Microsoft Graph registers a connector at a step: a legacy step's
// property of a user flow's apiConnectorConfiguration, or an extension step's
// customAuthenticationExtension, authenticationEventListener and handler types.
type GraphRegistration struct {
	// UserFlowProperty is the apiConnectorConfiguration property (legacy steps).
	UserFlowProperty string
	// Extension, Listener and Handler are the @odata.type values (extension steps).
	Extension, Listener, Handler string
}

var facts = map[Step]stepFacts{
	StepPostFederationSignup: {blockPage: true,
		graph: GraphRegistration{UserFlowProperty: "postFederationSignup"}},
	StepPostAttributeCollection: {blockPage: true, validationError: true,
		graph: GraphRegistration{UserFlowProperty: "postAttributeCollection"}},
	StepPreTokenIssuance: {wireNames: []string{"PreTokenApplicationClaims"},
		graph: GraphRegistration{UserFlowProperty: "preTokenIssuance"}},
	StepOnAttributeCollectionStart: {extension: true, blockPage: true,
		graph: GraphRegistration{Extension: "#microsoft.graph.onAttributeCollectionStartCustomExtension", Listener: "#microsoft.graph.onAttributeCollectionStartListener", Handler: "#microsoft.graph.onAttributeCollectionStartCustomExtensionHandler"}},
	StepOnAttributeCollectionSubmit: {extension: true, blockPage: true, validationError: true,
		graph: GraphRegistration{Extension: "#microsoft.graph.onAttributeCollectionSubmitCustomExtension", Listener: "#microsoft.graph.onAttributeCollectionSubmitListener", Handler: "#microsoft.graph.onAttributeCollectionSubmitCustomExtensionHandler"}},
	StepOnTokenIssuanceStart: {extension: true,
		graph: GraphRegistration{Extension: "#microsoft.graph.onTokenIssuanceStartCustomExtension", Listener: "#microsoft.graph.onTokenIssuanceStartListener", Handler: "#microsoft.graph.onTokenIssuanceStartCustomExtensionHandler"}},
	StepOnOtpSend: {extension: true, noClaims: true, sensitive: "otp",
		graph: GraphRegistration{Extension: "#microsoft.graph.onOtpSendCustomExtension", Listener: "#microsoft.graph.onEmailOtpSendListener", Handler: "#microsoft.graph.onOtpSendCustomExtensionHandler"}},
	StepOnPasswordSubmit: {extension: true, blockPage: true, noClaims: true, passwordOutcomes: true, sensitive: "credentials",
		graph: GraphRegistration{Extension: "#microsoft.graph.onPasswordSubmitCustomExtension", Listener: "#microsoft.graph.onPasswordSubmitListener", Handler: "#microsoft.graph.onPasswordMigrationCustomExtensionHandler"}},
}

// Graph is how Microsoft Graph registers a connector at the step.
func (s Step) Graph() GraphRegistration { return facts[s].graph }

// DefaultFailureMessage is the userMessage when a connector fails closed and sets no failureMessage.
const DefaultFailureMessage = "We can't complete your sign-up right now. Please try again later."

const (
	// LegacyEntraWait is how long Entra waits for a legacy API connector (it then retries once).
	LegacyEntraWait = 20 * time.Second
	// ExtensionEntraWait is the longest Entra can be configured to wait for a custom
	// authentication extension (timeoutInMilliseconds 200-2000, 1000 by default; one retry at most).
	ExtensionEntraWait = 2 * time.Second
	// MinExtensionEntraWait is the shortest wait Entra can be configured with for an extension
	// (clientConfiguration.timeoutInMilliseconds).
	MinExtensionEntraWait = 200 * time.Millisecond
)

// AnswerMargin is the part of a request's budget kept for encoding and writing the answer. Work for
// a request (reading the body, calls, rules, sync events) stops AnswerMargin before the budget
// ends; the decided answer, or the failure policy's when the work did not finish, goes out in what
// remains. Encoding and writing take microseconds; the margin covers a pod that is briefly not
// scheduled: a container over its CPU limit can be throttled for up to the 100 ms CFS period.
const AnswerMargin = 100 * time.Millisecond

// Budget is the time within which the runtime answers a request at this step: the connector's
// timeout (spec.timeout, or DefaultTimeout when it is not set) but never more than EntraWait, since
// an answer after Entra gave up is never seen.
func (s Step) Budget(timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = s.DefaultTimeout()
	}
	return min(timeout, s.EntraWait())
}

// WorkTimeout is how long the work for a request may take within a budget of Budget(timeout): the
// budget minus AnswerMargin, or half the budget when it is shorter than twice the margin.
func (s Step) WorkTimeout(timeout time.Duration) time.Duration {
	b := s.Budget(timeout)
	if b < 2*AnswerMargin {
		return b / 2
	}
	return b - AnswerMargin
}

// Valid reports whether s is a step the runtime serves.
func (s Step) Valid() bool {
	_, ok := facts[s]
	return ok
}

// IsExtension reports whether the step is a custom authentication extension event (the
// envelope protocol with bearer authentication) rather than a legacy API connector step.
func (s Step) IsExtension() bool { return facts[s].extension }

// StepFromWire maps the step claim of a legacy request to the step it names: a step's own name
// or another name Entra's documentation uses for it (PreTokenApplicationClaims is
// PreTokenIssuance). ok is false for anything else.
func StepFromWire(name string) (step Step, ok bool) {
	if Step(name).Valid() {
		return Step(name), true
	}
	for s, f := range facts {
		for _, n := range f.wireNames {
			if n == name {
				return s, true
			}
		}
	}
	return "", false
}

// WireNames are the other names Entra's documentation gives the step in requests.
func (s Step) WireNames() []string { return facts[s].wireNames }

// EntraWait is the longest Entra waits for an answer at this step.
func (s Step) EntraWait() time.Duration {
	if s.IsExtension() {
		return ExtensionEntraWait
	}
	return LegacyEntraWait
}

// DefaultTimeout is the connector's deadline when spec.timeout is not set: 8 s at the legacy
// steps (room for Entra's retry within its 20 s), 1.5 s at the custom authentication extension
// steps (inside the 2 s Entra waits at most, short of it when the tenant keeps the 1 s default).
func (s Step) DefaultTimeout() time.Duration {
	if s.IsExtension() {
		return 1500 * time.Millisecond
	}
	return 8 * time.Second
}

// AllowsValidationError reports whether Entra accepts a validation error at s: ValidationError
// (HTTP 400) at PostAttributeCollection, showValidationError at OnAttributeCollectionSubmit.
func (s Step) AllowsValidationError() bool { return facts[s].validationError }

// AllowsBlockPage reports whether s can stop the flow with a message. Token issuance (both
// protocols) and OnOtpSend have none: a connector that must fail closed there answers with an
// error status.
func (s Step) AllowsBlockPage() bool { return facts[s].blockPage }

// AllowsRules reports whether rules can decide at s: they need an answer other than Continue.
func (s Step) AllowsRules() bool {
	return s.AllowsBlockPage() || s.AllowsValidationError() || s.AllowsPasswordOutcomes()
}

// AllowsPasswordOutcomes reports whether rules may answer migratePassword, updatePassword and
// retry at s: OnPasswordSubmit.
func (s Step) AllowsPasswordOutcomes() bool { return facts[s].passwordOutcomes }

// ReturnsClaims reports whether Entra takes claims in the answer at s.
func (s Step) ReturnsClaims() bool { return s.Valid() && !facts[s].noClaims }

// SensitiveVariable is the CEL variable holding what requests at s carry that only calls'
// expressions may see, never rules, claims, events, logs or metrics: otp (the one-time code and
// the address it goes to) at OnOtpSend, credentials (the decrypted username and password) at
// OnPasswordSubmit. "" at steps without one.
func (s Step) SensitiveVariable() string { return facts[s].sensitive }

// FailsWithErrorStatus reports whether a fail-closed answer at s is an HTTP error status rather
// than a block page: the steps without one.
func (s Step) FailsWithErrorStatus() bool { return s.Valid() && !s.AllowsBlockPage() }

// IsReservedClaim reports whether a connector may never return the claim name: Entra refuses
// email, and the others are the legacy answer's own fields.
func IsReservedClaim(name string) bool {
	switch name {
	case "email", "version", "action", "status", "userMessage":
		return true
	}
	return false
}
