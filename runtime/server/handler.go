package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// BadRequestMessage is the userMessage of answers to requests that could not be processed.
const BadRequestMessage = "The request could not be processed."

// Handler returns the connector endpoint. It answers on every path: the ingress routes the
// connector's host and path to it.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveConnector) }

// OpsHandler returns /healthz, /readyz and /metrics, for a listener separate from the connector's
// so they are never exposed through the connector's ingress.
func (s *Server) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, why := s.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, why+"\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	return mux
}

// outcome is what one request led to, for the log line and the metrics.
type outcome struct {
	action  string // entra action, or a refusal class such as Unauthorized
	code    int
	source  string // who decided: one of the source* values
	rule    string
	reason  string // why a request was refused or failed over to the policy: a fixed code
	failure string // the evaluator's Decision.Failure, a message (logged as reason)
	claims  []byte // returned claims (Continue), logged only with LogClaims
	// Filled when the request was evaluated:
	evaluated bool
	eval      time.Duration
	audits    []entra.Audit
	audited   *entra.Decision // what a connector in Audit would have answered
	calls     []rules.CallRecord
}

// Who decided an answer: the source label of apiconnector_requests_total.
const (
	sourceRule    = "rule"    // a rule matched
	sourceDefault = "default" // no rule matched: Continue, with the claims
	sourcePolicy  = "policy"  // the failure policy answered: an expression, call or the evaluator failed
	sourceAudit   = "audit"   // the connector is in Audit: Continue whatever it would have answered
	sourceRefused = "refused" // refused before evaluation (authentication, method, body)
)

func (s *Server) serveConnector(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	cfg := s.cfg.Load() // one connector version for the whole request
	s.metrics.inflight.Inc()
	defer s.metrics.inflight.Dec()

	id := requestID(r.Header.Get("X-Request-Id"))
	w.Header().Set("X-Request-Id", id)
	log := requestLog{log: s.log, id: id, step: string(cfg.step)}
	r, span := s.startSpan(r, cfg.step, start)

	o, req := s.answer(w, r, cfg, log, start)

	elapsed := time.Since(start)
	s.metrics.requests.WithLabelValues(string(cfg.step), o.action, strconv.Itoa(o.code), o.source).Inc()
	s.metrics.duration.WithLabelValues(string(cfg.step)).Observe(elapsed.Seconds())
	level := slog.LevelInfo
	if o.code >= 400 && o.action != string(entra.ActionValidationError) {
		level = slog.LevelWarn
	}
	var buf [18]slog.Attr // the most this line has, trace_id included; LogAttrs copies them, so they stay on the stack
	attrs := decisionLog(buf[:0], cfg, id, o, elapsed, s.opts.LogClaims, req)
	if span != nil {
		attrs = append(attrs, slog.String("trace_id", span.SpanContext().TraceID().String()))
		endSpan(span, cfg, r.Method, id, o)
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

// auditEntry is an entra.Audit as the decision log writes it.
type auditEntry struct {
	Rule    string `json:"rule"`
	Outcome string `json:"outcome"`
}

// decisionLog appends to attrs the attributes of a request's single log line, the audit trail of
// its decision (docs/runtime.md lists them). Claim values only with logClaims.
func decisionLog(attrs []slog.Attr, cfg *config, id string, o outcome, elapsed time.Duration, logClaims bool, req *entra.Request) []slog.Attr {
	attrs = append(attrs, slog.String("request_id", id), slog.String("connector", cfg.name),
		slog.String("step", string(cfg.step)), slog.String("action", o.action), slog.Int("code", o.code),
		slog.String("source", o.source), slog.Float64("latency_ms", ms(elapsed)))
	if o.evaluated {
		attrs = append(attrs, slog.Float64("eval_ms", ms(o.eval)))
	}
	if o.rule != "" {
		attrs = append(attrs, slog.String("rule", o.rule))
	}
	if reason := cmp.Or(o.reason, o.failure); reason != "" {
		attrs = append(attrs, slog.String("reason", reason))
	}
	if len(o.audits) > 0 {
		audits := make([]auditEntry, len(o.audits))
		for i, a := range o.audits {
			audits[i] = auditEntry(a)
		}
		attrs = append(attrs, slog.Any("audit", audits))
	}
	if a := o.audited; a != nil {
		// Never the user message: a messageExpression may quote claims.
		attrs = append(attrs, slog.String("audit_action", string(a.Action)))
		if a.Rule != "" {
			attrs = append(attrs, slog.String("audit_rule", a.Rule))
		}
		if a.Failure != "" {
			attrs = append(attrs, slog.String("audit_failure", a.Failure))
		}
	}
	if len(o.calls) > 0 {
		attrs = append(attrs, slog.Any("calls", o.calls))
	}
	if logClaims {
		if req != nil {
			attrs = append(attrs, slog.String("claims", string(req.Canonical())))
		}
		if len(o.claims) > 0 {
			attrs = append(attrs, slog.String("returned_claims", string(o.claims)))
		}
	}
	return attrs
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// requestLog writes the other lines of a request with its request_id and step first, as a
// logger made by slog.Logger.With would, without building one for every request.
type requestLog struct {
	log      *slog.Logger
	id, step string
}

func (l requestLog) write(level slog.Level, msg string, attrs ...slog.Attr) {
	all := append([]slog.Attr{slog.String("request_id", l.id), slog.String("step", l.step)}, attrs...)
	l.log.LogAttrs(context.Background(), level, msg, all...)
}

// answer writes the response and reports what happened. The decoded request is returned for logging.
// start is when the request arrived: the deadline counts from it, and authentication checks
// validity periods at it (one clock reading for all).
func (s *Server) answer(w http.ResponseWriter, r *http.Request, cfg *config, log requestLog, start time.Time) (outcome, *entra.Request) {
	// The deadline covers everything from arrival, body reading included, and ends
	// v1alpha1.AnswerMargin before the budget so the answer is written within it.
	deadline := start.Add(cfg.work)
	ctx, cancel := context.WithDeadline(r.Context(), deadline)
	defer cancel()
	// A client that trickles its body gets a 400 (read_body) at the deadline, not one at the
	// server's ReadTimeout. Errors mean the connection cannot have one; there is nothing to do then.
	_ = http.NewResponseController(w).SetReadDeadline(deadline)

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return s.refuse(w, cfg, http.StatusMethodNotAllowed, "MethodNotAllowed", "method"), nil
	}
	// Authentication comes before anything about the body, so unauthenticated callers learn
	// nothing about what the endpoint accepts.
	if reason := authenticate(ctx, r, cfg.auth, s.creds.Load(), start); reason != "" {
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		switch cfg.auth.mode {
		case authBasic:
			w.Header().Set("WWW-Authenticate", `Basic realm="apiconnector", charset="UTF-8"`)
		case authBearer:
			w.Header().Set("WWW-Authenticate", `Bearer realm="apiconnector"`)
		}
		w.WriteHeader(http.StatusUnauthorized)
		return outcome{action: "Unauthorized", code: http.StatusUnauthorized, source: sourceRefused, reason: reason}, nil
	}
	if !isJSON(r.Header.Get("Content-Type")) {
		return s.refuse(w, cfg, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "content_type"), nil
	}
	if r.ContentLength > s.opts.MaxBody {
		return s.refuse(w, cfg, http.StatusRequestEntityTooLarge, "TooLarge", "body_too_large"), nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return s.refuse(w, cfg, http.StatusRequestEntityTooLarge, "TooLarge", "body_too_large"), nil
		}
		return s.refuse(w, cfg, http.StatusBadRequest, "BadRequest", "read_body"), nil
	}
	req, err := decode(cfg.step, body)
	if err != nil {
		log.write(slog.LevelWarn, "request refused", slog.String("error", err.Error()))
		return s.refuse(w, cfg, http.StatusBadRequest, "BadRequest", decodeReason(err)), nil
	}

	var d *entra.Decision
	trail := &rules.CallTrail{}
	evalStart := time.Now()
	failure := s.openPasswordContext(cfg, req, start, log)
	evaluated := failure == ""
	if evaluated {
		d, failure = s.evaluate(rules.WithCallTrail(ctx, trail), cfg, req, log)
	}
	o := outcome{reason: failure, source: sourceDefault, evaluated: evaluated, eval: time.Since(evalStart), calls: trail.Records()}
	if failure != "" {
		s.metrics.policyFailures.WithLabelValues(string(cfg.policy), failure).Inc()
		d = policyDecision(cfg)
		o.source = sourcePolicy
	} else {
		o.rule, o.audits, o.audited = d.Rule, d.Audits, d.Audited
		for _, a := range d.Audits {
			s.metrics.ruleAudits.WithLabelValues(a.Rule, a.Outcome).Inc()
		}
		if d.Audited != nil {
			o.source = sourceAudit
		}
		if d.Rule != "" {
			s.metrics.ruleHits.WithLabelValues(d.Rule).Inc()
			o.source = sourceRule
		}
		if d.Failure != "" {
			// The evaluator applied a policy itself (a call or expression failed); count it too.
			s.metrics.policyFailures.WithLabelValues(string(cfg.policy), "evaluator").Inc()
			o.failure = d.Failure
			if d.Rule == "" {
				o.source = sourcePolicy
			}
		}
		if d.Action == entra.ActionValidationError && !cfg.step.AllowsValidationError() {
			// Entra only accepts a validation error at PostAttributeCollection and
			// OnAttributeCollectionSubmit; the CRD forbids such rules elsewhere, but an evaluator
			// must not be able to send one anyway.
			log.write(slog.LevelWarn, "ValidationError is not allowed at this step; answering ShowBlockPage", slog.String("rule", d.Rule))
			s.metrics.downgradedTotal.Inc()
			d = forStep(cfg.step, d)
		}
	}
	if x := req.Extension; x != nil && x.Nonce != "" {
		echo := *d // the evaluator's decision is its own; echo the nonce in a copy
		echo.Nonce = x.Nonce
		d = &echo
	}
	status, out := Encode(cfg.step, d)
	if status != http.StatusOK && status != http.StatusBadRequest {
		log.write(slog.LevelError, "failing closed with an error status: this step has no block page", slog.Int("status", status))
	}
	s.writeJSON(w, status, out)
	o.action, o.code = string(d.Action), status
	if cfg.step.AllowsPasswordOutcomes() {
		o.action = entra.PasswordSubmitAnswer(d.Action) // as sent: no rule matched is Retry
	}
	// Only the claims log needs the returned claims encoded.
	if s.opts.LogClaims && d.Action == entra.ActionContinue && len(d.Claims)+len(d.ClaimValues) > 0 {
		_, o.claims = Encode(cfg.step, &entra.Decision{Action: entra.ActionContinue, Claims: d.Claims, ClaimValues: d.ClaimValues})
	}
	return o, req
}

// decode parses a request body in the wire format of step: the custom authentication extension
// envelope at the On... steps, the flat claims object at the legacy steps.
func decode(step v1alpha1.Step, body []byte) (*entra.Request, error) {
	if step.IsExtension() {
		return entra.DecodeExtensionRequest(body, string(step))
	}
	return entra.DecodeRequest(body)
}

// Encode renders a final decision in the wire format of step.
func Encode(step v1alpha1.Step, d *entra.Decision) (int, []byte) {
	if step.IsExtension() {
		return entra.EncodeExtensionDecision(string(step), d)
	}
	return entra.EncodeLegacyDecision(step, d)
}

// Decode parses a request body as the server does for step (the eval command uses it).
func Decode(step v1alpha1.Step, body []byte) (*entra.Request, error) { return decode(step, body) }

// evaluate runs the evaluator within ctx. It returns a non-empty failure reason (error, deadline,
// canceled, panic, invalid_decision) when the failure policy must answer instead.
//
// An entra.PromptEvaluator (the rules engine) runs on the request's goroutine. Any other
// evaluator runs in a goroutine of its own, so one that ignores ctx cannot hold the answer past
// the deadline. Either way a panic is recovered.
func (s *Server) evaluate(ctx context.Context, cfg *config, req *entra.Request, log requestLog) (*entra.Decision, string) {
	start := time.Now()
	var res evalResult
	if _, prompt := cfg.ev.(entra.PromptEvaluator); prompt {
		res = evalRecovered(ctx, cfg.ev, req)
		if err := ctx.Err(); err != nil && res.err == nil {
			res = evalResult{err: err} // answered, but too late to be of use
		}
	} else {
		done := make(chan evalResult, 1) // buffered: a late evaluator must not block forever
		go func() { done <- evalRecovered(ctx, cfg.ev, req) }()
		select {
		case res = <-done:
		case <-ctx.Done():
			res.err = ctx.Err()
		}
	}
	s.metrics.evalDuration.Observe(time.Since(start).Seconds())

	var pe *panicError
	switch {
	case errors.As(res.err, &pe):
		log.write(slog.LevelError, "evaluator panicked; failure policy applies", slog.String("policy", string(cfg.policy)), slog.String("panic", pe.Error()))
		return nil, "panic"
	case errors.Is(res.err, context.DeadlineExceeded):
		log.write(slog.LevelError, "deadline exceeded; failure policy applies", slog.String("policy", string(cfg.policy)), slog.String("timeout", cfg.timeout.String()))
		return nil, "deadline"
	case errors.Is(res.err, context.Canceled):
		log.write(slog.LevelWarn, "request canceled by the client; failure policy applies", slog.String("policy", string(cfg.policy)))
		return nil, "canceled"
	case res.err != nil:
		log.write(slog.LevelError, "evaluation failed; failure policy applies", slog.String("policy", string(cfg.policy)), slog.String("error", res.err.Error()))
		return nil, "error"
	case res.d == nil || !validAction(cfg.step, res.d.Action):
		log.write(slog.LevelError, "evaluator returned no valid decision; failure policy applies", slog.String("policy", string(cfg.policy)))
		return nil, "invalid_decision"
	}
	return res.d, ""
}

// Finalize turns an evaluator's result into the decision the endpoint sends, exactly as the handler
// does: an error, a nil decision or an unknown action becomes the connector's failure-policy
// decision, and a ValidationError at a step that does not allow it becomes ShowBlockPage. The eval
// command uses it to print what Entra would receive.
func Finalize(conn *v1alpha1.APIConnector, d *entra.Decision, err error) *entra.Decision {
	cfg := &config{step: conn.Spec.Step, policy: conn.Spec.AnswerPolicy(), failureMessage: conn.Spec.FailureMessage}
	if cfg.failureMessage == "" {
		cfg.failureMessage = v1alpha1.DefaultFailureMessage
	}
	if err != nil || d == nil || !validAction(cfg.step, d.Action) {
		return policyDecision(cfg)
	}
	return forStep(cfg.step, d)
}

// forStep downgrades a ValidationError at a step that has none to ShowBlockPage.
func forStep(step v1alpha1.Step, d *entra.Decision) *entra.Decision {
	if d.Action == entra.ActionValidationError && !step.AllowsValidationError() {
		return &entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: d.UserMessage, Rule: d.Rule, Failure: d.Failure}
	}
	return d
}

// policyDecision is the answer when the connector cannot decide: Fail stops the sign-up with the
// failure message, Ignore lets it continue unchanged.
func policyDecision(cfg *config) *entra.Decision {
	if cfg.policy == v1alpha1.FailurePolicyIgnore {
		return &entra.Decision{Action: entra.ActionContinue}
	}
	return &entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: cfg.failureMessage}
}

// refuse answers a request that was not evaluated.
func (s *Server) refuse(w http.ResponseWriter, cfg *config, code int, action, reason string) outcome {
	s.metrics.badRequests.WithLabelValues(reason).Inc()
	s.writeJSON(w, code, BadRequestBody(cfg.step, code))
	return outcome{action: action, code: code, source: sourceRefused, reason: reason}
}

// BadRequestBody is the body of a refusal (400, 405, 413, 415). Entra only understands its three
// actions, so:
//   - a 400 at PostAttributeCollection is a well-formed ValidationError with a generic message: the
//     user stays on the form and may submit again, and no user is created;
//   - everything else carries no action, only version, status and the generic userMessage, so Entra
//     treats it as an error (the sign-up stops, i.e. fails closed) and is never handed a
//     ValidationError at a step that does not allow one.
//
// Details of what was wrong are only logged, with the request id the answer carries in X-Request-Id.
//
// At custom authentication extension steps the body is {"error":{"code":"<status>","message":...}}:
// Entra treats any status but 200 as a failed call and stops the flow.
func BadRequestBody(step v1alpha1.Step, code int) []byte {
	if step.IsExtension() {
		return entra.ExtensionRefusalBody(code, BadRequestMessage)
	}
	if code == http.StatusBadRequest && step == v1alpha1.StepPostAttributeCollection {
		_, b := entra.EncodeDecision(&entra.Decision{Action: entra.ActionValidationError, UserMessage: BadRequestMessage})
		return b
	}
	return fmt.Appendf(nil, `{"version":%q,"status":%d,"userMessage":%q}`, entra.Version, code, BadRequestMessage)
}

func (s *Server) writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(body)
}

// validAction reports whether an evaluator may decide a at step: the three legacy actions
// everywhere (the encoders map them), and the password answers at OnPasswordSubmit.
func validAction(step v1alpha1.Step, a entra.Action) bool {
	switch a {
	case entra.ActionContinue, entra.ActionShowBlockPage, entra.ActionValidationError:
		return true
	case entra.ActionMigratePassword, entra.ActionUpdatePassword, entra.ActionRetry:
		return step.AllowsPasswordOutcomes()
	}
	return false
}

// isJSON accepts application/json with an optional UTF-8 charset (JSON is UTF-8 by RFC 8259).
func isJSON(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
}

func decodeReason(err error) string {
	var de *entra.DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	var ce *entra.ClaimTypeError
	if errors.As(err, &ce) {
		return "claim_type"
	}
	var et *entra.EventTypeError
	if errors.As(err, &et) {
		return "event_type"
	}
	return "malformed_json"
}

// requestID returns the caller's X-Request-Id when it is a short token of safe characters (it
// ends up in logs and a response header), else a fresh random id.
func requestID(given string) string {
	if n := len(given); n > 0 && n <= 128 {
		ok := true
		for _, c := range []byte(given) {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
				ok = false
				break
			}
		}
		if ok {
			return given
		}
	}
	return rand.Text() // unique, not secret (26 base32 characters)
}

type panicError struct{ value any }

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

type evalResult struct {
	d   *entra.Decision
	err error
}

func evalRecovered(ctx context.Context, ev entra.Evaluator, req *entra.Request) (res evalResult) {
	defer func() {
		if p := recover(); p != nil {
			res = evalResult{err: &panicError{value: p}}
		}
	}()
	d, err := ev.Evaluate(ctx, req)
	return evalResult{d, err}
}
