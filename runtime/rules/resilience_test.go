package rules_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// flakyServer answers each request with the status it holds at that moment, and records
// how many requests it got and their Idempotency-Keys.
type flakyServer struct {
	status    atomic.Int32
	hits      atomic.Int32
	failFirst bool // answer 503 to the first request whatever status is
	mu        sync.Mutex
	keys      []string
}

func newFlaky(t *testing.T, status int) (*flakyServer, string) {
	f := &flakyServer{}
	f.status.Store(int32(status))
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *flakyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status := int(f.status.Load())
	if n := f.hits.Add(1); n == 1 && f.failFirst {
		status = http.StatusServiceUnavailable
	}
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, `{"ok":true}`)
}

// recordingObserver records breaker states and retries.
type recordingObserver struct {
	rules.NopObserver
	mu      sync.Mutex
	states  []string
	retries int
}

func (o *recordingObserver) BreakerChanged(_, from, to string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if from == "" {
		from = "compiled"
	}
	o.states = append(o.states, from+">"+to)
}

func (o *recordingObserver) CallRetried(string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retries++
}

func (o *recordingObserver) get() ([]string, int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.states...), o.retries
}

// After consecutiveFailures failures the call fails at once (its failurePolicy applies) without
// reaching the dependency; after openFor one request probes it: a failed probe opens the breaker
// again, a successful one closes it. The transitions are reported and logged without claim values.
func TestCircuitBreaker(t *testing.T) {
	dep, url := newFlaky(t, http.StatusServiceUnavailable)
	obs := &recordingObserver{}
	var logs syncBuffer
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - name: verify
    url: '`+url+`'
    failurePolicy: Ignore
    circuitBreaker: {consecutiveFailures: 3, openFor: 1s}
  rules:
  - {name: down, when: "calls.verify.status != 200", block: {message: down}}
`, rules.Options{EgressAllow: loopback, Observer: obs, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	claims := map[string]any{"email": "secret-jane@contoso.example"}

	for i := range 5 {
		d := eval(t, e, claims)
		if d.Rule != "down" {
			t.Fatalf("request %d: %+v", i, d)
		}
		if open := strings.Contains(d.Failure, rules.ErrBreakerOpen.Error()); open != (i >= 3) {
			t.Errorf("request %d: failure %q", i, d.Failure)
		}
	}
	if n := dep.hits.Load(); n != 3 {
		t.Errorf("dependency got %d requests, want 3 (then the breaker is open)", n)
	}

	time.Sleep(1100 * time.Millisecond) // openFor: the next request probes, and fails
	eval(t, e, claims)
	if n := dep.hits.Load(); n != 4 {
		t.Errorf("dependency got %d requests, want 4 (one probe)", n)
	}
	eval(t, e, claims)
	if n := dep.hits.Load(); n != 4 {
		t.Errorf("dependency got %d requests after a failed probe, want 4 (open again)", n)
	}

	dep.status.Store(http.StatusOK)
	time.Sleep(1100 * time.Millisecond)
	for range 3 {
		if d := eval(t, e, claims); d.Action != entra.ActionContinue || d.Failure != "" {
			t.Errorf("after recovery: %+v", d)
		}
	}
	if n := dep.hits.Load(); n != 7 {
		t.Errorf("dependency got %d requests, want 7 (closed after the probe)", n)
	}
	states, _ := obs.get()
	want := []string{"compiled>closed", "closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("states %v, want %v", states, want)
	}
	out := logs.String()
	if !strings.Contains(out, `"msg":"call circuit breaker","connector":"ns/test","call":"verify","from":"closed","to":"open"`) {
		t.Errorf("no log line for the breaker opening:\n%s", out)
	}
	if strings.Contains(out, "secret-jane") {
		t.Errorf("logs hold a claim value:\n%s", out)
	}
}

// Answers that show a working dependency (4xx but 429) do not open the breaker; consecutiveFailures:
// 0 turns it off.
func TestCircuitBreakerCountsDependencyFailuresOnly(t *testing.T) {
	for _, tc := range []struct {
		name, breaker string
		status        int
	}{
		{"404 answers", "", http.StatusNotFound},
		{"turned off", "circuitBreaker: {consecutiveFailures: 0}", http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dep, url := newFlaky(t, tc.status)
			e := compile(t, `  step: PostAttributeCollection
  calls:
  - {name: verify, url: '`+url+`', failurePolicy: Ignore, `+tc.breaker+`}
`, rules.Options{EgressAllow: loopback})
			for range 8 {
				eval(t, e, map[string]any{})
			}
			if n := dep.hits.Load(); n != 8 {
				t.Errorf("dependency got %d of 8 requests", n)
			}
		})
	}
	// The default breaker opens after 5 failures.
	dep, url := newFlaky(t, http.StatusBadGateway)
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - {name: verify, url: '`+url+`', failurePolicy: Ignore}
`, rules.Options{EgressAllow: loopback})
	for range 8 {
		eval(t, e, map[string]any{})
	}
	if n := dep.hits.Load(); n != rules.DefaultBreakerFailures {
		t.Errorf("dependency got %d requests, want %d", n, rules.DefaultBreakerFailures)
	}
}

// failOnce answers 503 to the first request and 200 afterwards.
func failOnce(t *testing.T) (*flakyServer, string) {
	dep, url := newFlaky(t, http.StatusOK)
	dep.failFirst = true
	return dep, url
}

// GET calls and calls marked idempotent are retried once, with the same Idempotency-Key, when the
// dependency failed and the time left holds a whole second attempt; others are not.
func TestRetry(t *testing.T) {
	for _, tc := range []struct {
		name, call, timeout string
		hits                int32
	}{
		{"GET retried", "method: GET, timeout: 500ms", "2s", 2},
		{"idempotent POST retried", "idempotent: true, timeout: 500ms", "2s", 2},
		{"POST not retried", "timeout: 500ms", "2s", 1},
		// 1100ms budget: calls end at 900ms, so less than the call's 1s timeout is left after the
		// first attempt.
		{"no retry when the budget is too short", "method: GET, timeout: 1s", "1100ms", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dep, url := failOnce(t)
			obs := &recordingObserver{}
			e := compile(t, `  step: PostAttributeCollection
  timeout: `+tc.timeout+`
  calls:
  - {name: verify, url: '`+url+`', failurePolicy: Ignore, `+tc.call+`}
`, rules.Options{EgressAllow: loopback, Observer: obs})
			d := eval(t, e, map[string]any{"email": "jane@contoso.example"})
			if n := dep.hits.Load(); n != tc.hits {
				t.Fatalf("dependency got %d requests, want %d", n, tc.hits)
			}
			_, retries := obs.get()
			if retries != int(tc.hits-1) {
				t.Errorf("%d retries reported", retries)
			}
			if tc.hits == 2 {
				if d.Failure != "" {
					t.Errorf("retried call failed: %+v", d)
				}
				if dep.keys[0] != dep.keys[1] || dep.keys[0] == "" {
					t.Errorf("Idempotency-Keys %v differ", dep.keys)
				}
			} else if !strings.Contains(d.Failure, "status 503") {
				t.Errorf("failure %q", d.Failure)
			}
		})
	}
}

// A 4xx answer is not retried: the dependency works and said no.
func TestNoRetryOnClientError(t *testing.T) {
	dep, url := newFlaky(t, http.StatusNotFound)
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - {name: verify, url: '`+url+`', method: GET, failurePolicy: Ignore}
`, rules.Options{EgressAllow: loopback})
	eval(t, e, map[string]any{})
	if n := dep.hits.Load(); n != 1 {
		t.Errorf("dependency got %d requests", n)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Validate holds the CRD's limits for files loaded without an API server.
func TestCircuitBreakerIsValidated(t *testing.T) {
	call := func(breaker string) string {
		return "  step: PostAttributeCollection\n  calls:\n  - {name: c, url: 'https://x.example/', circuitBreaker: " + breaker + "}\n"
	}
	wantFieldError(t, rules.Validate(parse(t, call("{consecutiveFailures: 1001}"))), "spec.calls[0].circuitBreaker.consecutiveFailures", "between 0 and 1000")
	wantFieldError(t, rules.Validate(parse(t, call("{consecutiveFailures: -1}"))), "spec.calls[0].circuitBreaker.consecutiveFailures", "between 0 and 1000")
	wantFieldError(t, rules.Validate(parse(t, call("{openFor: 500ms}"))), "spec.calls[0].circuitBreaker.openFor", "between 1s and 10m")
	wantFieldError(t, rules.Validate(parse(t, call("{openFor: 11m}"))), "spec.calls[0].circuitBreaker.openFor", "between 1s and 10m")
	if err := rules.Validate(parse(t, call("{consecutiveFailures: 0, openFor: 10m}"))); err != nil {
		t.Error(err)
	}
}
