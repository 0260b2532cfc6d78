// Command runtime is the load benchmark of `make bench-runtime`: the apiconnector-runtime binary
// serving hack/bench/testdata/connector.yaml, a bare net/http handler and (when node is on PATH)
// a Node.js handler doing the same decode and Basic check, each pinned to one CPU and loaded in
// turns from a generator pinned to another, over loopback. It writes one table to
// hack/bench/results/runtime.md.
//
//	go run ./hack/bench/runtime [-rounds 3] [-closed 2s] [-open 3s] [-strict]
package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

const (
	connectorFile = "hack/bench/testdata/connector.yaml"
	requestFile   = "hack/bench/testdata/request.json"
	requestPath   = "/signup"
	requestHost   = "signup.bench.example"
)

// config is one benchmark run.
type config struct {
	conns       int           // connections of the throughput phase
	rate        float64       // requests per second of the latency phase
	workers     int           // connections of the latency phase
	rounds      int           // each server's phases are split into rounds, the servers take turns
	closed      time.Duration // throughput phase, per round
	open        time.Duration // latency phase, per round
	warmup      time.Duration // unmeasured throughput phase before the first round
	serverCPU   int           // every server's CPU; -1: not pinned
	body        []byte        // the request body
	dir         string        // logs and scratch files
	progress    func(format string, args ...any)
	serverNames []string
}

func main() {
	if addr := os.Getenv(serveBareEnv); addr != "" {
		if err := serveBare(addr); err != nil {
			fmt.Fprintln(os.Stderr, "bare handler:", err)
			os.Exit(1)
		}
		return
	}
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-runtime:", err)
		os.Exit(1)
	}
}

func mainErr() error {
	cfg := config{workers: 32}
	var out, runtimeBin, servers string
	var genCPU int
	var strict bool
	flag.IntVar(&cfg.conns, "conns", 32, "connections of the throughput phase (each sends its next request when the answer is in)")
	flag.Float64Var(&cfg.rate, "rate", 1000, "requests per second of the latency phase")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds: each server's phases are split into this many, the servers take turns")
	flag.DurationVar(&cfg.closed, "closed", 2*time.Second, "throughput phase per server and round")
	flag.DurationVar(&cfg.open, "open", 3*time.Second, "latency phase per server and round")
	flag.DurationVar(&cfg.warmup, "warmup", time.Second, "unmeasured load per server before the rounds")
	flag.IntVar(&cfg.serverCPU, "server-cpu", 1, "CPU of the servers (-1: no pinning)")
	flag.IntVar(&genCPU, "gen-cpu", 0, "CPU of the load generator (-1: no pinning)")
	flag.StringVar(&servers, "servers", "runtime,bare,node", "servers to measure, of runtime, bare, node")
	flag.StringVar(&runtimeBin, "runtime-bin", "", "apiconnector-runtime binary (default: built from the working tree)")
	flag.StringVar(&out, "out", "hack/bench/results/runtime.md", "results file, rewritten (empty: standard output only)")
	flag.BoolVar(&strict, "strict", false, "exit 1 when the runtime misses a target")
	flag.Parse()
	if cfg.conns < 1 || cfg.rate <= 0 || cfg.rounds < 1 || cfg.closed <= 0 || cfg.open <= 0 || cfg.warmup < 0 || flag.NArg() > 0 {
		flag.Usage()
		return errors.New("bad flags")
	}
	cfg.serverNames = strings.Split(servers, ",")
	cfg.progress = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench-runtime: "+format+"\n", args...) }

	root, err := findRoot()
	if err != nil {
		return err
	}
	if cfg.body, err = os.ReadFile(filepath.Join(root, requestFile)); err != nil {
		return err
	}
	cfg.body = bytes.TrimSpace(cfg.body)
	if cfg.dir, err = os.MkdirTemp("", "apiconnector-bench-runtime-"); err != nil {
		return err
	}
	defer os.RemoveAll(cfg.dir)

	if runtimeBin == "" && cfg.has("runtime") {
		runtimeBin = filepath.Join(cfg.dir, "apiconnector-runtime")
		cfg.progress("building the runtime")
		build := exec.Command("go", "build", "-trimpath", "-o", runtimeBin, "./runtime/cmd/apiconnector-runtime")
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if err := build.Run(); err != nil {
			return fmt.Errorf("build the runtime: %w", err)
		}
	}
	// After the build, which would have had one CPU only.
	if genCPU >= 0 {
		if err := pinGenerator(genCPU); err != nil {
			return err
		}
	}
	node, _ := exec.LookPath("node")
	srvs, skipped, err := cfg.servers(filepath.Join(root, connectorFile), runtimeBin, node)
	if err != nil {
		return err
	}
	start, load := time.Now(), loadAverage()
	ms, err := measure(&cfg, srvs)
	if err != nil {
		return err
	}
	ms = append(ms, skipped...)
	var vs []verdict
	rt, okRT := find(ms, nameRuntime)
	bare, okBare := find(ms, nameBare)
	if okRT && okBare {
		vs = judge(rt, bare)
	}
	pinning := "unpinned"
	if cfg.serverCPU >= 0 && genCPU >= 0 {
		pinning = fmt.Sprintf("each server pinned to CPU %d (one under load at a time, in turns), the load generator to CPU %d", cfg.serverCPU, genCPU)
	}
	command := "make bench-runtime"
	if len(os.Args) > 1 {
		command = "go run ./hack/bench/runtime " + strings.Join(os.Args[1:], " ")
	}
	info := runInfo{
		command: command,
		date:    start,
		commit:  gitCommit(root),
		machine: machine(node) + ", load average " + load + " at the start",
		rate:    cfg.rate,
		method: fmt.Sprintf("Loopback, %s, %d rounds. Throughput: %d keep-alive connections without pause, %s per round. "+
			"Latency: %s requests per second on a fixed schedule, %s per round. The runtime serves `%s` (Basic auth, 10 rules, "+
			"a 5 000-entry list, 3 claims) with `%s`; the bare net/http and Node.js handlers check the same Basic credentials, "+
			"decode the same JSON and answer Continue.",
			pinning, cfg.rounds, cfg.conns, cfg.closed, fmtInt(cfg.rate), cfg.open, connectorFile, requestFile),
	}
	table := render(info, ms, vs)
	fmt.Print(table)
	for _, m := range ms {
		if m.firstErr != nil {
			fmt.Fprintf(os.Stderr, "bench-runtime: %s: %d errors, the first: %v\n", m.name, m.errors, m.firstErr)
		}
	}
	if out != "" {
		if err := os.WriteFile(filepath.Join(root, out), []byte(table), 0o644); err != nil {
			return err
		}
	}
	missed := 0
	for _, v := range vs {
		if !v.met {
			missed++
		}
	}
	if strict && (missed > 0 || len(vs) == 0) {
		return fmt.Errorf("the runtime missed %d of its targets", missed)
	}
	return nil
}

func (c *config) has(name string) bool {
	for _, n := range c.serverNames {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}

// servers are the servers to measure, and the measurements of those skipped.
func (c *config) servers(connector, runtimeBin, node string) ([]*server, []measurement, error) {
	var srvs []*server
	var skipped []measurement
	for _, n := range c.serverNames {
		var s *server
		var err error
		switch strings.TrimSpace(n) {
		case "runtime":
			s, err = runtimeServer(runtimeBin, connector, c.dir)
		case "bare":
			var self string
			if self, err = os.Executable(); err == nil {
				s, err = bareServer(self)
			}
		case "node":
			if node == "" {
				skipped = append(skipped, measurement{name: nameNode, skipped: "node is not on PATH"})
				continue
			}
			s, err = nodeServer(node, c.dir)
		default:
			return nil, nil, fmt.Errorf("unknown server %q (runtime, bare, node)", n)
		}
		if err != nil {
			return nil, nil, err
		}
		srvs = append(srvs, s)
	}
	return srvs, skipped, nil
}

func find(ms []measurement, name string) (measurement, bool) {
	for _, m := range ms {
		if m.name == name && m.skipped == "" {
			return m, true
		}
	}
	return measurement{}, false
}

// measure starts the servers, checks their answers, warms each up, then runs the rounds: in
// each, every server in turn gets its throughput phase and its latency phase, alone under load.
func measure(c *config, srvs []*server) ([]measurement, error) {
	defer func() {
		for _, s := range srvs {
			s.stop()
		}
	}()
	auth := basicAuth(benchUser, benchPass)
	targets := make([]*target, len(srvs))
	for i, s := range srvs {
		if err := s.start(c.serverCPU, filepath.Join(c.dir, fmt.Sprintf("server-%d.log", i))); err != nil {
			return nil, err
		}
		if err := checkServer(s, requestHost, requestPath, auth, c.body); err != nil {
			return nil, err
		}
		targets[i] = &target{addr: s.addr, request: buildRequest(requestHost, requestPath, auth, c.body), answer: s.answer}
		if c.warmup > 0 {
			c.progress("%s: warming up", s.name)
			closedLoop(targets[i], c.conns, c.warmup)
		}
	}
	closed := make([]loadResult, len(srvs))
	open := make([]loadResult, len(srvs))
	rss := make([]int64, len(srvs))
	for r := range c.rounds {
		for k := range srvs {
			i := (k + r) % len(srvs) // a different server first in each round
			s := srvs[i]
			c.progress("round %d/%d: %s", r+1, c.rounds, s.name)
			var cr, or *loadResult
			var cpuErr error
			peak, err := underLoad(s.pid(), func() {
				var before, after time.Duration
				before, cpuErr = procCPU(s.pid())
				cr = closedLoop(targets[i], c.conns, c.closed)
				if cpuErr == nil {
					after, cpuErr = procCPU(s.pid())
				}
				cr.serverCPU = after - before
				or = openLoop(targets[i], c.rate, c.open, c.workers)
			})
			if err = cmpOr(err, cpuErr); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			closed[i].add(cr)
			open[i].add(or)
			rss[i] = max(rss[i], peak)
		}
	}
	ms := make([]measurement, len(srvs))
	for i, s := range srvs {
		ms[i] = measurement{
			name:       s.name,
			throughput: closed[i].rps(),
			cpuPerReq:  closed[i].cpuPerRequest(),
			samples:    len(open[i].latencies),
			p99:        percentile(open[i].latencies, 99),
			rss:        rss[i],
			errors:     closed[i].errors + open[i].errors,
			firstErr:   cmpOr(closed[i].firstErr, open[i].firstErr),
		}
	}
	return ms, nil
}

func cmpOr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// underLoad runs load and returns the highest resident set size of pid sampled meanwhile
// (every 20 ms).
func underLoad(pid int, load func()) (int64, error) {
	var peak atomic.Int64
	var sampleErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			v, err := rssBytes(pid)
			if err != nil {
				sampleErr = err
				return
			}
			peak.Store(max(peak.Load(), v))
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	load()
	close(stop)
	wg.Wait()
	return peak.Load(), sampleErr
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// pinGenerator pins every thread of this process to cpu (threads started later inherit it) and
// runs Go on one thread at a time there.
func pinGenerator(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	runtime.GOMAXPROCS(1)
	for range 2 { // a thread started while the first pass ran is caught by the second
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin the generator to CPU %d: %w", cpu, err)
			}
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		got, err := statusField(filepath.Join("/proc/self/task", t.Name(), "status"), "Cpus_allowed_list")
		if err == nil && got != strconv.Itoa(cpu) {
			return fmt.Errorf("generator thread %s runs on CPUs %s, want %d", t.Name(), got, cpu)
		}
	}
	return nil
}

// findRoot walks up from the working directory to the repository root.
func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, connectorFile)); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from the repository (%s not found above the working directory)", connectorFile)
		}
		dir = parent
	}
}

// gitCommit is the short commit, marked when runtime/ or api/ differ from it.
func gitCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "runtime", "api").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		rev += " (runtime/ or api/ modified)"
	}
	return rev
}

// machine is "2 CPUs (model), Linux release, go version, node version".
func machine(node string) string {
	model := "unknown model"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	s := fmt.Sprintf("%d CPUs (%s), Linux %s, %s", cpuCount(), model, kernel(), runtime.Version())
	if node != "" {
		if v, err := exec.Command(node, "--version").Output(); err == nil {
			s += ", node " + strings.TrimSpace(string(v))
		}
	}
	return s
}

// cpuCount is the machine's CPUs (runtime.NumCPU counts only this process's, pinned to one).
func cpuCount() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, found := strings.Cut(r, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if found {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil {
			return runtime.NumCPU()
		}
		n += z - a + 1
	}
	return n
}

// loadAverage is the machine's one-minute load average: how much else wanted its CPUs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

func kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
