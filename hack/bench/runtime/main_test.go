package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apiconnector/operator/runtime/rulestest"
)

// The test binary is also the bare handler's process in the smoke test, as the command is in a
// real run.
func TestMain(m *testing.M) {
	if addr := os.Getenv(serveBareEnv); addr != "" {
		if err := serveBare(addr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		d := make([]time.Duration, len(v))
		for i, x := range v {
			d[i] = time.Duration(x) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100 … 1, unsorted
	}
	for _, c := range []struct {
		lat  []time.Duration
		p    float64
		want time.Duration
	}{
		{nil, 99, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
		{ms(3, 1, 2), 99, 3 * time.Millisecond},
		{ms(3, 1, 2), 34, 2 * time.Millisecond}, // rank ceil(1.02) = 2
		{ms(3, 1, 2), 1, 1 * time.Millisecond},
	} {
		if got := percentile(c.lat, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.lat, c.p, got, c.want)
		}
	}
}

func TestFmtInt(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 999.4: "999", 999.6: "1 000", 20000: "20 000", 1234567: "1 234 567"} {
		if got := fmtInt(v); got != want {
			t.Errorf("fmtInt(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestJudge(t *testing.T) {
	bare := measurement{name: nameBare, throughput: 40000, p99: 200 * time.Microsecond, samples: 9000, rss: 10 << 20}
	good := measurement{name: nameRuntime, throughput: 24000, p99: 300 * time.Microsecond, samples: 9000, rss: 40<<20 - 1}
	met := func(vs []verdict) []bool {
		b := make([]bool, len(vs))
		for i, v := range vs {
			b[i] = v.met
		}
		return b
	}
	for _, c := range []struct {
		name   string
		change func(m *measurement)
		bare   func(m *measurement)
		want   []bool
	}{
		{"at every limit", nil, nil, []bool{true, true, true, true}},
		{"under 20 000 req/s", func(m *measurement) { m.throughput = 19999 }, func(b *measurement) { b.throughput = 20000 }, []bool{false, true, true, true}},
		{"under 0.6× bare", func(m *measurement) { m.throughput = 23999 }, nil, []bool{false, true, true, true}},
		{"p99 over 1.5× bare", func(m *measurement) { m.p99++ }, nil, []bool{true, false, true, true}},
		{"bare without latencies", nil, func(b *measurement) { b.p99 = 0 }, []bool{true, false, true, true}},
		{"40 MiB", func(m *measurement) { m.rss = 40 << 20 }, nil, []bool{true, true, false, true}},
		{"RSS not sampled", func(m *measurement) { m.rss = 0 }, nil, []bool{true, true, false, true}},
		{"one error", func(m *measurement) { m.errors = 1 }, nil, []bool{true, true, true, false}},
		{"nothing measured", func(m *measurement) { *m = measurement{name: nameRuntime} }, nil, []bool{false, false, false, false}},
	} {
		rt, b := good, bare
		if c.change != nil {
			c.change(&rt)
		}
		if c.bare != nil {
			c.bare(&b)
		}
		if got := met(judge(rt, b)); !equal(got, c.want) {
			t.Errorf("%s: met %v, want %v", c.name, got, c.want)
		}
	}
}

func equal(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRender(t *testing.T) {
	info := runInfo{command: "make bench-runtime", date: time.Date(2026, 11, 27, 9, 5, 0, 0, time.UTC), commit: "abc1234",
		machine: "2 CPUs (X), Linux 6.1, go1.26.8", method: "Loopback.", rate: 1000}
	rt := measurement{name: nameRuntime, throughput: 30000, cpuPerReq: 31 * time.Microsecond, p99: 330 * time.Microsecond, samples: 9000, rss: 27 << 20}
	bare := measurement{name: nameBare, throughput: 40000, cpuPerReq: 24 * time.Microsecond, p99: 200 * time.Microsecond, samples: 9000, rss: 9 << 20}
	node := measurement{name: nameNode, throughput: 12000, cpuPerReq: 80 * time.Microsecond, p99: 660 * time.Microsecond, samples: 9000, rss: 50 << 20, errors: 2}
	got := render(info, []measurement{rt, bare, node}, judge(rt, bare))
	want := "# Runtime benchmark\n\n" +
		"`make bench-runtime` on 2026-11-27 09:05 UTC, commit abc1234; 2 CPUs (X), Linux 6.1, go1.26.8.\n\n" +
		"Loopback.\n\n" +
		"| server | throughput | CPU per request | p99 at 1 000 req/s | RSS under load | errors |\n" +
		"|---|---|---|---|---|---|\n" +
		"| apiconnector-runtime | 30 000 req/s (0.75× bare, 2.50× Node.js) | 31 µs | 0.33 ms (1.65× bare, 0.50× Node.js) | 27.0 MiB | 0 |\n" +
		"| bare net/http | 40 000 req/s | 24 µs | 0.20 ms | 9.0 MiB | 0 |\n" +
		"| Node.js http | 12 000 req/s | 80 µs | 0.66 ms | 50.0 MiB | 2 |\n" +
		"| target (runtime) | ≥ 20 000 req/s and ≥ 0.6× bare: **met** | | ≤ 1.5× bare: **missed** | < 40 MiB: **met** | 0: **met** |\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	skipped := render(info, []measurement{rt, bare, {name: nameNode, skipped: "node is not on PATH"}}, judge(rt, bare))
	for _, s := range []string{
		"| apiconnector-runtime | 30 000 req/s (0.75× bare) | 31 µs | 0.33 ms (1.65× bare) |",
		"| Node.js http | skipped: node is not on PATH | | | | |\n",
	} {
		if !strings.Contains(skipped, s) {
			t.Errorf("without node: no %q in\n%s", s, skipped)
		}
	}
	if s := render(info, []measurement{bare}, nil); strings.Contains(s, "target") {
		t.Errorf("without the runtime, a target row:\n%s", s)
	}
}

// The benchmark connector answers the benchmark request with Continue and three claims after
// evaluating everything, and each rule can decide on its own: a rule that never matched would
// make the benchmark cheaper than the connector it stands for.
func TestBenchConnector(t *testing.T) {
	raw, err := os.ReadFile("../testdata/request.json")
	if err != nil {
		t.Fatal(err)
	}
	request := func(change map[string]any) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		for k, v := range change {
			m[k] = v
		}
		return m
	}
	type expect struct {
		Action string            `json:"action"`
		Rule   string            `json:"rule,omitempty"`
		Claims map[string]string `json:"claims,omitempty"`
	}
	type testCase struct {
		Name   string         `json:"name"`
		Claims map[string]any `json:"claims"`
		Expect expect         `json:"expect"`
	}
	cases := []testCase{{Name: "benchmark request", Claims: request(nil),
		Expect: expect{Action: "Continue", Claims: map[string]string{"displayName": "jOHN sMITH", "givenName": "John", "surname": "Smith"}}}}
	for rule, c := range map[string]struct {
		action string
		change map[string]any
	}{
		"disposable-domain":   {"ShowBlockPage", map[string]any{"email": "x@Disposable-4999.example"}},
		"email-format":        {"ValidationError", map[string]any{"email": "no-at-sign"}},
		"postal-code":         {"ValidationError", map[string]any{"postalCode": "9805"}},
		"given-name":          {"ValidationError", map[string]any{"givenName": "R2D2"}},
		"display-name-markup": {"ValidationError", map[string]any{"displayName": "<b>"}},
		"job-title-length":    {"ValidationError", map[string]any{"jobTitle": strings.Repeat("x", 65)}},
		"embargoed-country":   {"ShowBlockPage", map[string]any{"country": "Iran "}},
		"unknown-app":         {"ShowBlockPage", map[string]any{"client_id": "other"}},
		"federated-issuer": {"ShowBlockPage", map[string]any{
			"identities": []any{map[string]any{"signInType": "federated", "issuer": "evil.example"}}}},
		"loyalty-number": {"ValidationError", map[string]any{"extension_831374b3bd5041bfaa54263ec9e050fc_LoyaltyNumber": "12345"}},
	} {
		cases = append(cases, testCase{Name: rule, Claims: request(c.change), Expect: expect{Action: c.action, Rule: rule}})
	}
	js, err := json.Marshal(map[string]any{"cases": cases})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cases.json")
	if err := os.WriteFile(path, js, 0o600); err != nil {
		t.Fatal(err)
	}
	results, err := rulestest.RunFile([]string{"../testdata/connector.yaml"}, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 11 {
		t.Fatalf("%d results, want 11", len(results))
	}
	for _, r := range results {
		if !r.Passed {
			t.Errorf("%s: %v", r.Name, r.Problems)
		}
	}
}

// checkServer refuses a server that does not check the credentials or decode the body.
func TestCheckServerRefusesShortcuts(t *testing.T) {
	body := []byte(`{"email":"a@b.example"}`)
	auth := basicAuth(benchUser, benchPass)
	for name, h := range map[string]http.Handler{
		"no Basic check": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(continueBody)) }),
		"no decoding": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != benchUser || p != benchPass {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Write([]byte(continueBody))
		}),
		"another answer": bareHandlerAnswering(`{"version":"1.0.0","action":"ShowBlockPage"}`),
	} {
		srv := httptest.NewServer(h)
		s := &server{name: name, addr: srv.Listener.Addr().String(), answer: []byte(continueBody)}
		if err := checkServer(s, requestHost, requestPath, auth, body); err == nil {
			t.Errorf("%s: accepted", name)
		}
		srv.Close()
	}
	srv := httptest.NewServer(bareHandler(benchUser, benchPass))
	defer srv.Close()
	s := &server{name: nameBare, addr: srv.Listener.Addr().String(), answer: []byte(continueBody)}
	if err := checkServer(s, requestHost, requestPath, auth, body); err != nil {
		t.Errorf("bare handler: %v", err)
	}
	s.probe = [][]byte{[]byte(`"givenName":"John"`)}
	if err := checkServer(s, requestHost, requestPath, auth, body); err == nil {
		t.Error("an answer without the probed claim was accepted")
	}
}

func bareHandlerAnswering(answer string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		bareHandler(benchUser, benchPass).ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			w.WriteHeader(rec.Code)
			return
		}
		w.Write([]byte(answer))
	})
}

// The Node.js handler does what the bare one does.
func TestNodeHandler(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH")
	}
	s, err := nodeServer(node, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.start(-1, filepath.Join(t.TempDir(), "node.log")); err != nil {
		t.Fatal(err)
	}
	defer s.stop()
	if err := checkServer(s, requestHost, requestPath, basicAuth(benchUser, benchPass), []byte(`{"email":"a@b.example"}`)); err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{`[1]`, `null`, `"x"`} {
		status, got, err := probe(&target{addr: s.addr, request: buildRequest(requestHost, requestPath, basicAuth(benchUser, benchPass), []byte(body))})
		if err != nil || status != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d %q %v, want 400", body, status, got, err)
		}
	}
}

// The load phases count what the server answers: successes, failures and latencies.
func TestLoad(t *testing.T) {
	srv := httptest.NewServer(bareHandler(benchUser, benchPass))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	body := []byte(`{"email":"a@b.example"}`)
	good := &target{addr: addr, request: buildRequest(requestHost, requestPath, basicAuth(benchUser, benchPass), body), answer: []byte(continueBody)}

	r := closedLoop(good, 4, 300*time.Millisecond)
	if r.ok < 100 || r.errors != 0 || r.elapsed < 300*time.Millisecond || r.elapsed > time.Second {
		t.Errorf("closed loop: %d ok, %d errors (%v) in %v", r.ok, r.errors, r.firstErr, r.elapsed)
	}
	r = openLoop(good, 400, 500*time.Millisecond, 4)
	if r.ok != 200 || r.errors != 0 || len(r.latencies) != 200 || percentile(r.latencies, 99) <= 0 || r.elapsed < 495*time.Millisecond {
		t.Errorf("open loop: %d ok, %d errors (%v), %d latencies in %v", r.ok, r.errors, r.firstErr, len(r.latencies), r.elapsed)
	}

	wrong := &target{addr: addr, request: buildRequest(requestHost, requestPath, basicAuth(benchUser, "nope"), body), answer: []byte(continueBody)}
	r = closedLoop(wrong, 2, 100*time.Millisecond)
	if r.ok != 0 || r.errors == 0 || r.firstErr == nil || !strings.Contains(r.firstErr.Error(), "HTTP 401") {
		t.Errorf("wrong credentials: %d ok, %d errors (%v)", r.ok, r.errors, r.firstErr)
	}
	other := &target{addr: addr, request: good.request, answer: []byte(`"action":"ShowBlockPage"`)}
	r = openLoop(other, 200, 100*time.Millisecond, 2)
	if r.ok != 0 || r.errors != 20 || len(r.latencies) != 0 {
		t.Errorf("unexpected answers: %d ok, %d errors, %d latencies", r.ok, r.errors, len(r.latencies))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()
	r = closedLoop(&target{addr: closedAddr, request: good.request, answer: good.answer}, 1, 50*time.Millisecond)
	if r.ok != 0 || r.errors == 0 {
		t.Errorf("no server: %d ok, %d errors", r.ok, r.errors)
	}
}

// The whole benchmark for a second or two against the bare handler alone, in its own process
// (this test binary), pinned like a real run when the machine has two CPUs.
func TestSmokeBare(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	cfg := config{conns: 4, workers: 4, rate: 500, rounds: 2, closed: 400 * time.Millisecond, open: 500 * time.Millisecond,
		warmup: 100 * time.Millisecond, serverCPU: -1, dir: t.TempDir(), body: []byte(`{"email":"a@b.example"}`),
		progress: t.Logf, serverNames: []string{"bare"}}
	if _, err := exec.LookPath("taskset"); err == nil && cpuCount() >= 2 {
		cfg.serverCPU = 1
	}
	srvs, skipped, err := cfg.servers("", "", "")
	if err != nil || len(srvs) != 1 || len(skipped) != 0 {
		t.Fatal(srvs, skipped, err)
	}
	ms, err := measure(&cfg, srvs)
	if err != nil {
		t.Fatal(err)
	}
	m := ms[0]
	if m.name != nameBare || m.errors != 0 || m.throughput < 1000 || m.samples != 500 || m.p99 <= 0 || m.p99 > time.Second || m.rss < 1<<20 ||
		m.cpuPerReq <= 0 || m.cpuPerReq > time.Millisecond {
		t.Errorf("%+v", m)
	}
	if srvs[0].cmd != nil {
		t.Error("the server was left running")
	}
	table := render(runInfo{rate: cfg.rate}, ms, nil)
	if !strings.Contains(table, "| bare net/http | ") || !strings.Contains(table, "p99 at 500 req/s") {
		t.Errorf("table:\n%s", table)
	}
}
