package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// The benchmark connector must answer the benchmark request with Continue after evaluating
// everything, and each rule must really be able to decide (a rule that can never match would
// make the benchmark cheaper than the connector it claims to be).
func TestBenchConnector(t *testing.T) {
	dir := t.TempDir()
	call, err := writeCallVariant("../testdata/connector.yaml", filepath.Join(dir, "call.yaml"), "http://127.0.0.1:1/verify")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"../testdata/connector.yaml", call} {
		b, err := connfile.LoadFiles(path)
		if err != nil {
			t.Fatal(err)
		}
		conn := b.Connectors[0]
		eng, err := rules.Compile(conn, rules.Options{ResolveList: b.ListResolver(conn.Namespace)})
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want := 10
		if path == call {
			want = 11
		}
		if len(conn.Spec.Rules) != want || len(conn.Spec.Claims) != 3 || len(conn.Spec.Lists) != 3 {
			t.Fatalf("%s: %d rules, %d claims, %d lists", path, len(conn.Spec.Rules), len(conn.Spec.Claims), len(conn.Spec.Lists))
		}
		if path == call {
			continue // its call needs the stub; the generator checks its answer
		}
		body, err := os.ReadFile("../testdata/request.json")
		if err != nil {
			t.Fatal(err)
		}
		decide := func(change func(map[string]any)) *entra.Decision {
			t.Helper()
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			if change != nil {
				change(m)
			}
			js, _ := json.Marshal(m)
			req, err := entra.DecodeRequest(js)
			if err != nil {
				t.Fatal(err)
			}
			d, err := eng.Evaluate(context.Background(), req)
			if err != nil || d.Failure != "" {
				t.Fatalf("%v %+v", err, d)
			}
			return d
		}
		if d := decide(nil); d.Action != entra.ActionContinue || len(d.Claims) != 3 || d.Claims["givenName"] != "John" {
			t.Fatalf("benchmark request: %+v", d)
		}
		for rule, change := range map[string]func(map[string]any){
			"disposable-domain":   func(m map[string]any) { m["email"] = "x@Disposable-4999.example" },
			"email-format":        func(m map[string]any) { m["email"] = "no-at-sign" },
			"postal-code":         func(m map[string]any) { m["postalCode"] = "9805" },
			"given-name":          func(m map[string]any) { m["givenName"] = "R2D2" },
			"display-name-markup": func(m map[string]any) { m["displayName"] = "<b>" },
			"job-title-length":    func(m map[string]any) { m["jobTitle"] = string(make([]byte, 65)) + "x" },
			"embargoed-country":   func(m map[string]any) { m["country"] = "Iran " },
			"unknown-app":         func(m map[string]any) { m["client_id"] = "other" },
			"federated-issuer": func(m map[string]any) {
				m["identities"] = []any{map[string]any{"signInType": "federated", "issuer": "evil.example"}}
			},
			"loyalty-number": func(m map[string]any) { m["extension_831374b3bd5041bfaa54263ec9e050fc_LoyaltyNumber"] = "12345" },
		} {
			if d := decide(change); d.Rule != rule {
				t.Errorf("rule %s did not decide: %+v", rule, d)
			}
		}
	}
}

// The variant without rules is the same connector, lists and all, without rules and claims.
func TestNoRulesVariant(t *testing.T) {
	path, err := writeNoRulesVariant("../testdata/connector.yaml", filepath.Join(t.TempDir(), "norules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := connfile.LoadFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	conn := b.Connectors[0]
	if len(conn.Spec.Rules) != 0 || len(conn.Spec.Claims) != 0 || len(conn.Spec.Lists) != 3 || conn.Spec.Authentication.Basic == nil {
		t.Fatalf("%d rules, %d claims, %d lists, auth %+v", len(conn.Spec.Rules), len(conn.Spec.Claims), len(conn.Spec.Lists), conn.Spec.Authentication)
	}
	if _, err := rules.Compile(conn, rules.Options{ResolveList: b.ListResolver(conn.Namespace)}); err != nil {
		t.Fatal(err)
	}
}

func TestMergeRounds(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	a := &result{conc: 2, requests: 4, p99: 4 * time.Millisecond, elapsed: time.Second, serverCPU: 10 * time.Millisecond, serverSwitches: 6,
		serverWait: 3 * time.Millisecond, genWait: 1500 * time.Microsecond, latencies: [][]time.Duration{ms(1, 2), ms(3, 4)}}
	b := &result{conc: 2, requests: 3, p99: 100 * time.Millisecond, errors: 1, firstError: "boom", elapsed: 2 * time.Second, serverCPU: 5 * time.Millisecond, serverSwitches: 1,
		serverWait: 40 * time.Millisecond, genWait: -1, latencies: [][]time.Duration{ms(100), ms(5, 6)}}
	m := merge([]*result{b, a})
	if m.requests != 7 || m.errors != 1 || m.firstError != "boom" || m.elapsed != 3*time.Second || m.serverCPU != 15*time.Millisecond || m.serverSwitches != 7 {
		t.Errorf("merged counts: %+v", m)
	}
	if m.serverWait != 43*time.Millisecond || m.genWait != -1 {
		t.Errorf("merged waits: server %v, generator %v; want 43ms and unknown", m.serverWait, m.genWait)
	}
	if got, want := fmtRoundWaits(m.rounds), "4.00ms (3.0 ms / 1.5 ms), 100.0ms (40.0 ms / –)"; got != want {
		t.Errorf("rounds with their waits = %q, want %q", got, want)
	}
	if got := switchesPerReq(m); got != "1.00" {
		t.Errorf("switches per request = %q, want 7 / 7", got)
	}
	if m := merge([]*result{a, {requests: 1, serverSwitches: -1}}); switchesPerReq(m) != "–" {
		t.Errorf("a round without a count: switches per request = %q, want unknown", switchesPerReq(m))
	}
	if got := m.rps(); got < 2.33 || got > 2.34 {
		t.Errorf("rps = %v, want 7 requests / 3 s", got)
	}
	if m.max != 100*time.Millisecond || m.p50 != 4*time.Millisecond {
		t.Errorf("percentiles over both rounds: p50 %v max %v, want 4ms and 100ms", m.p50, m.max)
	}
	if got := fmtRounds(m.rounds); got != "4.00ms 100.0ms" {
		t.Errorf("rounds' p99 = %q, want both rounds' own", got)
	}
}

// The context switches of a process's threads are counted: sleeping switches a thread out.
func TestProcSwitches(t *testing.T) {
	before := procSwitches(os.Getpid())
	for range 5 {
		time.Sleep(time.Millisecond)
	}
	after := procSwitches(os.Getpid())
	if before < 0 || after < before+5 {
		t.Errorf("switches before and after 5 sleeps: %d, %d; want at least 5 more", before, after)
	}
	if got := procSwitches(0); got != -1 {
		t.Errorf("procSwitches(0) = %d, want -1 (unknown)", got)
	}
}

// A process that shares its CPU with a busier one waits for it, and procRunWait counts that
// wait (not its run time): a child at nice 19 with ~20 ms of work, pinned to the CPU of this
// thread while it spins for 300 ms, gets about 1.5 % of it and waits the rest. The kernel adds
// a wait when it ends, so the child's is read once it has done its work and blocks.
func TestProcRunWait(t *testing.T) {
	if got := procRunWait(0); got != -1 {
		t.Errorf("procRunWait(0) = %v, want -1 (unknown)", got)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread() // after the affinity is restored: Go keeps the thread
	var mine, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &mine); err != nil {
		t.Fatal(err)
	}
	cpu := 0
	for !mine.IsSet(cpu) {
		cpu++
	}
	one.Set(cpu)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			unix.SchedSetaffinity(0, &mine)
			restored = true
		}
	}
	defer restore()
	child := exec.Command("nice", "-n", "19", "sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; read x")
	stdin, err := child.StdinPipe() // open until the end: the child blocks in read
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); child.Process.Kill(); child.Wait() }()
	pid := child.Process.Pid
	if err := unix.SchedSetaffinity(pid, &one); err != nil {
		t.Fatal(err)
	}
	before, selfBefore := procRunWait(pid), procRunWait(os.Getpid())
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	selfWaited := procRunWait(os.Getpid()) - selfBefore
	restore()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err := procStatus(pid); err != nil || strings.HasPrefix(st["State"], "S") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child did not finish its work within 10s")
		}
	}
	waited := procRunWait(pid) - before
	if before < 0 || waited < 150*time.Millisecond {
		t.Errorf("a nice 19 process sharing its CPU with a spinning thread for 300ms waited %v for it, want at least 150ms", waited)
	}
	if selfBefore < 0 || selfWaited >= waited {
		t.Errorf("this process waited %v meanwhile, the nice 19 one %v: want less", selfWaited, waited)
	}
}

// A generator stopped by a signal runs no deferred stop; its servers must not outlive it. The
// test binary plays the generator: it starts a server (sleep) and is killed.
func TestServersDieWithTheGenerator(t *testing.T) {
	if dir := os.Getenv("BENCH_TEST_GENERATOR"); dir != "" {
		p, err := startProc("sleeper", "", filepath.Join(dir, "sleeper.log"), nil, "sleep", "60")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println(p.pid())
		select {} // until killed
	}
	gen := exec.Command(os.Args[0], "-test.run=^TestServersDieWithTheGenerator$")
	gen.Env = append(os.Environ(), "BENCH_TEST_GENERATOR="+t.TempDir())
	out, err := gen.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := gen.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	gen.Process.Kill()
	gen.Wait()
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("the generator's output %q: %v %v", line, err, perr)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := procStatus(pid)
		if err != nil || strings.HasPrefix(st["State"], "Z") { // gone, or dead and not yet reaped
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("server %d still runs (%s) 5s after its generator was killed", pid, st["State"])
		}
	}
}

// A measured phase runs with the generator's collector off, and the setting is restored after.
func TestWithoutGC(t *testing.T) {
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	var inside int
	withoutGC(func() *result {
		inside = debug.SetGCPercent(-1)
		return &result{}
	})
	if inside != -1 {
		t.Errorf("GC percent during the phase = %d, want -1 (off)", inside)
	}
	if after := debug.SetGCPercent(150); after != 150 {
		t.Errorf("GC percent after the phase = %d, want 150 restored", after)
	}
}

// The trace analysis finds the collection, the wakeups and a long wait that no collection
// caused, in a trace of this process.
func TestAnalyzeTrace(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	path := filepath.Join(t.TempDir(), "t.trace")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	time.Sleep(10 * time.Millisecond) // the sweeper parks
	// A goroutine woken while the only P is busy for 3 ms waits that long.
	ch, done := make(chan struct{}), make(chan struct{})
	go func() { <-ch; close(done) }()
	time.Sleep(time.Millisecond) // it blocks on ch
	close(ch)
	for spin := time.Now(); time.Since(spin) < 3*time.Millisecond; {
	}
	<-done
	trace.Stop()
	f.Close()

	s, err := analyzeTrace(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.cycles < 1 || s.wakeups < 2 || s.traced < 10*time.Millisecond {
		t.Errorf("analysis %+v: want at least one cycle, two wakeups and 10ms traced", s)
	}
	if s.long < 1 || s.long == s.longInGC || s.worst < 3*time.Millisecond {
		t.Errorf("analysis %+v: want the 3ms wait outside any GC window", s)
	}
}

// The re-executed generator runs with the runtime pod's GODEBUG, keeping what the caller set.
func TestGeneratorGODEBUG(t *testing.T) {
	if got := withGODEBUG(""); got != children.RuntimeGODEBUG {
		t.Errorf("withGODEBUG(\"\") = %q", got)
	}
	got := withGODEBUG("gctrace=1")
	if got != "gctrace=1,"+children.RuntimeGODEBUG {
		t.Errorf("withGODEBUG(gctrace=1) = %q, want the caller's setting kept", got)
	}
	t.Setenv("GODEBUG", got)
	if !generatorGODEBUG() {
		t.Errorf("GODEBUG=%s: generatorGODEBUG() = false", got)
	}
	t.Setenv("GODEBUG", "gctrace=1")
	if generatorGODEBUG() {
		t.Error("GODEBUG=gctrace=1: generatorGODEBUG() = true")
	}
}
