package rules_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

const auditSpec = `  step: PostAttributeCollection
  rules:
  - name: new-domain-rule
    enforcement: Audit
    when: "claims.email.endsWith('@new.example')"
    block: {message: would block}
  - name: broken-audit
    enforcement: Audit
    when: "claims.nope == 'x'"
    block: {message: never}
  - name: enforced
    when: "claims.email.startsWith('blocked')"
    validationError: {message: blocked}
  claims:
    city: "'Paris'"
`

func TestAuditRuleNeverDecides(t *testing.T) {
	e := compile(t, auditSpec, rules.Options{})
	tests := []struct {
		name       string
		email      string
		wantAction entra.Action
		wantRule   string
		wantAudits []entra.Audit
	}{
		// The audit rule matches but the answer is what it would be without it; the failing audit
		// rule is recorded and does not apply the connector's failure policy (Fail).
		{"audit match, continue", "a@new.example", entra.ActionContinue, "",
			[]entra.Audit{{Rule: "new-domain-rule", Outcome: "ShowBlockPage"}, {Rule: "broken-audit", Outcome: entra.AuditError}}},
		{"audit match, next rule decides", "blocked@new.example", entra.ActionValidationError, "enforced",
			[]entra.Audit{{Rule: "new-domain-rule", Outcome: "ShowBlockPage"}, {Rule: "broken-audit", Outcome: entra.AuditError}}},
		{"no audit match", "a@b.example", entra.ActionContinue, "",
			[]entra.Audit{{Rule: "broken-audit", Outcome: entra.AuditError}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := eval(t, e, map[string]any{"email": tc.email})
			if d.Action != tc.wantAction || d.Rule != tc.wantRule || d.Failure != "" || d.Audited != nil {
				t.Errorf("got %+v, want %s by %q", d, tc.wantAction, tc.wantRule)
			}
			if !slices.Equal(d.Audits, tc.wantAudits) {
				t.Errorf("audits: got %v, want %v", d.Audits, tc.wantAudits)
			}
			if d.Action == entra.ActionContinue && d.Claims["city"] != "Paris" {
				t.Errorf("an audit match must not drop the claims: %v", d.Claims)
			}
		})
	}
}

func TestConnectorInAudit(t *testing.T) {
	var events atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		events.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer sink.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	spec := `  step: PostAttributeCollection
  enforcement: Audit
  calls:
  - name: lookup
    url: '` + down.URL + `'
    when: "claims.email.startsWith('call')"
  rules:
  - name: audited
    enforcement: Audit
    when: "true"
    block: {message: m}
  - name: enforced
    when: "claims.email.startsWith('blocked')"
    block: {message: blocked}
  claims:
    city: "'Paris'"
  events:
  - name: sync
    delivery: Sync
    failurePolicy: Fail
    sink: {url: '` + sink.URL + `'}
`
	e := compile(t, spec, rules.Options{EgressAllow: loopback})

	d := eval(t, e, map[string]any{"email": "blocked@x.example"})
	if d.Action != entra.ActionContinue || d.Rule != "" || len(d.Claims) != 0 || d.Failure != "" {
		t.Errorf("a connector in Audit must answer Continue without claims: %+v", d)
	}
	if d.Audited == nil || d.Audited.Action != entra.ActionShowBlockPage || d.Audited.Rule != "enforced" {
		t.Errorf("audited: got %+v, want ShowBlockPage by enforced", d.Audited)
	}
	want := []entra.Audit{{Rule: "audited", Outcome: "ShowBlockPage"}, {Rule: "enforced", Outcome: "ShowBlockPage"}}
	if !slices.Equal(d.Audits, want) {
		t.Errorf("audits: got %v, want %v", d.Audits, want)
	}

	// No rule: the claims it would return are in Audited, none in the answer.
	d = eval(t, e, map[string]any{"email": "a@x.example"})
	if d.Action != entra.ActionContinue || len(d.Claims) != 0 || d.Audited.Claims["city"] != "Paris" {
		t.Errorf("got %+v, audited %+v", d, d.Audited)
	}

	// A call failing under failurePolicy Fail would fail closed; in Audit the answer is Continue.
	trail := &rules.CallTrail{}
	d, err := e.Evaluate(rules.WithCallTrail(context.Background(), trail), request(t, map[string]any{"email": "call@x.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if d.Action != entra.ActionContinue || d.Audited.Action != entra.ActionShowBlockPage || d.Audited.Failure == "" {
		t.Errorf("call failure in Audit: got %+v, audited %+v", d, d.Audited)
	}
	if recs := trail.Records(); len(recs) != 1 || recs[0].Name != "lookup" || recs[0].Status != http.StatusServiceUnavailable || recs[0].Error != "" {
		t.Errorf("call trail: %+v", recs)
	}
	if n := events.Load(); n != 0 {
		t.Errorf("a connector in Audit sent %d events", n)
	}
}

func TestEnforcementValidated(t *testing.T) {
	conn := parse(t, `  step: PostAttributeCollection
  enforcement: Dry
  rules:
  - name: r
    enforcement: Warn
    when: "true"
    block: {message: m}
`)
	err := rules.Validate(conn)
	wantFieldError(t, err, "spec.enforcement", "must be Enforce or Audit")
	wantFieldError(t, err, "spec.rules[0].enforcement", "must be Enforce or Audit")
}
