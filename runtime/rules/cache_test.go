package rules_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// countingServer answers {"n": <number of requests so far>} with the status it holds, or a body
// that is not JSON when notJSON is set.
type countingServer struct {
	hits    atomic.Int32
	status  atomic.Int32
	notJSON atomic.Bool
}

func newCounting(t *testing.T) (*countingServer, string) {
	s := &countingServer{}
	s.status.Store(http.StatusOK)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *countingServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	n := s.hits.Add(1)
	w.WriteHeader(int(s.status.Load()))
	if s.notJSON.Load() {
		io.WriteString(w, "<html>")
		return
	}
	fmt.Fprintf(w, `{"n":%d}`, n)
}

// cacheObserver counts cache results.
type cacheObserver struct {
	rules.NopObserver
	mu      sync.Mutex
	results map[string]int
}

func (o *cacheObserver) CacheResult(_, result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.results == nil {
		o.results = map[string]int{}
	}
	o.results[result]++
}

func (o *cacheObserver) count(result string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.results[result]
}

// cacheEngine has one call, lookup, to url with the given cache, whose body.n the claim count returns.
func cacheEngine(t *testing.T, url, cache string, opts rules.Options) *rules.Engine {
	t.Helper()
	opts.EgressAllow = loopback
	return compile(t, `  step: PostAttributeCollection
  calls:
  - name: lookup
    url: '`+url+`'
    body: "{'email': claims.email}"
    failurePolicy: Ignore
    cache: `+cache+`
  claims:
    count: "calls.lookup.status == 200 && has(calls.lookup.body.n) ? string(calls.lookup.body.n) : 'failed'"
`, opts)
}

// n returns the claim the engine answers for email: the n the answer used had, or "failed".
func n(t *testing.T, e *rules.Engine, email string) string {
	t.Helper()
	d := eval(t, e, map[string]any{"email": email})
	if d.Action != entra.ActionContinue {
		t.Fatalf("got %+v", d)
	}
	return d.Claims["count"]
}

func TestCacheHitsAndExpiry(t *testing.T) {
	dep, url := newCounting(t)
	obs := &cacheObserver{}
	e := cacheEngine(t, url, "{ttl: 1s}", rules.Options{Observer: obs})
	if a, b := n(t, e, "jane@contoso.example"), n(t, e, "jane@contoso.example"); a != "1" || b != "1" {
		t.Errorf("answers %s %s, want 1 1 (the second from the cache)", a, b)
	}
	if got := n(t, e, "john@contoso.example"); got != "2" {
		t.Errorf("another body: %s, want 2 (another key)", got)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := n(t, e, "jane@contoso.example"); got != "3" {
		t.Errorf("after ttl: %s, want 3", got)
	}
	if dep.hits.Load() != 3 || obs.count(rules.CacheHit) != 1 || obs.count(rules.CacheMiss) != 3 {
		t.Errorf("%d requests, %d hits, %d misses", dep.hits.Load(), obs.count(rules.CacheHit), obs.count(rules.CacheMiss))
	}
}

// The key expression decides what answers are shared: here the e-mail address, whatever its case.
func TestCacheKeyExpression(t *testing.T) {
	dep, url := newCounting(t)
	e := cacheEngine(t, url, `{ttl: 1m, key: "claims.email.lowerAscii()"}`, rules.Options{})
	n(t, e, "Jane@Contoso.example")
	if got := n(t, e, "jane@contoso.example"); got != "1" || dep.hits.Load() != 1 {
		t.Errorf("got %s after %d requests, want 1 after 1", got, dep.hits.Load())
	}
}

// Only 2xx JSON answers are kept.
func TestCacheKeepsOnlySuccessfulJSON(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		notJSON bool
	}{{"500", http.StatusInternalServerError, false}, {"404", http.StatusNotFound, false}, {"200 not JSON", http.StatusOK, true}} {
		t.Run(tc.name, func(t *testing.T) {
			dep, url := newCounting(t)
			dep.status.Store(int32(tc.status))
			dep.notJSON.Store(tc.notJSON)
			e := cacheEngine(t, url, "{ttl: 1m}", rules.Options{})
			n(t, e, "jane@contoso.example")
			n(t, e, "jane@contoso.example")
			if dep.hits.Load() != 2 {
				t.Errorf("%d requests, want 2 (nothing kept)", dep.hits.Load())
			}
		})
	}
}

// The cache holds at most CacheMaxEntries answers and CacheMaxBytes bytes; the least recently
// used go first, and each is counted as evicted.
func TestCacheBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts rules.Options
	}{
		{"entries", rules.Options{CacheMaxEntries: 2}},
		// {"n":1} is 7 bytes and a key 32: two answers fit in 80 bytes, not three.
		{"bytes", rules.Options{CacheMaxBytes: 80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dep, url := newCounting(t)
			obs := &cacheObserver{}
			tc.opts.Observer = obs
			e := cacheEngine(t, url, "{ttl: 1m}", tc.opts)
			n(t, e, "a@x.example")
			n(t, e, "b@x.example")
			n(t, e, "a@x.example") // a is now the most recently used
			n(t, e, "c@x.example") // evicts b
			if obs.count(rules.CacheEvicted) != 1 || dep.hits.Load() != 3 {
				t.Fatalf("%d evicted, %d requests; want 1, 3", obs.count(rules.CacheEvicted), dep.hits.Load())
			}
			if n(t, e, "a@x.example") != "1" || n(t, e, "c@x.example") != "3" {
				t.Error("a or c is no longer kept")
			}
			if got := n(t, e, "b@x.example"); got != "4" {
				t.Errorf("b: %s, want 4 (sent again)", got)
			}
		})
	}
}

// With staleIfError, an expired answer is used when the dependency fails (no answer, 5xx, 429,
// open breaker), not when it answers otherwise, and not beyond staleIfError.
func TestCacheStaleIfError(t *testing.T) {
	dep, url := newCounting(t)
	obs := &cacheObserver{}
	e := cacheEngine(t, url, "{ttl: 1s, staleIfError: 2s}", rules.Options{Observer: obs})
	n(t, e, "jane@contoso.example")
	dep.status.Store(http.StatusServiceUnavailable)
	time.Sleep(1100 * time.Millisecond)
	if got := n(t, e, "jane@contoso.example"); got != "1" || obs.count(rules.CacheStale) != 1 {
		t.Errorf("dependency down: %s (%d stale), want the kept 1", got, obs.count(rules.CacheStale))
	}
	dep.status.Store(http.StatusNotFound)
	if got := n(t, e, "jane@contoso.example"); got != "failed" {
		t.Errorf("dependency answering 404: %s, want failed", got)
	}
	dep.status.Store(http.StatusServiceUnavailable)
	time.Sleep(2 * time.Second)
	if got := n(t, e, "jane@contoso.example"); got != "failed" {
		t.Errorf("after staleIfError: %s, want failed", got)
	}

	// Without staleIfError an expired answer is never used.
	dep2, url2 := newCounting(t)
	e = cacheEngine(t, url2, "{ttl: 1s}", rules.Options{})
	n(t, e, "jane@contoso.example")
	dep2.status.Store(http.StatusServiceUnavailable)
	time.Sleep(1100 * time.Millisecond)
	if got := n(t, e, "jane@contoso.example"); got != "failed" {
		t.Errorf("no staleIfError: %s, want failed", got)
	}
}

func TestCacheIsValidated(t *testing.T) {
	call := func(cache string) string {
		return "  step: PostAttributeCollection\n  calls:\n  - {name: c, url: 'https://x.example/', cache: " + cache + "}\n"
	}
	wantFieldError(t, rules.Validate(parse(t, call("{ttl: 500ms}"))), "spec.calls[0].cache.ttl", "between 1s and 24h")
	wantFieldError(t, rules.Validate(parse(t, call("{ttl: 25h}"))), "spec.calls[0].cache.ttl", "between 1s and 24h")
	wantFieldError(t, rules.Validate(parse(t, call("{ttl: 1m, staleIfError: 25h}"))), "spec.calls[0].cache.staleIfError", "between 0s and 24h")
	_, err := rules.Compile(parse(t, call(`{ttl: 1m, key: "1"}`)), rules.Options{})
	wantFieldError(t, err, "spec.calls[0].cache.key", "string")
	_, err = rules.Compile(parse(t, call(`{ttl: 1m, key: "nope"}`)), rules.Options{})
	wantFieldError(t, err, "spec.calls[0].cache.key", "undeclared reference")
}
