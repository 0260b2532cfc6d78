package server

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiconnector/operator/runtime/rules"
)

// Metrics are the runtime's Prometheus metrics. They live in a struct registered on an injected
// registry (never the global one) so tests and several servers in one process do not collide.
type Metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	authFailures    *prometheus.CounterVec
	ruleHits        *prometheus.CounterVec
	ruleAudits      *prometheus.CounterVec
	evalDuration    prometheus.Histogram
	callDuration    *prometheus.HistogramVec
	callFailures    *prometheus.CounterVec
	reloads         *prometheus.CounterVec
	policyFailures  *prometheus.CounterVec
	badRequests     *prometheus.CounterVec
	inflight        prometheus.Gauge
	downgradedTotal prometheus.Counter
	events          *prometheus.CounterVec
	exprErrors      *prometheus.CounterVec
	passwordContext *prometheus.CounterVec
	callRetries     *prometheus.CounterVec
	breakerState    *prometheus.GaugeVec
	breakerChanges  *prometheus.CounterVec
	cache           *prometheus.CounterVec
}

// latencyBuckets span a rule-only answer (a fraction of a millisecond) to the 20 s Entra waits
// for a legacy connector, with Entra's 1 and 2 s budgets of custom authentication extensions.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 20}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_requests_total",
			Help: "Connector requests answered, by step, action (Continue, ShowBlockPage, ValidationError; at OnPasswordSubmit MigratePassword, UpdatePassword, Retry, Block; or BadRequest/Unauthorized/MethodNotAllowed/UnsupportedMediaType/TooLarge), HTTP code and source: rule (a rule decided), default (no rule matched), policy (the failure policy answered because an expression, a call or the evaluator failed), refused (not evaluated), audit (the connector is in Audit enforcement and answered Continue whatever it would have decided).",
		}, []string{"step", "action", "code", "source"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiconnector_request_duration_seconds",
			Help:    "Time from request arrival to the answer being written, by step.",
			Buckets: latencyBuckets,
		}, []string{"step"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_auth_failures_total",
			Help: "Requests refused with 401, by reason.",
		}, []string{"reason"}),
		ruleHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_rule_hits_total",
			Help: "Decisions made by a rule, by rule name.",
		}, []string{"rule"}),
		ruleAudits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_rule_audit_total",
			Help: "Rules in Audit enforcement that matched (outcome: the action they would have answered, ShowBlockPage or ValidationError) or whose expression failed (outcome Error), by rule name; with the connector in Audit, also the rule that would have decided. They did not change the answer.",
		}, []string{"rule", "outcome"}),
		evalDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "apiconnector_evaluation_duration_seconds",
			Help:    "Time the evaluator (calls, rules, claims, sync events) took for one request.",
			Buckets: latencyBuckets,
		}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "apiconnector_call_duration_seconds",
			Help:    "Duration of outbound calls, by call name (reported by the evaluator through ObserveCall).",
			Buckets: latencyBuckets,
		}, []string{"call"}),
		callFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_call_failures_total",
			Help: "Failed outbound calls, by call name (reported by the evaluator through ObserveCall).",
		}, []string{"call"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_reloads_total",
			Help: "Reloads of the connector file, credential files and TLS certificate, by kind and result (success, failure).",
		}, []string{"kind", "result"}),
		policyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_failures_total",
			Help: "Requests answered by the connector failure policy, by policy (Fail, Ignore) and reason (error, deadline, panic, invalid_decision, evaluator = the evaluator applied a policy itself and said so in Decision.Failure).",
		}, []string{"policy", "reason"}),
		badRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_bad_requests_total",
			Help: "Requests refused before evaluation, by reason.",
		}, []string{"reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "apiconnector_inflight_requests",
			Help: "Connector requests being served.",
		}),
		downgradedTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "apiconnector_validation_error_downgrades_total",
			Help: "ValidationError decisions at PostFederationSignup sent as ShowBlockPage instead.",
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_events_total",
			Help: "Downstream events, by event name and result (sent, failed, dropped), reported by the evaluator.",
		}, []string{"event", "result"}),
		exprErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_expression_errors_total",
			Help: "Expressions that failed at request time, by field path, reported by the evaluator.",
		}, []string{"path"}),
		passwordContext: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_password_context_failures_total",
			Help: "OnPasswordSubmit requests whose encryptedPasswordContext could not be used, by reason (malformed, no_key, decrypt, payload, replay); the failure policy answered Block (Fail) or Retry (Ignore).",
		}, []string{"reason"}),
		callRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_call_retries_total",
			Help: "Outbound calls sent a second time (GET or idempotent calls whose dependency failed, when the time budget allowed), by call name.",
		}, []string{"call"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "apiconnector_call_breaker_state",
			Help: "State of each call's circuit breaker: 1 for the current state (closed, half-open, open), 0 for the others. A breaker starts closed when the connector is loaded; half-open is entered when a request arrives after openFor.",
		}, []string{"call", "state"}),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_call_breaker_transitions_total",
			Help: "Circuit breaker state changes, by call name and the state entered.",
		}, []string{"call", "state"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_call_cache_total",
			Help: "Response cache of calls with a cache, by call name and result: hit (a fresh answer was used), miss (the call was sent), stale (the call failed and an answer within staleIfError was used), evicted (an answer was dropped to stay within the bounds).",
		}, []string{"call", "result"}),
	}
	for _, c := range []prometheus.Collector{m.passwordContext, m.requests, m.duration, m.authFailures, m.ruleHits, m.ruleAudits, m.evalDuration,
		m.callDuration, m.callFailures, m.reloads, m.policyFailures, m.badRequests, m.inflight, m.downgradedTotal,
		m.events, m.exprErrors, m.callRetries, m.breakerState, m.breakerChanges, m.cache} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveCall records one outbound call. The evaluator (rules engine) may be handed this method so
// call metrics land in the runtime's registry without the engine depending on Prometheus.
func (m *Metrics) ObserveCall(call string, d time.Duration, failed bool) {
	m.callDuration.WithLabelValues(call).Observe(d.Seconds())
	if failed {
		m.callFailures.WithLabelValues(call).Inc()
	}
}

// ObserveEvent records the final delivery result of one event.
func (m *Metrics) ObserveEvent(event string, failed bool) {
	result := "sent"
	if failed {
		result = "failed"
	}
	m.events.WithLabelValues(event, result).Inc()
}

// EventDropped records an async event that could not be queued.
func (m *Metrics) EventDropped(event string) { m.events.WithLabelValues(event, "dropped").Inc() }

// ExpressionError records an expression that failed at request time.
func (m *Metrics) ExpressionError(path string) { m.exprErrors.WithLabelValues(path).Inc() }

// BreakerChanged records a call's circuit breaker entering state to; from is "" when the engine
// was compiled, which is no transition.
func (m *Metrics) BreakerChanged(call, from, to string) {
	for _, st := range []string{rules.BreakerClosed, rules.BreakerHalfOpen, rules.BreakerOpen} {
		v := 0.0
		if st == to {
			v = 1
		}
		m.breakerState.WithLabelValues(call, st).Set(v)
	}
	if from != "" {
		m.breakerChanges.WithLabelValues(call, to).Inc()
	}
}

func (m *Metrics) reload(kind string, err error) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.reloads.WithLabelValues(kind, result).Inc()
}

// EngineObserver feeds the rules engine's hooks (rules.Observer) into these metrics. Rule hits are
// counted by the server from the decision, so RuleHit does nothing here, not to count them twice.
type EngineObserver struct{ Metrics *Metrics }

func (EngineObserver) RuleHit(string) {}
func (o EngineObserver) CallDone(call string, d time.Duration, err error) {
	o.Metrics.ObserveCall(call, d, err != nil)
}
func (o EngineObserver) EventSent(event string, _ time.Duration, err error) {
	o.Metrics.ObserveEvent(event, err != nil)
}
func (o EngineObserver) EventDropped(event string)            { o.Metrics.EventDropped(event) }
func (o EngineObserver) ExpressionError(path string, _ error) { o.Metrics.ExpressionError(path) }
func (o EngineObserver) CallRetried(call string)              { o.Metrics.callRetries.WithLabelValues(call).Inc() }
func (o EngineObserver) BreakerChanged(call, from, to string) {
	o.Metrics.BreakerChanged(call, from, to)
}
func (o EngineObserver) CacheResult(call, result string) {
	o.Metrics.cache.WithLabelValues(call, result).Inc()
}
