package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/rules"
)

// hangingServer accepts requests and never answers them until the test ends.
func hangingServer(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: handlers return, Close does not wait
	return srv.URL
}

// rulesServer serves the connector spec (YAML, indented two spaces) with the real rules engine;
// calls and sinks may reach loopback, and the engine reports to the server's metrics.
func rulesServer(t *testing.T, spec string) *testServer {
	t.Helper()
	doc := `apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: signup, namespace: default}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: creds}}}
  exposure: {host: signup.example.com}
  failureMessage: Sorry, try later.
` + spec
	b, err := connfile.Parse("deadline.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	conn := b.Connectors[0]
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := rules.Compile(conn, rules.Options{
		EgressAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Observer: EngineObserver{Metrics: m}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(t.Context()) })
	return start(t, newServer(t, conn, eng, Options{SecretsDir: basicSecrets(t, testUser, testPass), Registry: reg, Metrics: m}))
}

// TestAnsweredWithinBudget: whatever a dependency does (here: accept and never answer), the
// answer leaves before spec.timeout and it is the connector's decided or fail-closed answer. The
// work stops v1alpha1.AnswerMargin before the budget, and calls one margin earlier still, so that
// the rules reading a failed call's result run.
func TestAnsweredWithinBudget(t *testing.T) {
	hang := hangingServer(t)
	const budget = 600 * time.Millisecond
	block := `{"version":"1.0.0","action":"ShowBlockPage","userMessage":"Sorry, try later."}`
	for _, tc := range []struct {
		name, spec, want string
		waited           time.Duration // how long the dependency is waited for
	}{
		{name: "call Fail: fail closed", want: block, waited: budget - 2*v1alpha1.AnswerMargin, spec: fmt.Sprintf(`
  timeout: %s
  calls:
  - {name: verify, url: %q, timeout: 10s, failurePolicy: Fail}
`, budget, hang)},
		{name: "call Ignore: the rules decide", waited: budget - 2*v1alpha1.AnswerMargin, want: `{"version":"1.0.0","action":"ShowBlockPage","userMessage":"unverified"}`, spec: fmt.Sprintf(`
  timeout: %s
  calls:
  - {name: verify, url: %q, timeout: 10s, failurePolicy: Ignore}
  rules:
  - {name: unverified, when: "calls.verify.status != 200", block: {message: unverified}}
`, budget, hang)},
		{name: "sync event Fail: fail closed", want: block, waited: budget - v1alpha1.AnswerMargin, spec: fmt.Sprintf(`
  timeout: %s
  events:
  - {name: audit, sink: {url: %q}, delivery: Sync, failurePolicy: Fail}
`, budget, hang)},
		{name: "spec.timeout shorter than twice the margin", want: block, waited: 30 * time.Millisecond, spec: fmt.Sprintf(`
  timeout: 120ms
  calls:
  - {name: verify, url: %q, failurePolicy: Fail}
`, hang)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := rulesServer(t, tc.spec)
			limit := ts.cfg.Load().timeout
			for range 3 {
				begin := time.Now()
				res := ts.post(t, `{"email":"a@contoso.example"}`)
				took := time.Since(begin)
				if res.code != 200 || res.body != tc.want {
					t.Errorf("got %d %s, want 200 %s", res.code, res.body, tc.want)
				}
				if took >= limit {
					t.Errorf("answered after %v, budget %v", took, limit)
				}
				if took < tc.waited {
					t.Errorf("answered after %v, before the dependency was waited for %v", took, tc.waited)
				}
			}
		})
	}
}

// TestSlowBodyAnsweredWithinBudget: a client that sends headers and then trickles its body gets an
// answer within the budget too: reading the body is part of the work.
func TestSlowBodyAnsweredWithinBudget(t *testing.T) {
	ts := rulesServer(t, "  timeout: 300ms\n")
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	auth := basicHeader(testUser, testPass)["Authorization"]
	begin := time.Now()
	fmt.Fprintf(conn, "POST /default/signup HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", auth)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if took := time.Since(begin); took >= 300*time.Millisecond {
		t.Errorf("answered after %v, budget 300ms", took)
	}
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("got %d %s, want 400", res.StatusCode, body)
	}
}

// TestBudget: the budget is spec.timeout capped at what Entra waits; the work stops
// v1alpha1.AnswerMargin before it.
func TestBudget(t *testing.T) {
	for _, tc := range []struct {
		step          v1alpha1.Step
		timeout       time.Duration
		budget, works time.Duration
	}{
		{v1alpha1.StepPostAttributeCollection, 0, 8 * time.Second, 8*time.Second - v1alpha1.AnswerMargin},
		{v1alpha1.StepPostAttributeCollection, 15 * time.Second, 15 * time.Second, 15*time.Second - v1alpha1.AnswerMargin},
		{v1alpha1.StepOnAttributeCollectionSubmit, 0, 1500 * time.Millisecond, 1500*time.Millisecond - v1alpha1.AnswerMargin},
		{v1alpha1.StepOnAttributeCollectionSubmit, 5 * time.Second, 2 * time.Second, 2*time.Second - v1alpha1.AnswerMargin},
		{v1alpha1.StepOnTokenIssuanceStart, 120 * time.Millisecond, 120 * time.Millisecond, 60 * time.Millisecond},
	} {
		if b, w := tc.step.Budget(tc.timeout), tc.step.WorkTimeout(tc.timeout); b != tc.budget || w != tc.works {
			t.Errorf("%s %v: budget %v work %v, want %v %v", tc.step, tc.timeout, b, w, tc.budget, tc.works)
		}
	}
}

// The breaker, retry and cache hooks of the engine land in /metrics.
func TestCallMetrics(t *testing.T) {
	dep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer dep.Close()
	ts := rulesServer(t, fmt.Sprintf(`
  calls:
  - {name: verify, url: %q, method: GET, failurePolicy: Ignore, circuitBreaker: {consecutiveFailures: 1}, cache: {ttl: 1m}}
`, dep.URL))
	ts.post(t, `{"email":"a@contoso.example"}`) // a miss, a retry, then the breaker opens
	ts.post(t, `{"email":"a@contoso.example"}`) // a miss, the breaker is open
	res := ts.get(t, "/metrics")
	for _, want := range []string{
		`apiconnector_call_breaker_state{call="verify",state="open"} 1`,
		`apiconnector_call_breaker_state{call="verify",state="closed"} 0`,
		`apiconnector_call_breaker_transitions_total{call="verify",state="open"} 1`,
		`apiconnector_call_retries_total{call="verify"} 1`,
		`apiconnector_call_cache_total{call="verify",result="miss"} 2`,
		`apiconnector_call_failures_total{call="verify"} 2`,
	} {
		if !strings.Contains(res.body, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}
