// Command latency is the benchmark of `make bench-latency`: the runtime's server and rules engine,
// in this process, serving a connector whose three calls go to loopback stubs — a fast look-up
// (cached), a slow verification (idempotent, retried) and an approval system that accepts
// connections and never answers — at a steady rate, for each time budget. It reports answer times,
// the share answered within the budget, the cache hit ratio and the circuit breakers' transitions,
// then the first request's time after a start with and without warm connections, and writes them
// to hack/bench/results/latency.md.
//
//	go run ./hack/bench/latency [-duration 10s] [-rates 50,500] [-budgets 1s,2s]
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
	"github.com/apiconnector/operator/runtime/server"
)

const resultsFile = "hack/bench/results/latency.md"

// maxConnections is the server's connection cap (serve --max-connections). The generator opens a
// connection per request in flight, and until the approval call's breaker opens every request
// waits for the whole budget: 500 req/s × 2 s is 1 000 requests in flight, about the default cap
// of 1 024, beyond which connections wait in the kernel's accept queue, outside the budget.
const maxConnections = 4096

// stub is a loopback dependency: it answers after delay, with 503 at rate failRate; hang makes it
// accept requests and never answer.
type stub struct {
	name     string
	delay    time.Duration
	failRate float64
	hang     bool
	url      string
	hits     atomic.Int64
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	if s.hang {
		<-r.Context().Done()
		return
	}
	time.Sleep(s.delay)
	w.Header().Set("Content-Type", "application/json")
	if rand.Float64() < s.failRate {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":"unavailable"}`)
		return
	}
	io.WriteString(w, `{"status":"approved","score":12}`)
}

func (s *stub) start() (func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	s.url = "http://" + ln.Addr().String() + "/" + s.name
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		srv.Shutdown(ctx) // the hanging stub's requests are cut when the runtime's calls end
		srv.Close()
	}, nil
}

// connector is the benchmark's connector for a budget and the stubs.
func connector(budget time.Duration, lookup, verify, approval *stub) string {
	return fmt.Sprintf(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: latency, namespace: bench}
spec:
  step: PostAttributeCollection
  timeout: %s
  authentication: {basic: {secretRef: {name: creds}}}
  exposure: {host: signup.bench.example}
  calls:
  - name: lookup          # 5 ms, cached per e-mail address
    url: %s
    method: GET
    body: "{'email': claims.email}"
    timeout: 500ms
    failurePolicy: Ignore
    cache: {ttl: 30s, key: "claims.email.lowerAscii()", staleIfError: 5m}
  - name: verify          # 200 ms, idempotent: retried once when the budget allows
    url: %s
    idempotent: true
    timeout: 400ms
    failurePolicy: Ignore
  - name: approval        # never answers; only the deadline and the circuit breaker end it
    url: %s
    timeout: 10s
    failurePolicy: Ignore
  rules:
  - name: denied
    when: "calls.lookup.body.?status.orValue('') == 'denied'"
    block: {message: Denied.}
  claims:
    jobTitle: "calls.verify.status == 200 ? 'verified' : 'unverified'"
`, budget, lookup.url, verify.url, approval.url)
}

// phase is one measured rate at one budget.
type phase struct {
	budget    time.Duration
	rate      int
	latencies []time.Duration
	errors    int64
	firstErr  error
	hits      map[string]float64 // cache results
	breaker   map[string]float64 // breaker transitions by state entered
	retries   float64
	// answers the server measured (arrival to answer written) within the budget, of all
	serverWithin, serverTotal uint64
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-latency:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	var duration time.Duration
	var rates, budgets, out string
	var users int
	lookup := &stub{name: "lookup"}
	verify := &stub{name: "verify"}
	approval := &stub{name: "approval", hang: true}
	flag.DurationVar(&duration, "duration", 10*time.Second, "load per rate and budget")
	flag.StringVar(&rates, "rates", "50,500", "requests per second, comma-separated")
	flag.StringVar(&budgets, "budgets", "1s,2s", "connector time budgets (spec.timeout), comma-separated")
	flag.IntVar(&users, "users", 1000, "distinct e-mail addresses the requests are drawn from (the look-up cache's keys)")
	flag.DurationVar(&lookup.delay, "lookup-delay", 5*time.Millisecond, "latency of the look-up stub")
	flag.Float64Var(&lookup.failRate, "lookup-fail", 0.05, "share of 503 answers of the look-up stub")
	flag.DurationVar(&verify.delay, "verify-delay", 200*time.Millisecond, "latency of the verification stub")
	flag.Float64Var(&verify.failRate, "verify-fail", 0.10, "share of 503 answers of the verification stub")
	flag.StringVar(&out, "out", resultsFile, "results file, relative to the repository root (empty: none)")
	flag.Parse()

	var rateList []int
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return fmt.Errorf("bad rate %q", r)
		}
		rateList = append(rateList, n)
	}
	var budgetList []time.Duration
	for _, b := range strings.Split(budgets, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(b))
		if err != nil || d <= 0 {
			return fmt.Errorf("bad budget %q", b)
		}
		budgetList = append(budgetList, d)
	}
	for _, s := range []*stub{lookup, verify, approval} {
		stop, err := s.start()
		if err != nil {
			return err
		}
		defer stop()
	}

	var phases []*phase
	for _, budget := range budgetList {
		for _, rate := range rateList {
			fmt.Fprintf(os.Stderr, "bench-latency: budget %s, %d req/s for %s\n", budget, rate, duration)
			p, err := run(connector(budget, lookup, verify, approval), budget, rate, duration, users)
			if err != nil {
				return err
			}
			phases = append(phases, p)
		}
	}
	cold, warm, err := firstRequest(20)
	if err != nil {
		return err
	}
	table := render(phases, duration, users, lookup, verify) + fmt.Sprintf("\nFirst request after a start or reload, one call over TLS to a loopback stub "+
		"(median of 20 fresh engines, each with a fresh connection pool): %s without warm-up, %s after `Warm` (the TCP and TLS handshakes done before). "+
		"Over a network each handshake also costs round trips, and a name a DNS look-up.\n", ms(cold), ms(warm))
	fmt.Print(table)
	if out != "" {
		root, err := findRoot()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, out), []byte(table), 0o644); err != nil {
			return err
		}
	}
	for _, p := range phases {
		if p.firstErr != nil {
			fmt.Fprintf(os.Stderr, "bench-latency: budget %s at %d req/s: %d errors, the first: %v\n", p.budget, p.rate, p.errors, p.firstErr)
		}
	}
	return nil
}

// run serves the connector with a fresh server (empty cache, closed breakers) and loads it.
func run(doc string, budget time.Duration, rate int, duration time.Duration, users int) (*phase, error) {
	b, err := connfile.Parse("latency.yaml", []byte(doc))
	if err != nil {
		return nil, err
	}
	conn := b.Connectors[0]
	reg := prometheus.NewRegistry()
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	eng, err := rules.Compile(conn, rules.Options{
		Observer: server.EngineObserver{Metrics: metrics}, Logger: log,
		EgressAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		return nil, err
	}
	defer eng.Close(context.Background())
	dir, err := os.MkdirTemp("", "bench-latency")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, server.UsernameFile), []byte("entra"), 0o600)
	os.WriteFile(filepath.Join(dir, server.PasswordFile), []byte("bench-password"), 0o600)
	s, err := server.New(conn, eng, server.Options{SecretsDir: dir, Logger: log, Registry: reg, Metrics: metrics, MaxConnections: maxConnections})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	opsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, opsLn) }()
	defer func() { cancel(); <-done }()

	p := &phase{budget: budget, rate: rate}
	load(p, "http://"+ln.Addr().String()+"/signup", rate, duration, users)

	families, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	p.hits = sumBy(families, "apiconnector_call_cache_total", "result")
	p.breaker = sumBy(families, "apiconnector_call_breaker_transitions_total", "call,state")
	p.retries = sumBy(families, "apiconnector_call_retries_total", "")[""]
	p.serverWithin, p.serverTotal = withinBucket(families, budget)
	return p, nil
}

// load sends rate requests per second on a fixed schedule for duration, each from its own
// goroutine (an open loop: a slow answer does not delay the next request).
func load(p *phase, url string, rate int, duration time.Duration, users int) {
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxIdleConns: 4096},
	}
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("entra:bench-password"))
	var mu sync.Mutex
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; time.Since(start) < duration; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		body := fmt.Sprintf(`{"email":"user%d@contoso.example","givenName":"Jane","surname":"Doe"}`, rand.IntN(users))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			err := send(client, url, auth, body)
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				p.errors++
				if p.firstErr == nil {
					p.firstErr = err
				}
				return
			}
			p.latencies = append(p.latencies, took)
		}()
	}
	wg.Wait()
	client.CloseIdleConnections()
}

func send(client *http.Client, url, auth, body string) error {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"action":`)) {
		return fmt.Errorf("HTTP %d: %.200q", resp.StatusCode, b)
	}
	return nil
}

// firstRequest measures the first evaluation of fresh engines with one call over TLS, without and
// with warm-up, and returns the medians.
func firstRequest(n int) (cold, warm time.Duration, err error) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `{"status":"approved"}`)
	}))
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	doc := fmt.Sprintf(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: first, namespace: bench}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: creds}}}
  exposure: {host: signup.bench.example}
  calls:
  - {name: approval, url: %q}
`, srv.URL+"/approval")
	b, err := connfile.Parse("first.yaml", []byte(doc))
	if err != nil {
		return 0, 0, err
	}
	var times [2][]time.Duration
	for i := range 2 * n {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
		eng, err := rules.Compile(b.Connectors[0], rules.Options{HTTPClient: &http.Client{Transport: tr}})
		if err != nil {
			return 0, 0, err
		}
		warmed := i%2 == 1
		if warmed {
			ctx, cancel := context.WithTimeout(context.Background(), rules.WarmTimeout)
			eng.Warm(ctx)
			cancel()
		}
		req, err := entra.DecodeRequest([]byte(`{"email":"jane@contoso.example"}`))
		if err != nil {
			return 0, 0, err
		}
		start := time.Now()
		d, err := eng.Evaluate(context.Background(), req)
		took := time.Since(start)
		if err != nil || d.Failure != "" {
			return 0, 0, fmt.Errorf("first request: %v %+v", err, d)
		}
		times[i%2] = append(times[i%2], took)
		eng.Close(context.Background())
		tr.CloseIdleConnections()
	}
	for _, t := range times {
		slices.Sort(t)
	}
	return percentile(times[0], .5), percentile(times[1], .5), nil
}

// sumBy sums a counter family's values by the comma-separated labels, their values joined by a
// space in the key ("" sums all).
func sumBy(families []*dto.MetricFamily, name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				if strings.Contains(","+label+",", ","+l.GetName()+",") {
					parts = append(parts, l.GetValue())
				}
			}
			key := strings.Join(parts, " ")
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out
}

// withinBucket reads apiconnector_request_duration_seconds: how many answers took at most budget
// (a bucket bound: the histogram has 1 s and 2 s buckets for Entra's budgets), of how many.
func withinBucket(families []*dto.MetricFamily, budget time.Duration) (within, total uint64) {
	for _, f := range families {
		if f.GetName() != "apiconnector_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			total += h.GetSampleCount()
			for _, b := range h.GetBucket() {
				if b.GetUpperBound() == budget.Seconds() {
					within += b.GetCumulativeCount()
				}
			}
		}
	}
	return within, total
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

func render(phases []*phase, duration time.Duration, users int, lookup, verify *stub) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Latency benchmark\n\n`make bench-latency` on %s, commit %s; %d CPUs, %s, load average %s at the end.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), gitCommit(), runtime.NumCPU(), runtime.Version(), loadAverage())
	fmt.Fprintf(&b, "The runtime's server and rules engine in one process with the load generator, over loopback. "+
		"The connector (PostAttributeCollection, Basic auth) makes three concurrent calls to loopback stubs: "+
		"`lookup` (GET, %s, %.0f %% 503, cached 30 s per e-mail address with staleIfError), "+
		"`verify` (POST idempotent, %s, %.0f %% 503, retried once within the budget) and "+
		"`approval` (accepts the connection, never answers; call timeout 10 s), all failurePolicy Ignore. "+
		"Each row is a fresh server (empty cache, closed breakers, `--max-connections %d`) loaded for %s at a steady rate, "+
		"requests drawn from %d users. Within budget: answered (HTTP 200 with an action) before spec.timeout, "+
		"as the load generator saw it and as the server measured it (arrival to answer written; the generator "+
		"shares the process and its 2 CPUs, so its figure includes its own scheduling).\n\n",
		lookup.delay, lookup.failRate*100, verify.delay, verify.failRate*100, maxConnections, duration, users)
	b.WriteString("| budget | rate | requests | p50 | p99 | max | within budget | within budget (server) | cache hits | breaker transitions | retries | errors |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range phases {
		slices.Sort(p.latencies)
		within := 0
		for _, l := range p.latencies {
			if l < p.budget {
				within++
			}
		}
		total := len(p.latencies) + int(p.errors)
		hits, lookups := p.hits[rules.CacheHit], p.hits[rules.CacheHit]+p.hits[rules.CacheMiss]
		fmt.Fprintf(&b, "| %s | %d req/s | %d | %s | %s | %s | %s | %s | %s | %s | %.0f | %d |\n",
			p.budget, p.rate, total, ms(percentile(p.latencies, .5)), ms(percentile(p.latencies, .99)),
			ms(percentile(p.latencies, 1)), pct(within, total), pct(int(p.serverWithin), int(p.serverTotal)), pct(int(hits), int(lookups)),
			transitions(p.breaker), p.retries, p.errors)
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func pct(n, of int) string {
	if of == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f %%", 100*float64(n)/float64(of))
}

// transitions lists the breakers' transitions as "approval: 1× open".
func transitions(m map[string]float64) string {
	keys := slices.Sorted(maps.Keys(m))
	var parts []string
	for _, k := range keys {
		call, state, _ := strings.Cut(k, " ")
		parts = append(parts, fmt.Sprintf("%s: %.0f× %s", call, m[k], state))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack", "bench", "results")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from the repository (hack/bench/results not found above the working directory)")
		}
		dir = parent
	}
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--", "runtime", "api").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += " (runtime/ or api/ modified)"
	}
	return rev
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "unknown"
}
