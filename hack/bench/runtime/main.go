// Command runtime is the runtime half of the benchmarks (issue 6): it loads the real
// apiconnector-runtime binary and a bare net/http baseline over loopback and reports throughput,
// latency, errors and peak RSS as a markdown table, with ratios to the baseline taken in the
// same run.
//
//	go run ./hack/bench/runtime [-levels 1,4,16,64] [-n 20000] [-out hack/bench/results/runtime.md]
//
// Every phase is bounded by a request count and a time limit; all traffic stays on 127.0.0.1.
// By default the servers are pinned to the upper half of the CPUs and the generator to the lower
// half (taskset), so the generator does not steal the servers' CPU.
//
// -cpuprofile and -memprofile serve the connector (and the baseline) in this process instead,
// wired like `apiconnector-runtime serve`, because the runtime binary exposes no pprof endpoint;
// look at the server with `go tool pprof -focus=serveConnector`. `go test -bench . -cpuprofile`
// in runtime/server profiles one request without HTTP.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	pinnedEnv  = "APICONNECTOR_BENCH_PINNED"
	beginMark  = "<!-- BEGIN GENERATED: go run ./hack/bench/runtime (edits between the markers are overwritten) -->"
	endMark    = "<!-- END GENERATED -->"
	benchUser  = "entra-bench"
	benchPass  = "correct-horse-battery-staple-0123456789"
	callsLine  = "  calls: []\n"
	claimsLine = "  claims:\n"
)

type options struct {
	levels       []int
	n, warmup    int
	callPerConn  int
	maxLevelTime time.Duration
	halfTime     time.Duration
	halfConns    int
	stubDelay    time.Duration
	runtimeBin   string
	out          string
	pin          bool
	serverCPUs   string
	genCPUs      string
	rounds       int
	cpuProfile   string
	memProfile   string
	strict       bool
	inProcess    bool
	root         string
	requestBody  []byte
	connector    string
	keepLogs     bool
	beforeBin    string
	numCPU       int
}

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

func mainErr() error {
	var o options
	var levels, serveBaselineAddr string
	var writeTestdata bool
	flag.StringVar(&levels, "levels", "1,4,16,64", "concurrency levels (connections, one request in flight each)")
	flag.IntVar(&o.n, "n", 20000, "requests per level")
	flag.IntVar(&o.rounds, "rounds", 4, "rounds per level: the servers take turns, each round a share of the level's requests")
	flag.IntVar(&o.warmup, "warmup", 3000, "unmeasured requests per server before the levels")
	flag.IntVar(&o.callPerConn, "call-n-per-conn", 400, "call variant: at most this many requests per connection per level (each waits 5 ms for the stub)")
	flag.DurationVar(&o.maxLevelTime, "max-level-time", 20*time.Second, "time bound of one level")
	flag.DurationVar(&o.halfTime, "half-time", 6*time.Second, "duration of the half-load phase")
	flag.IntVar(&o.halfConns, "half-conns", 64, "connections of the half-load phase")
	flag.DurationVar(&o.stubDelay, "stub-delay", 5*time.Millisecond, "latency of the outbound-call stub")
	flag.StringVar(&o.runtimeBin, "runtime-bin", "", "apiconnector-runtime binary (default: go build into a temporary directory)")
	flag.StringVar(&o.out, "out", "hack/bench/results/runtime.md", "markdown file to write the tables into (between the markers); empty: stdout only")
	flag.BoolVar(&o.pin, "pin", true, "pin servers and generator to separate CPUs with taskset (when available and there are 2+ CPUs)")
	flag.StringVar(&o.serverCPUs, "server-cpus", "", "CPUs of the servers when pinning (default: upper half)")
	flag.StringVar(&o.genCPUs, "gen-cpus", "", "CPUs of the generator when pinning (default: lower half)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured phases to this file (serves in-process)")
	flag.StringVar(&o.memProfile, "memprofile", "", "write a heap profile after the measured phases to this file (serves in-process)")
	flag.BoolVar(&o.strict, "strict", false, "exit 1 when a target is missed")
	flag.BoolVar(&o.keepLogs, "keep-logs", false, "keep the temporary directory with the servers' logs")
	flag.StringVar(&o.beforeBin, "before-bin", "", "also load this apiconnector-runtime binary as \"runtime-before\" (for before/after figures in one run)")
	flag.StringVar(&serveBaselineAddr, "serve-baseline", "", "internal: serve the baseline on this address")
	flag.BoolVar(&writeTestdata, "write-testdata", false, "regenerate the ConfigMap of hack/bench/testdata/connector.yaml and exit")
	flag.Parse()

	if serveBaselineAddr != "" {
		return serveBaseline(serveBaselineAddr)
	}
	root, err := findRoot()
	if err != nil {
		return err
	}
	o.root = root
	o.connector = filepath.Join(root, "hack/bench/testdata/connector.yaml")
	if writeTestdata {
		return writeConnectorTestdata(o.connector)
	}
	for _, f := range strings.Split(levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			return fmt.Errorf("-levels: bad level %q", f)
		}
		o.levels = append(o.levels, c)
	}
	if o.n < 1 {
		return errors.New("-n must be positive")
	}
	if o.rounds <= 0 || o.rounds > o.n {
		return errors.New("-rounds must be between 1 and -n")
	}
	o.numCPU = runtime.NumCPU()
	if n, err := strconv.Atoi(os.Getenv(pinnedEnv)); err == nil && n > 0 {
		o.numCPU = n // the machine's count, before the generator pinned itself
	}
	o.inProcess = o.cpuProfile != "" || o.memProfile != ""
	if o.inProcess {
		o.pin = false
	}
	if o.pin {
		if err := pin(&o); err != nil {
			return err
		}
	}
	if o.requestBody, err = os.ReadFile(filepath.Join(root, "hack/bench/testdata/request.json")); err != nil {
		return err
	}
	o.requestBody = bytes.TrimSpace(o.requestBody)
	return bench(&o)
}

// findRoot walks up from the working directory to the module root holding the bench testdata.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "hack/bench/testdata/connector.yaml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from the repository (hack/bench/testdata/connector.yaml not found above the working directory)")
		}
		dir = parent
	}
}

// pin re-executes the generator under taskset on the generator CPUs (once), and sets the servers'
// CPUs. With fewer than 2 CPUs or without taskset nothing is pinned.
func pin(o *options) error {
	n := runtime.NumCPU()
	if _, err := exec.LookPath("taskset"); err != nil || n < 2 {
		o.pin = false
		return nil
	}
	if o.serverCPUs == "" {
		o.serverCPUs = cpuRange(n/2, n-1)
	}
	if o.genCPUs == "" {
		o.genCPUs = cpuRange(0, n/2-1)
	}
	if os.Getenv(pinnedEnv) != "" {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	taskset, _ := exec.LookPath("taskset")
	args := append([]string{"taskset", "-c", o.genCPUs, self}, os.Args[1:]...)
	return syscall.Exec(taskset, args, append(os.Environ(), pinnedEnv+"="+strconv.Itoa(n)))
}

func cpuRange(lo, hi int) string {
	if lo == hi {
		return strconv.Itoa(lo)
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// variant is one server with its measurements.
type variant struct {
	name    string
	desc    string
	proc    *serverProc
	target  *target
	call    bool // waits for the outbound-call stub
	before  bool // runs -before-bin
	answer  string
	levels  []*result
	half    *result
	hwm     int64
	rss     int64
	stopErr error
}

func (v *variant) maxRPS() float64 {
	m := 0.0
	for _, r := range v.levels {
		m = max(m, r.rps())
	}
	return m
}

func bench(o *options) (err error) {
	tmp, err := os.MkdirTemp("", "apiconnector-bench-")
	if err != nil {
		return err
	}
	defer func() {
		if o.keepLogs || err != nil {
			fmt.Fprintf(os.Stderr, "bench: logs kept in %s\n", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()
	secrets := filepath.Join(tmp, "secrets")
	if err := writeSecrets(secrets, benchUser, benchPass); err != nil {
		return err
	}
	stubURL, stopStub, err := startStub(o.stubDelay)
	if err != nil {
		return err
	}
	defer stopStub()
	callConnector, err := writeCallVariant(o.connector, filepath.Join(tmp, "connector-call.yaml"), stubURL)
	if err != nil {
		return err
	}

	bin := o.runtimeBin
	if bin == "" && !o.inProcess {
		bin = filepath.Join(tmp, "apiconnector-runtime")
		fmt.Fprintln(os.Stderr, "bench: building the runtime")
		build := exec.Command("go", "build", "-trimpath", "-o", bin, "./runtime/cmd/apiconnector-runtime")
		build.Dir, build.Stdout, build.Stderr = o.root, os.Stderr, os.Stderr
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := build.Run(); err != nil {
			return fmt.Errorf("build the runtime: %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(benchUser+":"+benchPass))
	subjectWant := [][]byte{[]byte(`"action":"Continue"`), []byte(`"displayName":"jOHN sMITH"`), []byte(`"givenName":"John"`), []byte(`"surname":"Smith"`)}
	variants := []*variant{
		{name: "baseline", desc: "bare net/http handler: decode the JSON body into a map, answer a static Continue",
			target: &target{request: buildRequest("/signup", "", o.requestBody), wantCode: 200, wantInBody: [][]byte{[]byte(`"action":"Continue"`)}}},
		{name: "runtime", desc: "apiconnector-runtime serve, hack/bench/testdata/connector.yaml: Basic auth, 10 rules, 5 000-entry ConfigMap list, 3 claims",
			target: &target{request: buildRequest("/signup", auth, o.requestBody), wantCode: 200, wantInBody: subjectWant}},
		{name: "runtime+call", desc: fmt.Sprintf("the same plus one outbound POST to a loopback stub answering after %s (11 rules)", o.stubDelay),
			call:   true,
			target: &target{request: buildRequest("/signup", auth, o.requestBody), wantCode: 200, wantInBody: subjectWant}},
	}
	if o.beforeBin != "" && !o.inProcess {
		variants = append(variants, &variant{name: "runtime-before", before: true,
			desc:   "the same connector on " + o.beforeBin + " (the runtime before the fixes below)",
			target: &target{request: buildRequest("/signup", auth, o.requestBody), wantCode: 200, wantInBody: subjectWant}})
	}
	defer func() {
		for _, v := range variants {
			if v.proc != nil && v.proc.stop != nil {
				v.proc.stop()
				v.proc.stop = nil
			}
		}
	}()

	// Start the servers.
	for _, v := range variants {
		logPath := filepath.Join(tmp, v.name+".log")
		connector := o.connector
		if v.call {
			connector = callConnector
		}
		if o.inProcess {
			if v.name == "baseline" {
				v.proc, err = startInProcessBaseline()
			} else {
				v.proc, err = startInProcess(v.name, connector, secrets, logPath)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			v.target.addr = v.proc.addr
			continue
		}
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		cpus := ""
		if o.pin {
			cpus = o.serverCPUs
		}
		readyURL := ""
		if v.name == "baseline" {
			v.proc, err = startProc(v.name, cpus, logPath, self, "-serve-baseline", addr)
		} else {
			ops, err2 := freeAddr()
			if err2 != nil {
				return err2
			}
			readyURL = "http://" + ops + "/readyz"
			vbin := bin
			if v.before {
				vbin = o.beforeBin
			}
			v.proc, err = startProc(v.name, cpus, logPath, vbin, "serve", "--connector", connector, "--secrets-dir", secrets,
				"--listen", addr, "--ops-listen", ops, "--shutdown-delay", "0s")
		}
		if err != nil {
			return err
		}
		v.proc.addr, v.target.addr = addr, addr
		if err := waitReady(addr, readyURL, 20*time.Second); err != nil {
			return fmt.Errorf("%s: %w (log: %s)", v.name, err, logPath)
		}
	}

	// Check the answers, then warm up.
	for _, v := range variants {
		if v.answer, err = probe(v.target); err != nil {
			return fmt.Errorf("%s: first answer: %w", v.name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: %s answers %s\n", v.name, v.answer)
		w := o.warmup
		if v.call {
			w = min(w, 16*o.callPerConn/4)
		}
		if r := runClosed(v.target, 16, w, 30*time.Second); r.errors > 0 {
			return fmt.Errorf("%s: warm-up: %d errors, first: %s", v.name, r.errors, r.firstError)
		}
	}

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	// Closed loop: per level, the servers take turns in rounds (the order reversed every other
	// round), so drift on this shared machine hits them alike; each level's figures are those of
	// its rounds together.
	for _, c := range o.levels {
		rounds := make([][]*result, len(variants))
		for round := range o.rounds {
			for k := range variants {
				i := k
				if round%2 == 1 {
					i = len(variants) - 1 - k
				}
				v := variants[i]
				n := o.n
				if v.call {
					n = min(n, c*o.callPerConn)
				}
				share := n / o.rounds // n requests over all rounds
				if round < n%o.rounds {
					share++
				}
				cpu0 := procCPU(v.proc.pid())
				r := runClosed(v.target, c, share, o.maxLevelTime/time.Duration(o.rounds))
				r.serverCPU = procCPU(v.proc.pid()) - cpu0
				rounds[i] = append(rounds[i], r)
			}
		}
		for i, v := range variants {
			r := merge(rounds[i])
			v.levels = append(v.levels, r)
			fmt.Fprintf(os.Stderr, "bench: %-13s c=%-3d %6d req %4d err %8.0f rps  p50 %7s  p99 %7s  max %7s  %s\n",
				v.name, c, r.requests, r.errors, r.rps(), fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.max), r.firstError)
		}
	}
	// Half load: open loop at 50 % of each server's own maximum.
	for _, v := range variants {
		rate := v.maxRPS() / 2
		cpu0 := procCPU(v.proc.pid())
		r := runRate(v.target, o.halfConns, rate, o.halfTime)
		r.serverCPU = procCPU(v.proc.pid()) - cpu0
		v.half = r
		fmt.Fprintf(os.Stderr, "bench: %-13s half load %6.0f/s: %6d req %4d err  p50 %7s  p99 %7s  max %7s  %s\n",
			v.name, rate, r.requests, r.errors, fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.max), r.firstError)
	}

	if o.memProfile != "" {
		runtime.GC()
		f, err := os.Create(o.memProfile)
		if err != nil {
			return err
		}
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
		f.Close()
	}
	for _, v := range variants {
		if pid := v.proc.pid(); pid != 0 {
			v.hwm, v.rss = procMem(pid)
		}
		v.stopErr = v.proc.stop()
		v.proc.stop = nil
	}

	rep := report(o, variants)
	fmt.Println(rep.text)
	if o.out != "" {
		path := o.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(o.root, path)
		}
		if err := writeBetweenMarkers(path, rep.text); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", path)
	}
	for _, v := range variants {
		if v.stopErr != nil {
			return fmt.Errorf("%s did not stop cleanly: %w", v.name, v.stopErr)
		}
	}
	if o.strict && !rep.met {
		return errors.New("a target was missed (see the report)")
	}
	return nil
}

// writeCallVariant derives the call variant from the connector file: one call to the stub, and a
// rule reading its answer.
func writeCallVariant(src, dst, stubURL string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	s := string(b)
	if strings.Count(s, callsLine) != 1 || strings.Count(s, claimsLine) != 1 {
		return "", fmt.Errorf("%s: want exactly one %q and one %q line", src, strings.TrimSpace(callsLine), strings.TrimSpace(claimsLine))
	}
	s = strings.Replace(s, callsLine, `  calls:
    - name: verify
      url: `+stubURL+`
      method: POST
      body: "{'email': claims.email, 'givenName': claims.?givenName.orValue(''), 'reference': request.clientId}"
      timeout: 2s
      failurePolicy: Fail
`, 1)
	s = strings.Replace(s, claimsLine, `    - name: not-verified
      when: "calls.verify.status == 200 && calls.verify.body.?verified.orValue(false) != true"
      block:
        message: We couldn't verify your identity.
`+claimsLine, 1)
	return dst, os.WriteFile(dst, []byte(s), 0o600)
}

// writeConnectorTestdata rewrites the ConfigMap document after the generated marker of the
// connector file: 5 000 disposable-mail domains, none of them the benchmark request's.
func writeConnectorTestdata(path string) error {
	const marker = "# --- generated by go run ./hack/bench/runtime -write-testdata; do not edit below ---\n"
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	head, _, _ := strings.Cut(string(b), marker)
	var sb strings.Builder
	sb.WriteString(head)
	sb.WriteString(marker)
	sb.WriteString("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bench-disposable-domains\n  namespace: bench\ndata:\n  domains: |\n")
	sb.WriteString("    # one domain per line; blank lines and # comments are skipped\n")
	for i := range 5000 {
		fmt.Fprintf(&sb, "    disposable-%04d.example\n", i)
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

func writeBetweenMarkers(path, text string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	block := beginMark + "\n" + text + endMark + "\n"
	s := string(old)
	i, j := strings.Index(s, beginMark), strings.Index(s, endMark)
	switch {
	case i >= 0 && j > i:
		s = s[:i] + block + s[j+len(endMark):]
		s = strings.Replace(s, endMark+"\n\n", endMark+"\n", 1)
	case len(s) == 0:
		s = "# Runtime benchmark\n\n" + block
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + block
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dµs", d.Microseconds())
	}
}

func gitDescribe(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "runtime", "api").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += " (runtime or api modified)"
	}
	return rev
}

func kernel() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "unknown"
	}
	b := make([]byte, 0, len(u.Release))
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func commandLine() string {
	args := slices.Clone(os.Args[1:])
	return strings.TrimSpace("go run ./hack/bench/runtime " + strings.Join(args, " "))
}
