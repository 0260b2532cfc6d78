// Package rules compiles an APIConnector's CEL rules, calls, claims and events into an Engine
// that answers Entra ID API connector requests. It has no Kubernetes client dependency: the
// controller calls Compile to validate a connector and the runtime calls it on config load.
package rules

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// Defaults applied where the spec leaves a field empty (the CRD defaults them too, but a file
// loaded on a laptop may not have been through the API server).
const (
	DefaultCallTimeout = 2 * time.Second
	// MaxResponseBytes bounds how much of a call's response body is read.
	MaxResponseBytes = 1 << 20
	// DefaultEventQueueSize bounds the async event queue; events beyond it are dropped and counted.
	DefaultEventQueueSize = 1024
)

// Secret kinds passed to Options.Secrets; the runtime mounts outbound secrets at
// <dir>/<kind>/<name>/{username,password,token}.
const (
	SecretKindCall  = "calls"
	SecretKindEvent = "events"
)

// SecretKeyDir is the directory, under the outbound secrets directory, where the runtime mounts
// the Secret keys of secretHeaders and secretQueryParams, at <Secret name>/<key>.
const SecretKeyDir = "secret-keys"

// SecretSource returns the data of the outbound-auth Secret of the call or event name (kind is
// SecretKindCall or SecretKindEvent). Keys: username and password (Basic) or token (Bearer).
type SecretSource func(kind, name string) (map[string][]byte, error)

// SecretKeySource returns the value of one Secret key that a secretHeaders or secretQueryParams
// entry references, without its trailing newline (see DirSecretKeys).
type SecretKeySource func(ref v1alpha1.SecretKeySelector) ([]byte, error)

// ListResolver returns the entries of a list read from a ConfigMap key. See ParseListData.
type ListResolver func(ref v1alpha1.ConfigMapKeyReference) ([]string, error)

// Observer receives what happens during evaluation so the server can export metrics without
// this package depending on a metrics library. Implementations must be safe for concurrent use.
type Observer interface {
	// RuleHit is called when the rule decided the answer.
	RuleHit(rule string)
	// CallDone is called after each outbound call that ran; err is nil on success.
	CallDone(call string, d time.Duration, err error)
	// EventSent is called after the last delivery attempt of an event; err is nil on success.
	EventSent(event string, d time.Duration, err error)
	// EventDropped is called when an async event could not be queued (queue full or closed).
	EventDropped(event string)
	// ExpressionError is called when an expression fails at request time (path as in FieldError).
	ExpressionError(path string, err error)
	// CallRetried is called when a call is sent a second time.
	CallRetried(call string)
	// BreakerChanged is called when a call's circuit breaker goes from one state to another
	// (BreakerClosed, BreakerHalfOpen, BreakerOpen), and with from "" and to BreakerClosed when
	// the engine is compiled: a reloaded connector's breakers start closed.
	BreakerChanged(call, from, to string)
	// CacheResult is called with CacheHit, CacheMiss or CacheStale for each run of a call with a
	// cache, and CacheEvicted when one of its answers is dropped to stay within the bounds.
	CacheResult(call, result string)
}

// NopObserver ignores everything; embed it to implement only some methods.
type NopObserver struct{}

func (NopObserver) RuleHit(string)                         {}
func (NopObserver) CallDone(string, time.Duration, error)  {}
func (NopObserver) EventSent(string, time.Duration, error) {}
func (NopObserver) EventDropped(string)                    {}
func (NopObserver) ExpressionError(string, error)          {}
func (NopObserver) CallRetried(string)                     {}
func (NopObserver) BreakerChanged(string, string, string)  {}
func (NopObserver) CacheResult(string, string)             {}

// Options are the runtime dependencies of an Engine. The zero value works for validation only
// (no secrets, no ConfigMap lists); the runtime sets HTTPClient, Secrets and Observer.
type Options struct {
	// HTTPClient sends calls and events. Default: NewHTTPClient(EgressAllow).
	HTTPClient *http.Client
	// EgressAllow are address ranges the default client may connect to although the egress
	// guard refuses them (loopback, link-local, the API server...; see NewHTTPClient).
	EgressAllow []netip.Prefix
	// Secrets provides outbound credentials. A call or event with auth fails when it is nil.
	Secrets SecretSource
	// SecretKeys provides the values of secretHeaders and secretQueryParams. A call or event with
	// any fails when it is nil.
	SecretKeys SecretKeySource
	// ResolveList provides the entries of lists with a configMapRef. When nil, such a list is a
	// compile error: silently using an empty allow or deny list would be a security bug.
	ResolveList ListResolver
	// Observer receives metrics hooks. Default: NopObserver.
	Observer Observer
	// Logger logs request-time failures. Default: discard.
	Logger *slog.Logger
	// EventQueueSize bounds the async event queue. Default: DefaultEventQueueSize.
	EventQueueSize int
	// EventAttempts is how many times an async event is tried. Default: 4.
	EventAttempts int
	// EventBackoff is the first retry delay of async events; it doubles per attempt. Default: 500ms.
	EventBackoff time.Duration
	// MaxEstimatedCost overrides MaxEstimatedCost (tests, or operators who know their data).
	MaxEstimatedCost uint64
	// CostLimit overrides CostLimit.
	CostLimit uint64
	// FailureLogInterval is how often the same failure is logged at most (DefaultFailureLogInterval).
	FailureLogInterval time.Duration
	// ErrorDetail reports evaluation and transport errors in full. They may then quote claim
	// values (a regular expression taken from a claim, a failed conversion's input, a GET call's
	// URL): for local testing and debugging only. Off, they name the field, call or event and the
	// kind of failure.
	ErrorDetail bool
	// CacheMaxEntries and CacheMaxBytes bound the connector's response cache (the answers of
	// calls with a cache; bytes count response bodies). Defaults: DefaultCacheMaxEntries,
	// DefaultCacheMaxBytes.
	CacheMaxEntries, CacheMaxBytes int
	// Now is the clock for CloudEvent times. Default: time.Now.
	Now func() time.Time
	// TracerProvider, when set, makes every HTTP exchange of a call or event a span (a child of
	// the span in the request's context; async events of the request's span) and sends the W3C
	// traceparent to the dependency. Nil: no spans and no traceparent.
	TracerProvider trace.TracerProvider
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = NewHTTPClient(o.EgressAllow)
	}
	// A copy, so the caller's client is left as it was: calls are recorded for the decision log.
	client := *o.HTTPClient
	rt := client.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if o.TracerProvider != nil {
		rt = traceRequests(rt, o.TracerProvider)
	}
	client.Transport = recordCalls(rt)
	o.HTTPClient = &client
	if o.Observer == nil {
		o.Observer = NopObserver{}
	}
	if o.CacheMaxEntries <= 0 {
		o.CacheMaxEntries = DefaultCacheMaxEntries
	}
	if o.CacheMaxBytes <= 0 {
		o.CacheMaxBytes = DefaultCacheMaxBytes
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.EventQueueSize <= 0 {
		o.EventQueueSize = DefaultEventQueueSize
	}
	if o.EventAttempts <= 0 {
		o.EventAttempts = 4
	}
	if o.EventBackoff <= 0 {
		o.EventBackoff = 500 * time.Millisecond
	}
	if o.MaxEstimatedCost == 0 {
		o.MaxEstimatedCost = MaxEstimatedCost
	}
	if o.CostLimit == 0 {
		o.CostLimit = CostLimit
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FailureLogInterval <= 0 {
		o.FailureLogInterval = DefaultFailureLogInterval
	}
	return o
}

// Engine answers requests for one compiled connector. It is safe for concurrent use. Close it
// to drain async events when the configuration is replaced or the process stops.
type Engine struct {
	namespace, name string
	step            v1alpha1.Step
	failurePolicy   v1alpha1.FailurePolicy
	failureMessage  string
	timeout         time.Duration
	// audit is spec.enforcement Audit: the answer is always Continue with no claims.
	audit bool

	lists  ref.Val
	calls  []*compiledCall
	cache  *responseCache // nil when no call has a cache
	rules  []*compiledRule
	claims []*compiledClaim
	events []*compiledEvent

	opts     Options
	failures *failureLog
	queue    *eventQueue
	warnings []string
}

type program struct {
	path string
	prg  cel.Program
}

type compiledCall struct {
	spec          v1alpha1.Call
	method        string
	timeout       time.Duration
	failurePolicy v1alpha1.FailurePolicy
	when, body    *program                                // nil when empty
	retry         bool                                    // GET or idempotent: may be sent twice
	breaker       *gobreaker.CircuitBreaker[callResponse] // nil when turned off
	cache         *callCache                              // nil without cache
}

type callCache struct {
	ttl, staleIfError time.Duration
	key               *program // nil: the rendered request
}

type compiledRule struct {
	name      string
	attribute string // validationError's attribute, for attributeErrors
	action    string // entra.Action value
	message   string
	msgExpr   *program
	when      *program
	audit     bool // enforcement Audit: recorded, never decides
}

type compiledClaim struct {
	name string
	expr *program
}

type compiledEvent struct {
	spec          v1alpha1.Event
	delivery      v1alpha1.DeliveryMode
	failurePolicy v1alpha1.FailurePolicy
	when, data    *program
}

// Name is the connector's namespace/name.
func (e *Engine) Name() string { return e.namespace + "/" + e.name }

// Timeout is the connector's request deadline (spec.timeout or the step's DefaultTimeout).
func (e *Engine) Timeout() time.Duration { return e.timeout }

// Step is the connector's configured step.
func (e *Engine) Step() v1alpha1.Step { return e.step }

// Warnings are non-fatal problems found at compile time, such as call timeouts that do not fit
// in the deadline of a custom authentication extension. Compile also logs them.
func (e *Engine) Warnings() []string { return e.warnings }

// Compile validates conn and compiles every expression. The error, if any, is a CompileErrors
// listing all problems by field path. Compile the connector once per configuration; the Engine
// holds no per-request state.
func Compile(conn *v1alpha1.APIConnector, opts Options) (*Engine, error) {
	var c errs
	validate(&c, conn)
	opts = opts.withDefaults()
	s := &conn.Spec
	e := &Engine{
		namespace:      conn.Namespace,
		name:           conn.Name,
		step:           s.Step,
		failurePolicy:  orPolicy(s.FailurePolicy, v1alpha1.FailurePolicyFail),
		failureMessage: s.FailureMessage,
		audit:          s.Enforcement == v1alpha1.EnforcementAudit,
		timeout:        s.Step.DefaultTimeout(),
		opts:           opts,
		failures:       &failureLog{logger: opts.Logger, interval: opts.FailureLogInterval, now: time.Now},
	}
	if e.failureMessage == "" {
		e.failureMessage = v1alpha1.DefaultFailureMessage
	}
	if s.Timeout != nil && s.Timeout.Duration > 0 {
		e.timeout = s.Timeout.Duration
	}

	cp, err := newCompiler(opts, s)
	if err != nil {
		return nil, err
	}
	cp.errs = &c

	listNames := map[string]bool{}
	lists := make(map[ref.Val]ref.Val, len(s.Lists))
	for i, l := range s.Lists {
		listNames[l.Name] = true
		values := l.Values
		if l.ConfigMapRef != nil {
			path := fmt.Sprintf("spec.lists[%d].configMapRef", i)
			if opts.ResolveList == nil {
				c.add(path, "ConfigMap %s key %s is not resolved (no ConfigMap data available)", l.ConfigMapRef.Name, l.ConfigMapRef.Key)
				continue
			}
			values, err = opts.ResolveList(*l.ConfigMapRef)
			if err != nil {
				c.add(path, "resolve ConfigMap %s key %s: %v", l.ConfigMapRef.Name, l.ConfigMapRef.Key, err)
				continue
			}
		}
		if len(values) > MaxListEntries {
			c.add(fmt.Sprintf("spec.lists[%d]", i), "has %d entries, more than the maximum %d", len(values), MaxListEntries)
			continue
		}
		lists[types.String(l.Name)] = newStringSet(values)
	}
	e.lists = types.NewRefValMap(types.DefaultTypeAdapter, lists)
	cp.listNames = listNames

	for i, call := range s.Calls {
		p := fmt.Sprintf("spec.calls[%d]", i)
		cc := &compiledCall{
			spec:          call,
			method:        call.Method,
			timeout:       DefaultCallTimeout,
			failurePolicy: orPolicy(call.FailurePolicy, v1alpha1.FailurePolicyFail),
			when:          cp.compile(cp.callEnv, p+".when", call.When, wantBool),
			body:          cp.compile(cp.callEnv, p+".body", call.Body, wantMap),
		}
		if cc.method == "" {
			cc.method = http.MethodPost
		}
		if call.Timeout != nil && call.Timeout.Duration > 0 {
			cc.timeout = call.Timeout.Duration
		}
		cc.retry = cc.method == http.MethodGet || call.Idempotent
		cc.breaker = e.newBreaker(call)
		if cache := call.Cache; cache != nil {
			cc.cache = &callCache{ttl: cache.TTL.Duration, key: cp.compile(cp.callEnv, p+".cache.key", cache.Key, wantString)}
			if cache.StaleIfError != nil {
				cc.cache.staleIfError = cache.StaleIfError.Duration
			}
			if e.cache == nil {
				e.cache = newResponseCache(opts.CacheMaxEntries, opts.CacheMaxBytes, func(call string) {
					e.opts.Observer.CacheResult(call, CacheEvicted)
				})
			}
		}
		e.calls = append(e.calls, cc)
	}

	for i, r := range s.Rules {
		p := fmt.Sprintf("spec.rules[%d]", i)
		cr := &compiledRule{name: r.Name, when: cp.compile(cp.ruleEnv, p+".when", r.When, wantBool), audit: r.Enforcement == v1alpha1.EnforcementAudit}
		out, field := r.Block, "block"
		cr.action = "ShowBlockPage"
		switch {
		case r.ValidationError != nil:
			out, field, cr.action = r.ValidationError, "validationError", "ValidationError"
			cr.attribute = r.ValidationError.Attribute
		case r.MigratePassword != nil:
			cr.action = string(entra.ActionMigratePassword)
		case r.UpdatePassword != nil:
			cr.action = string(entra.ActionUpdatePassword)
		case r.Retry != nil:
			cr.action = string(entra.ActionRetry)
		}
		if out != nil {
			cr.message = out.Message
			cr.msgExpr = cp.compile(cp.ruleEnv, p+"."+field+".messageExpression", out.MessageExpression, wantString)
		}
		e.rules = append(e.rules, cr)
	}

	// Sorted so evaluation order, logs and error lists are deterministic.
	claimNames := make([]string, 0, len(s.Claims))
	for name := range s.Claims {
		claimNames = append(claimNames, name)
	}
	sort.Strings(claimNames)
	for _, name := range claimNames {
		e.claims = append(e.claims, &compiledClaim{
			name: name,
			expr: cp.compile(cp.ruleEnv, "spec.claims."+name, s.Claims[name], claimCheck(s.Step)),
		})
	}

	for i, ev := range s.Events {
		p := fmt.Sprintf("spec.events[%d]", i)
		e.events = append(e.events, &compiledEvent{
			spec:          ev,
			delivery:      orDelivery(ev.Delivery),
			failurePolicy: orPolicy(ev.FailurePolicy, v1alpha1.FailurePolicyIgnore),
			when:          cp.compile(cp.eventEnv, p+".when", ev.When, wantBool),
			data:          cp.compile(cp.eventEnv, p+".data", ev.Data, wantMap),
		})
	}

	if err := c.err(s); err != nil {
		return nil, err
	}
	e.warnings = budgetWarnings(s.Step, e.timeout, e.calls, e.events)
	for _, w := range e.warnings {
		opts.Logger.Warn("connector budget", "connector", e.Name(), "warning", w)
	}
	e.queue = newEventQueue(e)
	return e, nil
}

// budgetWarnings flags, at custom authentication extension steps, work that cannot fit in the
// time Entra waits: a deadline beyond 2s, and calls whose timeouts (they run concurrently, so the
// longest counts) plus the sync events after them (sequential, each may take the rest of the
// deadline) reach the deadline. The deadline still bounds everything at request time, so these
// are warnings: a call that does not answer in time fails under its failure policy.
func budgetWarnings(step v1alpha1.Step, deadline time.Duration, calls []*compiledCall, events []*compiledEvent) []string {
	if !step.IsExtension() {
		return nil
	}
	var w []string
	if deadline > step.EntraWait() {
		w = append(w, fmt.Sprintf("spec.timeout: %s is longer than the %s Entra waits for a custom authentication extension", deadline, step.EntraWait()))
	}
	var longest time.Duration
	var slowest string
	for _, c := range calls {
		if c.timeout > longest {
			longest, slowest = c.timeout, c.spec.Name
		}
	}
	if longest >= deadline {
		w = append(w, fmt.Sprintf("spec.calls: call %s may take %s, which does not fit in the %s deadline of step %s; set its timeout lower (for example 1s)", slowest, longest, deadline, step))
	}
	sync := 0
	for _, ev := range events {
		if ev.delivery == v1alpha1.DeliverySync {
			sync++
		}
	}
	if sync > 0 && longest > 0 && longest+time.Duration(sync)*100*time.Millisecond >= deadline {
		w = append(w, fmt.Sprintf("spec.events: %d sync event(s) after calls of up to %s leave little of the %s deadline; prefer Async delivery at step %s", sync, longest, deadline, step))
	}
	return w
}

func orPolicy(p, def v1alpha1.FailurePolicy) v1alpha1.FailurePolicy {
	if p == "" {
		return def
	}
	return p
}

func orDelivery(d v1alpha1.DeliveryMode) v1alpha1.DeliveryMode {
	if d == "" {
		return v1alpha1.DeliveryAsync
	}
	return d
}

type compiler struct {
	opts                       Options
	step                       v1alpha1.Step
	callEnv, ruleEnv, eventEnv *cel.Env
	callNames, listNames       map[string]bool
	errs                       *errs
}

func newCompiler(opts Options, s *v1alpha1.APIConnectorSpec) (*compiler, error) {
	envs, err := environments()
	if err != nil {
		return nil, err
	}
	cp := &compiler{opts: opts, step: s.Step, callEnv: envs[envCall], ruleEnv: envs[envRule], eventEnv: envs[envEvent], callNames: map[string]bool{}}
	for _, c := range s.Calls {
		cp.callNames[c.Name] = true
	}
	return cp, nil
}

// typeCheck says whether an expression's static output type is acceptable. dyn is always
// accepted (claims.x is dyn); its actual type is checked at evaluation.
type typeCheck struct {
	desc string
	ok   func(*cel.Type) bool
}

var (
	wantBool   = typeCheck{"bool", func(t *cel.Type) bool { return isType(t, cel.BoolType) }}
	wantString = typeCheck{"string", func(t *cel.Type) bool { return isType(t, cel.StringType) }}
	wantMap    = typeCheck{"map", func(t *cel.Type) bool { return t.Kind() == types.MapKind || isType(t, cel.DynType) }}
	wantClaim  = typeCheck{"string or optional_type(string)", func(t *cel.Type) bool {
		return isType(unwrapOptional(t), cel.StringType)
	}}
	// Attribute collection events: values are converted to the attribute's type.
	wantAttributeClaim = typeCheck{"string, int, bool or list(string), or an optional of one", func(t *cel.Type) bool {
		t = unwrapOptional(t)
		return isType(t, cel.StringType) || isType(t, cel.IntType) || isType(t, cel.BoolType) || isStringList(t)
	}}
	// Token issuance: strings and string arrays only (custom-claims-provider-reference).
	wantTokenClaim = typeCheck{"string or list(string), or an optional of one", func(t *cel.Type) bool {
		t = unwrapOptional(t)
		return isType(t, cel.StringType) || isStringList(t)
	}}
)

func claimCheck(step v1alpha1.Step) typeCheck {
	switch step {
	case v1alpha1.StepOnTokenIssuanceStart:
		return wantTokenClaim
	case v1alpha1.StepOnAttributeCollectionStart, v1alpha1.StepOnAttributeCollectionSubmit:
		return wantAttributeClaim
	}
	return wantClaim
}

func unwrapOptional(t *cel.Type) *cel.Type {
	if t.Kind() == types.OpaqueKind && t.TypeName() == "optional_type" && len(t.Parameters()) == 1 {
		return t.Parameters()[0]
	}
	return t
}

func isStringList(t *cel.Type) bool {
	return t.Kind() == types.ListKind && len(t.Parameters()) == 1 && isType(t.Parameters()[0], cel.StringType)
}

func isType(t, want *cel.Type) bool { return t.IsExactType(want) || t.IsExactType(cel.DynType) }

// compile type-checks, cost-checks and plans one expression. An empty expression yields nil.
// Problems are recorded on cp.errs under path.
func (cp *compiler) compile(env *cel.Env, path string, expr v1alpha1.Expression, want typeCheck) *program {
	if expr == "" {
		return nil
	}
	if len(expr) > maxExpressionLength {
		cp.errs.add(path, "expression is longer than %d characters", maxExpressionLength)
		return nil
	}
	ast, iss := env.Compile(string(expr))
	if iss.Err() != nil {
		for _, e := range iss.Errors() {
			cp.errs.add(path, "%d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message)
		}
		return nil
	}
	if t := ast.OutputType(); !want.ok(t) {
		cp.errs.add(path, "must evaluate to %s, but evaluates to %s", want.desc, t)
		return nil
	}
	if !cp.checkReferences(path, ast) {
		return nil
	}
	est, err := env.EstimateCost(ast, newSizeEstimator(ast))
	if err != nil {
		cp.errs.add(path, "estimate cost: %v", err)
		return nil
	}
	if est.Max > cp.opts.MaxEstimatedCost {
		cp.errs.add(path, "estimated cost %d exceeds the limit %d; avoid nested loops over lists and large strings", est.Max, cp.opts.MaxEstimatedCost)
		return nil
	}
	// Every program tracks its actual cost and stops at the limit, and checks the request's
	// context between comprehension iterations (evaluated with ContextEval).
	prg, err := env.Program(ast,
		cel.EvalOptions(cel.OptOptimize, cel.OptTrackCost),
		cel.CostTracking(actualCost{}),
		cel.CostLimit(cp.opts.CostLimit),
		cel.InterruptCheckFrequency(interruptCheckFrequency),
	)
	if err != nil {
		cp.errs.add(path, "plan: %v", err)
		return nil
	}
	return &program{path: path, prg: prg}
}

// checkReferences rejects calls.<name> and lists.<name> naming nothing: both are maps to the
// type checker, so a typo would otherwise only show up as a "no such key" error at request time.
func (cp *compiler) checkReferences(path string, ast *cel.Ast) bool {
	ok := true
	native := ast.NativeRep()
	celast.PostOrderVisit(native.Expr(), celast.NewExprVisitor(func(x celast.Expr) {
		if x.Kind() == celast.IdentKind && slices.Contains(sensitiveVariables(), x.AsIdent()) && x.AsIdent() != cp.step.SensitiveVariable() {
			loc := native.SourceInfo().GetStartLocation(x.ID())
			cp.errs.add(path, "%d:%d: %s is not available at step %s", loc.Line(), loc.Column()+1, x.AsIdent(), cp.step)
			ok = false
			return
		}
		if x.Kind() != celast.SelectKind {
			return
		}
		sel := x.AsSelect()
		if sel.Operand().Kind() != celast.IdentKind {
			return
		}
		var known map[string]bool
		switch sel.Operand().AsIdent() {
		case "calls":
			known = cp.callNames
		case "lists":
			known = cp.listNames
		default:
			return
		}
		if !known[sel.FieldName()] {
			loc := native.SourceInfo().GetStartLocation(x.ID())
			cp.errs.add(path, "%d:%d: %s.%s is not defined in the connector", loc.Line(), loc.Column()+1, sel.Operand().AsIdent(), sel.FieldName())
			ok = false
		}
	}))
	return ok
}
