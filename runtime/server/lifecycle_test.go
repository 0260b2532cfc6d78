package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// counterValue reads a counter (or gauge) from the server's registry; 0 when absent.
func counterValue(t *testing.T, s *Server, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := s.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

// blockEval blocks everyone with a fixed message, to tell connector versions apart.
func blockEval(msg string) entra.Evaluator {
	return evalFunc(func(context.Context, *entra.Request) (*entra.Decision, error) {
		return &entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: msg, Rule: "r-" + msg}, nil
	})
}

func TestHotReload(t *testing.T) {
	connFile := filepath.Join(t.TempDir(), "connector.yaml")
	writeFile(t, connFile, "v1")
	// The fake loader accepts "v<N>" and refuses anything else, standing in for connfile+rules.
	load := func(path string) (entra.Evaluator, *v1alpha1.APIConnector, error) {
		b, err := readFileString(path)
		if err != nil {
			return nil, nil, err
		}
		c := basicConnector(pac)
		switch {
		case b == "noauth": // loads, but cannot be served
			c.Spec.Authentication.Basic = nil
		case !strings.HasPrefix(b, "v"):
			return nil, nil, errors.New("rule when: syntax error")
		}
		return blockEval(b), c, nil
	}
	s := newServer(t, basicConnector(pac), blockEval("v1"), Options{
		SecretsDir: basicSecrets(t, testUser, testPass), ConnectorPath: connFile, Load: load})
	ts := start(t, s)
	msg := func() string { return ts.post(t, `{}`).body }
	if !strings.Contains(msg(), `"v1"`) {
		t.Fatalf("initial: %s", msg())
	}

	writeFile(t, connFile, "v2")
	eventually(t, "valid connector swapped in", func() bool { return strings.Contains(msg(), `"v2"`) })

	writeFile(t, connFile, "broken")
	eventually(t, "invalid connector refused", func() bool {
		return counterValue(t, s, "apiconnector_reloads_total", map[string]string{"kind": "connector", "result": "failure"}) == 1
	})
	if !strings.Contains(msg(), `"v2"`) {
		t.Errorf("after a refused reload the old connector must serve: %s", msg())
	}
	if res := ts.get(t, "/readyz"); res.code != 200 {
		t.Errorf("/readyz after a refused reload = %d", res.code)
	}
	// A connector that loads but cannot be served (no authentication) is refused as well.
	writeFile(t, connFile, "noauth")
	eventually(t, "unservable connector refused", func() bool {
		return counterValue(t, s, "apiconnector_reloads_total", map[string]string{"kind": "connector", "result": "failure"}) == 2
	})
	if !strings.Contains(msg(), `"v2"`) {
		t.Errorf("connector without authentication accepted: %s", msg())
	}
	if v := counterValue(t, s, "apiconnector_reloads_total", map[string]string{"kind": "connector", "result": "success"}); v != 1 {
		t.Errorf("successful reloads = %v", v)
	}
}

func TestGracefulDrain(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	slow := evalFunc(func(ctx context.Context, _ *entra.Request) (*entra.Decision, error) {
		if calls.Add(1) == 1 {
			close(started)
		}
		<-release
		return &entra.Decision{Action: entra.ActionContinue, Claims: map[string]string{"city": "done"}}, nil
	})
	s := newServer(t, basicConnector(pac), slow, Options{SecretsDir: basicSecrets(t, testUser, testPass),
		ShutdownDelay: 100 * time.Millisecond, DrainTimeout: 5 * time.Second})
	ts := start(t, s)

	result := make(chan response, 1)
	go func() { result <- ts.post(t, `{}`) }()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop(t) }()

	eventually(t, "readiness false while draining", func() bool { return ts.get(t, "/readyz").code == http.StatusServiceUnavailable })
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned before the in-flight request finished: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	res := <-result
	if res.code != 200 || !strings.Contains(res.body, `"city":"done"`) {
		t.Errorf("in-flight request: %d %s", res.code, res.body)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := http.Get(ts.url); err == nil {
		t.Error("connector listener still accepting after shutdown")
	}
}

func TestDrainTimeoutBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	stuck := evalFunc(func(ctx context.Context, _ *entra.Request) (*entra.Decision, error) {
		<-block
		return nil, errors.New("unreachable")
	})
	conn := withPolicy(basicConnector(pac), v1alpha1.FailurePolicyFail, 10*time.Second)
	s := newServer(t, conn, stuck, Options{SecretsDir: basicSecrets(t, testUser, testPass), DrainTimeout: 200 * time.Millisecond})
	ts := start(t, s)
	req, _ := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(testUser, testPass)
	go func() {
		if res, err := ts.client.Do(req); err == nil { // cut off on purpose; an error is expected
			res.Body.Close()
		}
	}()
	eventually(t, "request in flight", func() bool {
		return counterValue(t, s, "apiconnector_inflight_requests", nil) == 1
	})
	begin := time.Now()
	if err := ts.stop(t); err == nil {
		t.Error("Serve reported no drain timeout")
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

func TestMetricsScrape(t *testing.T) {
	ev := evalFunc(func(_ context.Context, req *entra.Request) (*entra.Decision, error) {
		if req.Claims["city"] == "Nowhere" {
			return &entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: "no", Rule: "deny-nowhere"}, nil
		}
		if req.Claims["city"] == "Err" {
			return nil, errTest
		}
		return &entra.Decision{Action: entra.ActionContinue}, nil
	})
	s := newServer(t, basicConnector(pac), ev, Options{SecretsDir: basicSecrets(t, testUser, testPass)})
	s.Metrics().ObserveCall("approvals", 30*time.Millisecond, true)
	ts := start(t, s)
	ts.post(t, `{"city":"Oslo"}`)
	ts.post(t, `{"city":"Nowhere"}`)
	ts.post(t, `{"city":"Err"}`)
	ts.post(t, `{"city":`)
	do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, nil)

	res := ts.get(t, "/metrics")
	if res.code != 200 {
		t.Fatalf("/metrics = %d", res.code)
	}
	for _, want := range []string{
		`apiconnector_requests_total{action="Continue",code="200",source="default",step="PostAttributeCollection"} 1`,
		// A rule's block and the failure policy's are told apart.
		`apiconnector_requests_total{action="ShowBlockPage",code="200",source="rule",step="PostAttributeCollection"} 1`,
		`apiconnector_requests_total{action="ShowBlockPage",code="200",source="policy",step="PostAttributeCollection"} 1`,
		`apiconnector_requests_total{action="BadRequest",code="400",source="refused",step="PostAttributeCollection"} 1`,
		`apiconnector_requests_total{action="Unauthorized",code="401",source="refused",step="PostAttributeCollection"} 1`,
		// Buckets start at 100 µs: a rule-only answer is not lumped into the first millisecond.
		`apiconnector_request_duration_seconds_bucket{step="PostAttributeCollection",le="0.0001"}`,
		`apiconnector_rule_hits_total{rule="deny-nowhere"} 1`,
		`apiconnector_auth_failures_total{reason="missing"} 1`,
		`apiconnector_failures_total{policy="Fail",reason="error"} 1`,
		`apiconnector_bad_requests_total{reason="malformed_json"} 1`,
		`apiconnector_request_duration_seconds_count{step="PostAttributeCollection"} 5`,
		`apiconnector_evaluation_duration_seconds_count 3`,
		`apiconnector_call_failures_total{call="approvals"} 1`,
		`apiconnector_call_duration_seconds_count{call="approvals"} 1`,
		`apiconnector_reloads_total{kind="credentials",result="success"} 1`,
	} {
		if !strings.Contains(res.body, want+"\n") && !(strings.HasSuffix(want, "}") && strings.Contains(res.body, want+" ")) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The connector listener does not serve ops paths: /metrics there is just an unauthenticated POST target.
	if r := do(t, ts.client, http.MethodGet, ts.url+"/metrics", "", "", nil); r.code == 200 {
		t.Errorf("connector listener served /metrics")
	}
}

func readFileString(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}
