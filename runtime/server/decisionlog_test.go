package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/rules"
)

// auditServer serves spec (a connector at PostAttributeCollection) with the real rules engine,
// calls allowed to loopback, logging JSON into buf.
func auditServer(t *testing.T, spec string, buf *syncBuffer) *testServer {
	t.Helper()
	b, err := connfile.Parse("test.yaml", []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: signup, namespace: default}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: creds}}}
  exposure: {host: signup.example.com}
`+spec))
	if err != nil {
		t.Fatal(err)
	}
	conn := b.Connectors[0]
	eng, err := rules.Compile(conn, rules.Options{EgressAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	return start(t, newServer(t, conn, eng, Options{SecretsDir: basicSecrets(t, testUser, testPass), Logger: jsonLogger(buf)}))
}

// requestLines are the decision log lines in logs.
func requestLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == "request" {
			out = append(out, line)
		}
	}
	return out
}

func TestDecisionLogAndAuditMetric(t *testing.T) {
	lookup := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"risk":"high"}`))
	}))
	defer lookup.Close()
	var buf syncBuffer
	ts := auditServer(t, `  calls:
  - name: risk
    url: '`+lookup.URL+`'
  rules:
  - name: new-rule
    enforcement: Audit
    when: "calls.risk.body.risk == 'high'"
    block: {messageExpression: "'blocked ' + claims.email"}
  - name: enforced
    when: "claims.email.startsWith('blocked')"
    block: {message: blocked}
`, &buf)
	res := ts.post(t, `{"email":"person@example.com"}`)
	if res.code != http.StatusOK || !strings.Contains(res.body, `"Continue"`) {
		t.Fatalf("an audit match changed the answer: %d %s", res.code, res.body)
	}
	metrics := ts.get(t, "/metrics").body
	if !strings.Contains(metrics, `apiconnector_rule_audit_total{outcome="ShowBlockPage",rule="new-rule"} 1`) {
		t.Errorf("audit metric missing:\n%s", grepLines(metrics, "apiconnector_rule_audit"))
	}
	if err := ts.stop(t); err != nil {
		t.Fatal(err)
	}
	logs := buf.String()
	if strings.Contains(logs, "person@example.com") {
		t.Errorf("claim value in the logs:\n%s", logs)
	}
	lines := requestLines(t, logs)
	if len(lines) != 1 {
		t.Fatalf("want one request line, got %d:\n%s", len(lines), logs)
	}
	l := lines[0]
	for k, want := range map[string]any{"connector": "default/signup", "action": "Continue", "source": "default", "step": "PostAttributeCollection"} {
		if l[k] != want {
			t.Errorf("%s: got %v, want %v", k, l[k], want)
		}
	}
	if _, ok := l["eval_ms"].(float64); !ok {
		t.Errorf("no eval_ms: %v", l)
	}
	audit, _ := json.Marshal(l["audit"])
	if string(audit) != `[{"outcome":"ShowBlockPage","rule":"new-rule"}]` {
		t.Errorf("audit: %s", audit)
	}
	calls, _ := l["calls"].([]any)
	if len(calls) != 1 {
		t.Fatalf("calls: %v", l["calls"])
	}
	if c := calls[0].(map[string]any); c["name"] != "risk" || c["status"] != float64(200) || c["duration_ms"] == nil {
		t.Errorf("call record: %v", c)
	}
}

func TestConnectorInAuditNeverChangesTheSignUp(t *testing.T) {
	var buf syncBuffer
	ts := auditServer(t, `  enforcement: Audit
  failurePolicy: Fail
  rules:
  - name: enforced
    when: "claims.email.startsWith('blocked')"
    block: {message: blocked}
  - name: broken
    when: "claims.nope == 1"
    block: {message: never}
  claims:
    city: "'Paris'"
`, &buf)
	for _, body := range []string{`{"email":"blocked@example.com"}`, `{"email":"a@example.com"}`} {
		res := ts.post(t, body)
		if res.code != http.StatusOK || res.body != `{"version":"1.0.0","action":"Continue"}` {
			t.Errorf("%s: got %d %s, want Continue without claims", body, res.code, res.body)
		}
	}
	metrics := ts.get(t, "/metrics").body
	for _, want := range []string{
		`apiconnector_rule_audit_total{outcome="ShowBlockPage",rule="enforced"} 1`,
		`apiconnector_requests_total{action="Continue",code="200",source="audit",step="PostAttributeCollection"} 2`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "apiconnector_r"))
		}
	}
	if err := ts.stop(t); err != nil {
		t.Fatal(err)
	}
	lines := requestLines(t, buf.String())
	if len(lines) != 2 {
		t.Fatalf("want 2 request lines:\n%s", buf.String())
	}
	if lines[0]["audit_action"] != "ShowBlockPage" || lines[0]["audit_rule"] != "enforced" {
		t.Errorf("first line: %v", lines[0])
	}
	// The failing expression would fail closed under failurePolicy Fail.
	if lines[1]["audit_action"] != "ShowBlockPage" || !strings.Contains(lines[1]["audit_failure"].(string), "spec.rules[1].when") {
		t.Errorf("second line: %v", lines[1])
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
