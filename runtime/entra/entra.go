// Package entra is the wire contract of Entra ID API connectors (self-service sign-up user flows):
// the request Entra POSTs and the three answers it understands. It knows nothing of rules; the
// server decodes with it and the rules engine decides with the decoded Request.
package entra

import (
	"context"
	"sync"
)

// Version is the "version" field of every answer.
const Version = "1.0.0"

// Action is what Entra does with the answer.
type Action string

const (
	// ActionContinue lets the sign-up continue, optionally with returned claims (HTTP 200).
	ActionContinue Action = "Continue"
	// ActionShowBlockPage stops the sign-up and shows userMessage (HTTP 200).
	ActionShowBlockPage Action = "ShowBlockPage"
	// ActionValidationError sends the user back to the form with userMessage (HTTP 400).
	// Only valid at PostAttributeCollection.
	ActionValidationError Action = "ValidationError"
)

// Request is one decoded API connector call.
type Request struct {
	// Claims holds every top-level key of the JSON body, known or not, with the types JSON
	// decoding gives (string, float64, bool, []any, map[string]any). identities stays a []any of
	// maps. Missing claims are absent, never empty strings.
	Claims map[string]any
	// Extension is set for custom authentication extension requests (DecodeExtensionRequest):
	// the envelope's identifiers, authenticationContext and the collected attributes' types.
	// Nil for legacy API connector requests.
	Extension *Extension

	// body is the decoded body, canonicalised on the first call of Canonical: only event IDs
	// and the claims log need it, so most requests never pay for it.
	body      []byte
	once      sync.Once
	canonical []byte
}

// NewRequest is a request with the given claims whose Canonical is canonical (the eval and test
// commands build requests from claims rather than a body).
func NewRequest(claims map[string]any, canonical []byte) *Request {
	return &Request{Claims: claims, canonical: canonical}
}

// Canonical is the body re-encoded with sorted keys and no insignificant whitespace, so two
// deliveries of the same sign-up (Entra retries once) have the same bytes. A decoded request's is
// computed on the first call (safe for concurrent use); the decoder accepted the body, so it
// cannot fail.
func (r *Request) Canonical() []byte {
	if r.body != nil {
		r.once.Do(func() { r.canonical, _ = canonical(r.body) })
	}
	return r.canonical
}

// Decision is the answer to one request.
type Decision struct {
	Action Action
	// UserMessage is shown for ShowBlockPage and ValidationError.
	UserMessage string
	// Claims are returned on Continue as top-level string keys.
	Claims map[string]string
	// ClaimValues are returned claims whose value is not a string: int64 and bool (attributes
	// of those types at the attribute collection events) and []string (string-array claims at
	// OnTokenIssuanceStart). Only custom authentication extension steps produce them; a name is
	// in Claims or ClaimValues, not both.
	ClaimValues map[string]any
	// AttributeErrors are per-attribute messages of a ValidationError (showValidationError's
	// attributeErrors at OnAttributeCollectionSubmit), by attribute name.
	AttributeErrors map[string]string
	// Rule is the name of the rule that decided, empty when none matched.
	Rule string
	// Failure says why the connector failed closed or open (a call or expression error), empty
	// otherwise. It is for logs and metrics and never shown to the user.
	Failure string
	// Nonce is echoed in the answer at OnPasswordSubmit (the decrypted context's nonce).
	Nonce string
	// Audits are the rules in Audit enforcement that matched or failed, in order; they did not
	// change the answer. For a connector in Audit they also hold the rule that would have decided.
	Audits []Audit
	// Audited is, for a connector in Audit enforcement, the answer it would have given in Enforce
	// (the answer itself is then Continue with no claims); nil otherwise.
	Audited *Decision
}

// Audit is one audited rule: its name and what it would have answered.
type Audit struct {
	Rule string
	// Outcome is the action the rule would have answered (ShowBlockPage, ValidationError), or
	// AuditError when its expression failed.
	Outcome string
}

// AuditError is the Audit outcome of a rule whose expression failed.
const AuditError = "Error"

// Evaluator decides the answer to a request. The rules engine implements it; the server calls it
// within the connector's deadline. Evaluate applies the connector's failure policies itself and
// returns an error only when it could not decide at all; the server then fails closed.
type Evaluator interface {
	Evaluate(ctx context.Context, req *Request) (*Decision, error)
}

// PromptEvaluator is an Evaluator that returns promptly once its context is done: every wait,
// call and expression loop watches ctx. The server runs such an evaluator on the request's own
// goroutine; any other evaluator runs on a separate one, so that ignoring ctx cannot hold the
// answer past the deadline (handing a request to another goroutine costs about a sixth of its CPU).
type PromptEvaluator interface {
	Evaluator
	StopsWithContext()
}
