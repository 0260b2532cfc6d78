package main

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The benchmark's Basic credentials, written to the runtime's secrets directory and given to the
// other two servers.
const (
	benchUser = "entra-bench"
	benchPass = "correct-horse-battery-staple-0123456789"
)

// Environment of the bare handler's process: this program (or its test binary) re-executed with
// serveBareEnv set serves the bare handler on that address instead of running the benchmark.
const (
	serveBareEnv = "APICONNECTOR_BENCH_SERVE_BARE"
	userEnv      = "APICONNECTOR_BENCH_USER"
	passEnv      = "APICONNECTOR_BENCH_PASS"
)

// continueBody is the answer of the bare and Node.js handlers.
const continueBody = `{"version":"1.0.0","action":"Continue"}`

// bareHandler is what any connector must at least do: check the Basic credentials, decode the
// JSON request body (at most 64 KiB) into a map, and answer Continue.
func bareHandler(user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user))&subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="bench"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var claims map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&claims); err != nil || claims == nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		io.WriteString(w, continueBody)
	})
}

// serveBare serves bareHandler on addr until the process is killed.
func serveBare(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: bareHandler(os.Getenv(userEnv), os.Getenv(passEnv)), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	return srv.Serve(ln)
}

// nodeHandler is the bare handler in Node.js, with nothing but its standard library: the same
// Basic check (constant-time), JSON.parse of the body (at most 64 KiB) and Continue.
const nodeHandler = `'use strict';
const http = require('http');
const crypto = require('crypto');
const [host, port] = [process.env.BENCH_HOST, Number(process.env.BENCH_PORT)];
const user = Buffer.from(process.env.` + userEnv + `);
const pass = Buffer.from(process.env.` + passEnv + `);
const answer = '` + continueBody + `';
function same(a, b) { return a.length === b.length && crypto.timingSafeEqual(a, b); }
function authorized(header) {
  if (typeof header !== 'string' || !header.startsWith('Basic ')) return false;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return false;
  const okUser = same(Buffer.from(decoded.slice(0, i)), user);
  const okPass = same(Buffer.from(decoded.slice(i + 1)), pass);
  return okUser && okPass;
}
function reply(res, code, type, body) {
  res.writeHead(code, {'Content-Type': type, 'Content-Length': Buffer.byteLength(body)});
  res.end(body);
}
const server = http.createServer((req, res) => {
  if (!authorized(req.headers.authorization)) {
    res.setHeader('WWW-Authenticate', 'Basic realm="bench"');
    reply(res, 401, 'text/plain', 'unauthorized\n');
    req.resume();
    return;
  }
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > 65536) { reply(res, 413, 'text/plain', 'too large\n'); req.destroy(); return; }
    chunks.push(c);
  });
  req.on('end', () => {
    if (res.headersSent) return;
    let claims;
    try { claims = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) { claims = null; }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
      reply(res, 400, 'text/plain', 'bad request\n');
      return;
    }
    reply(res, 200, 'application/json; charset=utf-8', answer);
  });
});
server.keepAliveTimeout = 120000;
server.listen(port, host);
`

// server is one server process under test.
type server struct {
	name  string // as in the table
	argv  []string
	env   []string
	ready string // URL that answers 200 when ready; empty: the endpoint accepts connections
	// answer must be contained in the body of every 200 answer to the benchmark request.
	answer []byte
	// probe must additionally be contained in the first answer (what proves the work was done).
	probe [][]byte

	addr string
	cmd  *exec.Cmd
	done chan error
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// start runs the server, pinned to cpu with taskset when cpu >= 0, with its output in logPath,
// and waits until it is ready.
func (s *server) start(cpu int, logPath string) error {
	argv := s.argv
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Env = append(os.Environ(), s.env...)
	// Killed with the benchmark, however it ends.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait(); logf.Close() }()
	if err := s.waitReady(20 * time.Second); err != nil {
		s.stop()
		return fmt.Errorf("%s: %w (log: %s)", s.name, err, logPath)
	}
	if cpu >= 0 {
		got, err := cpusAllowed(s.pid())
		if err != nil || got != strconv.Itoa(cpu) {
			s.stop()
			return fmt.Errorf("%s runs on CPUs %q (%v), want %d", s.name, got, err, cpu)
		}
	}
	return nil
}

func (s *server) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var err error
		select {
		case werr := <-s.done:
			return fmt.Errorf("exited before it was ready: %v", werr)
		default:
		}
		if s.ready == "" {
			var c net.Conn
			if c, err = net.DialTimeout("tcp", s.addr, time.Second); err == nil {
				c.Close()
				return nil
			}
		} else {
			var resp *http.Response
			if resp, err = http.Get(s.ready); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("%s: HTTP %d", s.ready, resp.StatusCode)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %s: %w", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop kills the server: nothing it does on the way out is measured.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
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

// bareServer is the bare handler in its own process: this executable with serveBareEnv set.
func bareServer(self string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return &server{name: "bare net/http", argv: []string{self}, addr: addr,
		env:    []string{serveBareEnv + "=" + addr, userEnv + "=" + benchUser, passEnv + "=" + benchPass},
		answer: []byte(continueBody)}, nil
}

// nodeServer is the Node.js handler, its script written into dir.
func nodeServer(node, dir string) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	script := filepath.Join(dir, "handler.js")
	if err := os.WriteFile(script, []byte(nodeHandler), 0o600); err != nil {
		return nil, err
	}
	return &server{name: "Node.js http", argv: []string{node, script}, addr: addr,
		env:    []string{"BENCH_HOST=" + host, "BENCH_PORT=" + port, userEnv + "=" + benchUser, passEnv + "=" + benchPass},
		answer: []byte(continueBody)}, nil
}

// runtimeServer is `apiconnector-runtime serve` of the benchmark connector, with its secrets
// written into dir. Its request log goes to the log file, as a pod's goes to the node.
func runtimeServer(bin, connector, dir string) (*server, error) {
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, err
	}
	for name, v := range map[string]string{"username": benchUser, "password": benchPass} {
		if err := os.WriteFile(filepath.Join(secrets, name), []byte(v), 0o600); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	ops, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return &server{name: "apiconnector-runtime", addr: addr, ready: "http://" + ops + "/readyz",
		argv: []string{bin, "serve", "--connector", connector, "--secrets-dir", secrets, "--listen", addr, "--ops-listen", ops},
		// Continue, and the three claims computed by the connector from the request.
		answer: []byte(`"action":"Continue"`),
		probe:  [][]byte{[]byte(`"displayName":"jOHN sMITH"`), []byte(`"givenName":"John"`), []byte(`"surname":"Smith"`)},
	}, nil
}

// procCPU is the CPU time (user and system, all threads) of a process so far, in the kernel's
// clock ticks of 10 ms.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// cpusAllowed is the Cpus_allowed_list of a process.
func cpusAllowed(pid int) (string, error) {
	return statusField(fmt.Sprintf("/proc/%d/status", pid), "Cpus_allowed_list")
}

// rssBytes is the resident set size of a process now.
func rssBytes(pid int) (int64, error) {
	v, err := statusField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
	if err != nil {
		return 0, err
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("VmRSS %q: %w", v, err)
	}
	return kb << 10, nil
}

func statusField(path, name string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == name {
			return strings.TrimSpace(v), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New(path + ": no " + name)
}
