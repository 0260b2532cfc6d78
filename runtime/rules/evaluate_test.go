package rules_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

const validationSpec = `  step: PostAttributeCollection
  lists:
  - name: blocked
    values: [mailinator.com]
  rules:
  - name: blocked-domain
    when: "claims.email.split('@')[1] in lists.blocked"
    block: {message: blocked}
  - name: postal
    when: "has(claims.postalCode) && !claims.postalCode.matches('^[0-9]{5}$')"
    validationError:
      message: fallback
      messageExpression: "'bad postal code ' + claims.postalCode"
  - name: broken-message
    when: "has(claims.jobTitle)"
    validationError:
      message: fallback message
      messageExpression: "claims.nope"
  claims:
    city: "claims.?city.optMap(c, c.upperAscii())"
    loyalty: "claims.?extension_Loyalty.orValue('none')"
    where: "request.step + '/' + request.clientId + '/' + identity.?issuer.orValue('local')"
`

func TestEvaluateRules(t *testing.T) {
	e := compile(t, validationSpec, rules.Options{})
	tests := []struct {
		name   string
		claims map[string]any
		want   entra.Decision
	}{
		{"first match blocks", map[string]any{"email": "a@mailinator.com", "postalCode": "x"},
			entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: "blocked", Rule: "blocked-domain"}},
		{"message expression", map[string]any{"email": "a@b.example", "postalCode": "12"},
			entra.Decision{Action: entra.ActionValidationError, UserMessage: "bad postal code 12", Rule: "postal"}},
		{"message fallback on error", map[string]any{"email": "a@b.example", "jobTitle": "x"},
			entra.Decision{Action: entra.ActionValidationError, UserMessage: "fallback message", Rule: "broken-message"}},
		{"continue with claims, optional none skips city", map[string]any{"email": "a@b.example"},
			entra.Decision{Action: entra.ActionContinue, Claims: map[string]string{"loyalty": "none", "where": "PostAttributeCollection//local"}}},
		{"extension alias, request and identity", map[string]any{
			"email": "a@b.example", "city": "Seattle", "step": "PostFederationSignup", "client_id": "app1",
			"extension_831374b3bd5041bfaa54263ec9e050fc_Loyalty": "gold",
			"identities": []any{map[string]any{"issuer": "google.com"}},
		}, entra.Decision{Action: entra.ActionContinue, Claims: map[string]string{"city": "SEATTLE", "loyalty": "gold", "where": "PostFederationSignup/app1/google.com"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := eval(t, e, tc.claims)
			if got.Action != tc.want.Action || got.UserMessage != tc.want.UserMessage || got.Rule != tc.want.Rule || got.Failure != "" {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if tc.want.Claims != nil && !maps.Equal(got.Claims, tc.want.Claims) {
				t.Errorf("claims: got %v, want %v", got.Claims, tc.want.Claims)
			}
		})
	}
}

func TestFailurePolicy(t *testing.T) {
	spec := func(policy string) string {
		return `  step: PostAttributeCollection
  failurePolicy: ` + policy + `
  failureMessage: try later
  rules:
  - {name: needs-email, when: "claims.email.endsWith('@x.example')", block: {message: blocked}}
  claims:
    givenName: "claims.givenName.upperAscii()"
`
	}
	fail := compile(t, spec("Fail"), rules.Options{})
	d := eval(t, fail, map[string]any{"givenName": "a"}) // no email: the rule errors
	if d.Action != entra.ActionShowBlockPage || d.UserMessage != "try later" || !strings.Contains(d.Failure, "spec.rules[0].when") {
		t.Errorf("Fail: got %+v", d)
	}
	d = eval(t, fail, map[string]any{"email": "a@b.example"}) // no givenName: the claim errors
	if d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, "spec.claims.givenName") {
		t.Errorf("Fail claim: got %+v", d)
	}

	ignore := compile(t, spec("Ignore"), rules.Options{})
	d = eval(t, ignore, map[string]any{"givenName": "a"})
	if d.Action != entra.ActionContinue || d.Claims["givenName"] != "A" || !strings.Contains(d.Failure, "no such key") {
		t.Errorf("Ignore: got %+v", d)
	}
	d = eval(t, ignore, map[string]any{"email": "a@b.example"})
	if d.Action != entra.ActionContinue || len(d.Claims) != 0 || d.Failure == "" {
		t.Errorf("Ignore claim: got %+v", d)
	}
}

func TestNeverReturnsEmail(t *testing.T) {
	_, err := rules.Compile(parse(t, "  step: PostAttributeCollection\n  claims:\n    email: \"'x'\"\n"), rules.Options{})
	if err == nil {
		t.Fatal("email claim compiled")
	}
}

// A pathological expression that gets past the static estimate (here because the operator raised
// the ceiling) is stopped at evaluation by the runtime cost limit.
func TestCostLimitStopsEvaluation(t *testing.T) {
	values := make([]string, 2000)
	for i := range values {
		values[i] = "v" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('0'+i%10))
	}
	conn := parse(t, `  step: PostAttributeCollection
  failurePolicy: Fail
  rules:
  - {name: quadratic, when: "lists.big.all(a, lists.big.all(b, a + b != ''))", block: {message: m}}
  lists:
  - {name: big, values: [x]}
`)
	conn.Spec.Lists[0].Values = values
	if _, err := rules.Compile(conn, rules.Options{}); err == nil || !strings.Contains(err.Error(), "estimated cost") {
		t.Fatalf("default ceiling should reject it, got %v", err)
	}
	// A lower runtime limit than the default keeps the test fast under -race.
	e, err := rules.Compile(conn, rules.Options{MaxEstimatedCost: math.MaxUint64, CostLimit: 50_000})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := eval(t, e, map[string]any{})
	if d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, "cost limit exceeded") {
		t.Errorf("got %+v", d)
	}
	// The whole quadratic walk takes minutes; stopped, it ends within a second (10 s leaves room for -race on a busy machine).
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %v", time.Since(start))
	}
}

// The connector's deadline interrupts an evaluation through ContextEval.
func TestDeadlineStopsEvaluation(t *testing.T) {
	conn := parse(t, `  step: PostAttributeCollection
  timeout: 1ms
  rules:
  - {name: slow, when: "lists.big.all(a, lists.big.all(b, a + b != ''))", block: {message: m}}
  lists:
  - {name: big, values: [x]}
`)
	// No entry is empty, so neither all() stops early: 9 million iterations, far beyond 1ms.
	for i := range 3000 {
		conn.Spec.Lists[0].Values = append(conn.Spec.Lists[0].Values, strings.Repeat("y", i%50+1))
	}
	e, err := rules.Compile(conn, rules.Options{MaxEstimatedCost: math.MaxUint64, CostLimit: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := eval(t, e, map[string]any{})
	if d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, "deadline") {
		t.Errorf("got %+v", d)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("not interrupted promptly: %v", el)
	}
}

func TestConcurrentEvaluate(t *testing.T) {
	e := compile(t, validationSpec, rules.Options{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				claims := map[string]any{"email": "a@b.example", "postalCode": "98052", "city": "x"}
				if (g+i)%2 == 0 {
					claims["email"] = "a@mailinator.com"
				}
				d, err := e.Evaluate(context.Background(), request(t, claims))
				if err != nil {
					t.Error(err)
					return
				}
				want := entra.ActionContinue
				if (g+i)%2 == 0 {
					want = entra.ActionShowBlockPage
				}
				if d.Action != want {
					t.Errorf("got %s, want %s", d.Action, want)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestParseListData(t *testing.T) {
	got := rules.ParseListData("# comment\n a.example \n\nb.example\r\n  # indented comment\nc.example")
	want := []string{"a.example", "b.example", "c.example"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("got %q", got)
	}
}

// countingCtx counts Err calls and answers DeadlineExceeded once expired.
type countingCtx struct {
	context.Context
	errs    int
	expired bool
}

func (c *countingCtx) Deadline() (time.Time, bool) { return time.Now().Add(time.Second), true }

func (c *countingCtx) Err() error {
	c.errs++
	if c.expired {
		return context.DeadlineExceeded
	}
	return nil
}

// Every expression checks the request's context before it runs: with the deadline passed, the
// first rule fails on it and the failure policy answers.
func TestExpressionsStopAtTheDeadline(t *testing.T) {
	spec := "  step: PostAttributeCollection\n  rules:\n"
	for i := range 8 {
		spec += fmt.Sprintf("  - {name: r%d, when: \"claims.?email.orValue('') == 'r%d'\", block: {message: m}}\n", i, i)
	}
	e := compile(t, spec, rules.Options{})
	ctx := &countingCtx{Context: context.Background()}
	d, err := e.Evaluate(ctx, request(t, map[string]any{"email": "a@b.example"}))
	if err != nil || d.Action != entra.ActionContinue {
		t.Fatalf("%+v %v", d, err)
	}
	if ctx.errs < 8 {
		t.Errorf("%d deadline checks for 8 rules", ctx.errs)
	}
	ctx = &countingCtx{Context: context.Background(), expired: true}
	d, err = e.Evaluate(ctx, request(t, map[string]any{"email": "a@b.example"}))
	if err != nil || d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, "deadline exceeded") || ctx.errs != 1 {
		t.Errorf("expired: %+v %v after %d checks, want the first rule to fail on the deadline", d, err, ctx.errs)
	}
}
