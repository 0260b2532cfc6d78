package v1alpha1

import "time"

// The Entra wire contract's facts about steps live here, in one place: the runtime, the
// controller, the local test runner and the documentation read them.

// Steps are the steps a connector can serve, in the order a sign-up meets them.
var Steps = []Step{
	StepPostFederationSignup, StepOnAttributeCollectionStart, StepOnAttributeCollectionSubmit,
	StepPostAttributeCollection, StepOnTokenIssuanceStart,
}

// DefaultFailureMessage is the userMessage when a connector fails closed and sets no failureMessage.
const DefaultFailureMessage = "We can't complete your sign-up right now. Please try again later."

const (
	// LegacyEntraWait is how long Entra waits for a legacy API connector (it then retries once).
	LegacyEntraWait = 20 * time.Second
	// ExtensionEntraWait is the longest Entra can be configured to wait for a custom
	// authentication extension (timeoutInMilliseconds 200-2000, 1000 by default; one retry at most).
	ExtensionEntraWait = 2 * time.Second
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
	for _, step := range Steps {
		if s == step {
			return true
		}
	}
	return false
}

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
func (s Step) AllowsValidationError() bool {
	return s == StepPostAttributeCollection || s == StepOnAttributeCollectionSubmit
}

// AllowsBlockPage reports whether s can stop the sign-up with a message: every step but token
// issuance, which has no block page (a failure there is an error status).
func (s Step) AllowsBlockPage() bool { return s != StepOnTokenIssuanceStart }

// IsReservedClaim reports whether a connector may never return the claim name: Entra refuses
// email, and the others are the legacy answer's own fields.
func IsReservedClaim(name string) bool {
	switch name {
	case "email", "version", "action", "status", "userMessage":
		return true
	}
	return false
}
