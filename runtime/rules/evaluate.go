package rules

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

var _ entra.Evaluator = (*Engine)(nil)

// vars is the CEL activation of one request: every value is converted to a CEL value once per
// request, not once per expression.
type vars struct {
	claims, request, identity, lists, calls, decision, context ref.Val
	// sensitive is the step's sensitive variable (v1alpha1.Step.SensitiveVariable) named
	// sensitiveName, for calls' expressions only.
	sensitive     ref.Val
	sensitiveName string
	// step is the request variable's step.
	step string
	// rawClaims are the request's claims as sent (without extension aliases), the default body
	// of a call.
	rawClaims map[string]any
	// req is the request, whose canonical form keys the calls' Idempotency-Key.
	req *entra.Request
}

func (v *vars) ResolveName(name string) (any, bool) {
	var out ref.Val
	switch name {
	case "claims":
		out = v.claims
	case "request":
		out = v.request
	case "identity":
		out = v.identity
	case "lists":
		out = v.lists
	case "calls":
		out = v.calls
	case "decision":
		out = v.decision
	case "context":
		out = v.context
	default:
		if name == v.sensitiveName {
			out = v.sensitive
		}
	}
	return out, out != nil
}

func (v *vars) Parent() interpreter.Activation { return nil }

var emptyMap ref.Val = types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{})

func newMap(m map[string]any) ref.Val {
	return types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
}

func (e *Engine) newVars(req *entra.Request) *vars {
	claims := req.Claims
	str := func(key string) string { s, _ := claims[key].(string); return s }
	// A step claim Entra documents under another name (PreTokenApplicationClaims) is given to
	// rules under the step's name, so one expression covers both.
	step := str("step")
	if s, ok := v1alpha1.StepFromWire(step); ok {
		step = string(s)
	}
	// B2C's token step example sends clientId where the other steps send client_id.
	clientID, uiLocales := cmp.Or(str("client_id"), str("clientId")), str("ui_locales")
	context := emptyMap
	if x := req.Extension; x != nil {
		// The envelope has no step, client_id or ui_locales claims: take them from the connector
		// and the authentication context.
		step = string(e.step)
		clientID = nested(x.Context, "clientServicePrincipal", "appId")
		uiLocales = nested(x.Context, "client", "locale")
		context = newMap(x.Context)
	}
	if step == "" {
		step = string(e.step)
	}
	identity := emptyMap
	if ids, ok := claims["identities"].([]any); ok && len(ids) > 0 {
		if first, ok := ids[0].(map[string]any); ok {
			identity = newMap(first)
		}
	}
	v := &vars{
		claims:    newMap(withExtensionAliases(claims)),
		request:   newMap(map[string]any{"step": step, "clientId": clientID, "uiLocales": uiLocales}),
		context:   context,
		identity:  identity,
		lists:     e.lists,
		calls:     emptyMap,
		step:      step,
		rawClaims: req.Claims,
		req:       req,
	}
	if name := e.step.SensitiveVariable(); name != "" {
		v.sensitiveName = name
		v.sensitive = types.NewStringStringMap(types.DefaultTypeAdapter, map[string]string{})
		if x := req.Extension; x != nil && x.Sensitive != nil {
			v.sensitive = types.NewStringStringMap(types.DefaultTypeAdapter, x.Sensitive)
		}
	}
	return v
}

// withExtensionAliases returns the claims as rules see them: as sent plus, for each extension
// attribute extension_<appid>_<Name>, the alias extension_<Name>, so rules need not hard-code the
// tenant's extensions-app ID. A claim the request sends under the short name wins; of two apps'
// attributes of the same name (Entra sends one extensions app's, so this is for determinism only)
// the smaller full name. Without extension attributes the claims are returned as they are (CEL
// only reads them); otherwise in a copy.
func withExtensionAliases(claims map[string]any) map[string]any {
	aliases := map[string]string{} // short name → full name
	for k := range claims {
		short, ok := extensionAlias(k)
		if !ok {
			continue
		}
		if _, sent := claims[short]; sent {
			continue
		}
		if full, seen := aliases[short]; !seen || k < full {
			aliases[short] = k
		}
	}
	if len(aliases) == 0 {
		return claims
	}
	out := make(map[string]any, len(claims)+len(aliases))
	for k, v := range claims {
		out[k] = v
	}
	for short, full := range aliases {
		out[short] = claims[full]
	}
	return out
}

// nested returns m[a][b] when it is a string, else "".
func nested(m map[string]any, a, b string) string {
	inner, _ := m[a].(map[string]any)
	s, _ := inner[b].(string)
	return s
}

const extensionPrefix = "extension_"

// extensionAlias maps extension_<32 lowercase hex>_<Name> to extension_<Name>.
func extensionAlias(key string) (string, bool) {
	rest, ok := extensionRest(key)
	if !ok {
		return "", false
	}
	return extensionPrefix + rest, true
}

// extensionRest returns <Name> of extension_<32 lowercase hex>_<Name>.
func extensionRest(key string) (string, bool) {
	const idLen = 32
	if len(key) <= len(extensionPrefix)+idLen+1 || !strings.HasPrefix(key, extensionPrefix) || key[len(extensionPrefix)+idLen] != '_' {
		return "", false
	}
	for _, c := range key[len(extensionPrefix) : len(extensionPrefix)+idLen] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return key[len(extensionPrefix)+idLen+1:], true
}

// expressionFailed applies the connector's failure policy to a rule or claim expression that
// failed: it returns the fail-closed decision, or records the failure and returns nil to go on.
func (e *Engine) expressionFailed(ctx context.Context, kind, name string, err error, failures *[]string) *entra.Decision {
	if e.failurePolicy == v1alpha1.FailurePolicyFail {
		e.failures.log(ctx, slog.LevelWarn, kind+" failed, failing closed", name, "connector", e.Name(), kind, name, "err", err)
		return e.fail(err.Error())
	}
	*failures = append(*failures, err.Error())
	return nil
}

// eval runs one program within ctx and the cost limit; errors name the expression's field path.
func (e *Engine) eval(ctx context.Context, p *program, v *vars) (ref.Val, error) {
	// ContextEval checks ctx only between comprehension iterations.
	err := ctx.Err()
	var out ref.Val
	if err == nil {
		out, _, err = p.prg.ContextEval(ctx, v)
	}
	if err != nil {
		err = e.expressionError(p.path, err)
		e.opts.Observer.ExpressionError(p.path, err)
		return nil, err
	}
	return out, nil
}

func (e *Engine) evalBool(ctx context.Context, p *program, v *vars) (bool, error) {
	if p == nil {
		return true, nil // an empty when means always
	}
	out, err := e.eval(ctx, p, v)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		err := fmt.Errorf("%s: evaluated to %s, want bool", p.path, out.Type().TypeName())
		e.opts.Observer.ExpressionError(p.path, err)
		return false, err
	}
	return bool(b), nil
}

// StopsWithContext marks the engine as an entra.PromptEvaluator: calls, sync events and every
// expression (ContextEval with interrupt checks) end when ctx does, so the server may evaluate on
// the request's goroutine.
func (e *Engine) StopsWithContext() {}

// Evaluate decides the answer to req. Failures of calls and expressions are handled by the
// connector's failure policies and reported in Decision.Failure; the error is reserved for
// an invalid request (nil).
func (e *Engine) Evaluate(ctx context.Context, req *entra.Request) (*entra.Decision, error) {
	if req == nil {
		return nil, errors.New("nil request")
	}
	// The server already bounds the request by the same work timeout (the budget minus
	// v1alpha1.AnswerMargin); a second timer only when the caller's deadline is later (or absent,
	// as for the test and eval commands).
	if work := e.step.WorkTimeout(e.timeout); !hasDeadlineWithin(ctx, work) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, work)
		defer cancel()
	}
	v := e.newVars(req)
	var audits []entra.Audit
	d := e.decide(ctx, v, req.Extension, &audits)
	if e.audit {
		// The connector is in Audit: record what it would have answered, change nothing and
		// send no events (they would report a decision that was not applied).
		if d.Rule != "" {
			audits = append(audits, entra.Audit{Rule: d.Rule, Outcome: string(d.Action)})
		}
		return &entra.Decision{Action: entra.ActionContinue, Audits: audits, Audited: d}, nil
	}
	if len(e.events) > 0 {
		d = e.emitEvents(ctx, v, req, d)
	}
	d.Audits = audits
	return d, nil
}

func hasDeadlineWithin(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) <= d
}

// fail is the fail-closed answer.
func (e *Engine) fail(reason string) *entra.Decision {
	return &entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: e.failureMessage, Failure: reason}
}

// decide evaluates calls, rules and claims. Rules in Audit enforcement that match or fail are
// appended to audits and evaluation goes on as if they had not matched.
func (e *Engine) decide(ctx context.Context, v *vars, x *entra.Extension, audits *[]entra.Audit) *entra.Decision {
	var failures []string
	if len(e.calls) > 0 {
		calls, d, ignored := e.runCalls(ctx, v)
		if d != nil {
			return d
		}
		v.calls = calls
		failures = append(failures, ignored...)
	}

	for _, r := range e.rules {
		match, err := e.evalBool(ctx, r.when, v)
		if r.audit && (err != nil || match) {
			outcome := r.action
			if err != nil {
				outcome = entra.AuditError
			}
			*audits = append(*audits, entra.Audit{Rule: r.name, Outcome: outcome})
			continue
		}
		if err != nil {
			if d := e.expressionFailed(ctx, "rule", r.name, err, &failures); d != nil {
				return d
			}
			continue
		}
		if !match {
			continue
		}
		e.opts.Observer.RuleHit(r.name)
		d := &entra.Decision{
			Action:      entra.Action(r.action),
			UserMessage: e.message(ctx, r, v),
			Rule:        r.name,
			Failure:     strings.Join(failures, "; "),
		}
		if r.attribute != "" && e.step == v1alpha1.StepOnAttributeCollectionSubmit && d.Action == entra.ActionValidationError {
			d.AttributeErrors = map[string]string{attributeName(x, r.attribute): d.UserMessage}
		}
		return d
	}

	d := &entra.Decision{Action: entra.ActionContinue}
	for _, c := range e.claims {
		val, set, err := e.claimValue(ctx, c, v, x)
		if err != nil {
			if d := e.expressionFailed(ctx, "claim", c.name, err, &failures); d != nil {
				return d
			}
			continue
		}
		if !set {
			continue
		}
		name := c.name
		if x != nil {
			name = attributeName(x, c.name)
		}
		if str, ok := val.(string); ok {
			if d.Claims == nil {
				d.Claims = make(map[string]string, len(e.claims))
			}
			d.Claims[name] = str
			continue
		}
		if d.ClaimValues == nil {
			d.ClaimValues = map[string]any{}
		}
		d.ClaimValues[name] = val
	}
	if e.step == v1alpha1.StepOnTokenIssuanceStart {
		if n := tokenClaimsSize(d); n > entra.MaxTokenClaimsBytes {
			err := fmt.Sprintf("token claims are %d bytes, more than the %d Entra accepts at OnTokenIssuanceStart", n, entra.MaxTokenClaimsBytes)
			e.failures.log(ctx, slog.LevelError, "token claims too large", "", "connector", e.Name(), "bytes", n, "limit", entra.MaxTokenClaimsBytes, "policy", string(e.failurePolicy))
			if e.failurePolicy == v1alpha1.FailurePolicyFail {
				return e.fail(err)
			}
			d.Claims, d.ClaimValues = nil, nil
			failures = append(failures, err)
		}
	}
	d.Failure = strings.Join(failures, "; ")
	return d
}

func tokenClaimsSize(d *entra.Decision) int {
	lists := map[string][]string{}
	for k, v := range d.ClaimValues {
		if l, ok := v.([]string); ok {
			lists[k] = l
		}
	}
	return entra.TokenClaimsSize(d.Claims, lists)
}

// attributeName maps a short extension alias (extension_<Name>) to the attribute the request
// carries (extension_<appid>_<Name>): Entra ignores returned attributes it did not send, so the
// short form rules use must go back under the full name.
func attributeName(x *entra.Extension, name string) string {
	if x == nil {
		return name
	}
	if _, ok := x.AttributeTypes[name]; ok {
		return name
	}
	for full := range x.AttributeTypes {
		if short, ok := extensionAlias(full); ok && short == name {
			return full
		}
	}
	return name
}

// message is the rule's userMessage: messageExpression, falling back to message, falling back to
// the connector's failure message (the CRD requires one of the first two).
func (e *Engine) message(ctx context.Context, r *compiledRule, v *vars) string {
	if r.action != string(entra.ActionShowBlockPage) && r.action != string(entra.ActionValidationError) {
		return "" // the password answers carry no message
	}
	if r.msgExpr != nil {
		out, err := e.eval(ctx, r.msgExpr, v)
		if err == nil {
			if s, ok := out.(types.String); ok && s != "" {
				return string(s)
			}
		}
	}
	if r.message != "" {
		return r.message
	}
	return e.failureMessage
}

// claimValue evaluates a claim; set is false for optional.none(). The value is a string at the
// legacy steps. At the custom authentication extension steps it may also be an int64, a bool or
// a []string, and at the attribute collection events it is converted to the type of the
// request's attribute of that name (Entra requires matching types).
func (e *Engine) claimValue(ctx context.Context, c *compiledClaim, v *vars, x *entra.Extension) (any, bool, error) {
	out, err := e.eval(ctx, c.expr, v)
	if err != nil {
		return nil, false, err
	}
	if opt, ok := out.(*types.Optional); ok {
		if !opt.HasValue() {
			return nil, false, nil
		}
		out = opt.GetValue()
	}
	var val any
	switch t := out.(type) {
	case types.String:
		val = string(t)
	case types.Int:
		val = int64(t)
	case types.Bool:
		val = bool(t)
	case traits.Lister:
		native, err := t.ConvertToNative(reflect.TypeFor[[]string]())
		if err != nil {
			return nil, false, fmt.Errorf("%s: evaluated to a list that is not a list of strings", c.expr.path)
		}
		val = native.([]string)
	}
	if val == nil || !claimTypeAllowed(e.step, val) {
		return nil, false, fmt.Errorf("%s: evaluated to %s, want %s", c.expr.path, out.Type().TypeName(), claimCheck(e.step).desc)
	}
	if x != nil && (e.step == v1alpha1.StepOnAttributeCollectionStart || e.step == v1alpha1.StepOnAttributeCollectionSubmit) {
		if typ, ok := x.AttributeTypes[attributeName(x, c.name)]; ok {
			conv, err := entra.ConvertAttribute(typ, val)
			if err != nil {
				return nil, false, fmt.Errorf("%s: %v", c.expr.path, err)
			}
			val = conv
		}
	}
	return val, true, nil
}

func claimTypeAllowed(step v1alpha1.Step, val any) bool {
	switch val.(type) {
	case string:
		return true
	case []string:
		return step.IsExtension() && step != v1alpha1.StepPostAttributeCollection
	case int64, bool:
		return step == v1alpha1.StepOnAttributeCollectionStart || step == v1alpha1.StepOnAttributeCollectionSubmit
	}
	return false
}
