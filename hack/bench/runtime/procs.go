package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/hack/bench/benchtrace"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
	"github.com/apiconnector/operator/runtime/server"
)

// server is one process (or, when profiling, in-process server) under load.
type serverProc struct {
	name string
	addr string
	cmd  *exec.Cmd // nil in-process
	stop func() error
}

func (p *serverProc) pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startProc runs bin with args and env added to this process's environment, pinned to cpus
// with taskset when cpus is set. Output goes to log.
func startProc(name, cpus, logPath string, env []string, bin string, args ...string) (*serverProc, error) {
	argv := append([]string{bin}, args...)
	if cpus != "" {
		argv = append([]string{"taskset", "-c", cpus}, argv...)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// A generator stopped by a signal runs no deferred stop: the kernel kills its servers then
	// (it sends the signal when the thread that started them exits; the generator locks no
	// goroutine to a thread, so Go keeps that thread as long as the process lives).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	p := &serverProc{name: name, cmd: cmd}
	p.stop = func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
			return fmt.Errorf("%s did not stop within 15s after SIGTERM; killed", name)
		}
	}
	return p, nil
}

// waitReady polls url (or, when url is empty, a TCP connect to addr) until it answers 200.
func waitReady(addr, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var err error
		if url == "" {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return nil
			}
		} else {
			var resp *http.Response
			if resp, err = http.Get(url); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %w", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// selfCPU is the CPU time (user+system) of this process so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time (user+system, all threads) of pid so far, from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after its closing paren are fixed.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // field 14: utime
	st, _ := strconv.ParseInt(f[12], 10, 64) // field 15: stime
	const clkTck = 100                       // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// procSwitches is how often the threads of pid have been switched out so far (voluntary and
// involuntary, from /proc/<pid>/task/*/status), or -1 when unknown.
func procSwitches(pid int) int64 {
	return sumThreads(pid, func(dir string) (int64, error) {
		st, err := statusFields(dir + "/status")
		if err != nil {
			return 0, err
		}
		var n int64
		for _, k := range []string{"voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"} {
			c, _ := strconv.ParseInt(st[k], 10, 64)
			n += c
		}
		return n, nil
	})
}

// procRunWait is how long the threads of pid have so far been ready to run but waited for a
// CPU (the second field of /proc/<pid>/task/*/schedstat), or -1 when unknown. A pinned server
// waits when another task holds its CPU (other processes, kernel threads, its own threads), so
// this tells a round slowed by the machine from one slowed by the server. A wait is added when
// it ends: one still going on is not in the figure yet (between rounds the servers are idle).
func procRunWait(pid int) time.Duration {
	ns := sumThreads(pid, func(dir string) (int64, error) {
		b, err := os.ReadFile(dir + "/schedstat")
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			return 0, fmt.Errorf("%s/schedstat: %q", dir, b)
		}
		return strconv.ParseInt(f[1], 10, 64)
	})
	if ns < 0 {
		return -1
	}
	return time.Duration(ns)
}

// sumThreads adds up read over the threads of pid (/proc/<pid>/task/<tid>), or -1 when pid is
// unknown. Threads that exit meanwhile are left out: Go keeps its threads, so between two
// readings in a phase nothing is lost.
func sumThreads(pid int, read func(dir string) (int64, error)) int64 {
	if pid == 0 {
		return -1
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return -1
	}
	var n int64
	for _, t := range tasks {
		v, err := read(fmt.Sprintf("/proc/%d/task/%s", pid, t.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		n += v
	}
	return n
}

// procStatus returns the fields of /proc/<pid>/status.
func procStatus(pid int) (map[string]string, error) {
	return statusFields(fmt.Sprintf("/proc/%d/status", pid))
}

// statusFields returns the fields of a /proc status file (a process's or a thread's).
func statusFields(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	return fields, nil
}

// procMem returns VmHWM (peak RSS) and VmRSS of pid in bytes.
func procMem(pid int) (hwm, rss int64) {
	st, err := procStatus(pid)
	if err != nil {
		return 0, 0
	}
	kib := func(k string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(st[k], " kB"), 10, 64)
		return n << 10
	}
	return kib("VmHWM"), kib("VmRSS")
}

// procCPUs returns the CPUs pid may run on, as taskset -c writes them ("1", "2-3").
func procCPUs(pid int) (string, error) {
	st, err := procStatus(pid)
	return st["Cpus_allowed_list"], err
}

// --- the baseline ---

// continueBody is the static answer of the baseline.
var continueBody = []byte(`{"version":"1.0.0","action":"Continue"}`)

// baselineHandler is the physical limit: net/http, the JSON body decoded with encoding/json into
// a map (what every connector must at least do) and a static Continue.
func baselineHandler(w http.ResponseWriter, r *http.Request) {
	var claims map[string]any
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&claims); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	w.Write(continueBody)
}

// serveBaseline is the hidden -serve-baseline mode: the baseline as its own process, so it is
// measured exactly like the runtime binary. It stops on SIGTERM.
func serveBaseline(addr string) error {
	benchtrace.FromEnv()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(baselineHandler), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	ctx, stop := signalContext()
	defer stop()
	go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// --- the outbound-call stub ---

// startStub serves the call variant's verification service on loopback: it answers
// {"verified":true} after delay. It runs in the generator's process (and on its CPUs).
func startStub(delay time.Duration) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"verified":true}`)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String() + "/verify", func() { srv.Close() }, nil
}

// --- the subject in-process (profiling) ---

// startInProcess serves the connector file in this process, wired like `apiconnector-runtime
// serve` (rules engine with the server's metrics observer, JSON request logs, the ops registry
// with Go and process collectors), so CPU and heap profiles of the generator show the server.
func startInProcess(name, connector, secretsDir, logPath string) (*serverProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewJSONHandler(logf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	load := func(path string) (entra.Evaluator, *v1alpha1.APIConnector, error) {
		b, err := connfile.LoadFiles(path)
		if err != nil {
			return nil, nil, err
		}
		if len(b.Connectors) != 1 {
			return nil, nil, fmt.Errorf("%s: want exactly one APIConnector", path)
		}
		conn := b.Connectors[0]
		eng, err := rules.Compile(conn, rules.Options{Observer: server.EngineObserver{Metrics: metrics}, Logger: log, ResolveList: b.ListResolver(conn.Namespace)})
		if err != nil {
			return nil, nil, err
		}
		return eng, conn, nil
	}
	ev, conn, err := load(connector)
	if err != nil {
		return nil, err
	}
	s, err := server.New(conn, ev, server.Options{ConnectorPath: connector, Load: load, SecretsDir: secretsDir,
		Logger: log, Registry: reg, Metrics: metrics})
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
	p := &serverProc{name: name, addr: ln.Addr().String()}
	p.stop = func() error {
		cancel()
		err := <-done
		s.Close(context.Background())
		logf.Close()
		return err
	}
	return p, waitReady("", "http://"+opsLn.Addr().String()+"/readyz", 10*time.Second)
}

func writeSecrets(dir, user, pass string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "username"), []byte(user+"\n"), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "password"), []byte(pass+"\n"), 0o600)
}
