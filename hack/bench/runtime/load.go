package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// requestTimeout bounds one request: a server that stops answering costs errors, not time.
const requestTimeout = 2 * time.Second

// target is what the generator sends: one prebuilt HTTP/1.1 request on keep-alive connections,
// and what the body of every answer must contain (with status 200) to count as a success.
type target struct {
	addr    string
	request []byte
	answer  []byte
}

// buildRequest is the POST of body to path with the Authorization header auth (none when empty).
func buildRequest(host, path, auth string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, host, len(body))
	if auth != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// conn is one keep-alive connection.
type conn struct {
	c    net.Conn
	br   *bufio.Reader
	body bytes.Buffer
}

// do sends the target's request and reads the answer. It returns the body (valid until the next
// call) and whether the connection can be used again.
func (c *conn) do(t *target) (status int, body []byte, keep bool, err error) {
	if err := c.c.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return 0, nil, false, err
	}
	if _, err := c.c.Write(t.request); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, false, err
	}
	c.body.Reset()
	_, err = c.body.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, false, err
	}
	return resp.StatusCode, c.body.Bytes(), !resp.Close, nil
}

// session is a worker's connection, dialled again after an error or a close.
type session struct {
	t *target
	c *conn
}

func (s *session) dial() error {
	if s.c != nil {
		return nil
	}
	nc, err := net.DialTimeout("tcp", s.t.addr, requestTimeout)
	if err != nil {
		return err
	}
	s.c = &conn{c: nc, br: bufio.NewReaderSize(nc, 16<<10)}
	return nil
}

func (s *session) close() {
	if s.c != nil {
		s.c.c.Close()
		s.c = nil
	}
}

// do makes one request; an error is a failed request.
func (s *session) do() error {
	if err := s.dial(); err != nil {
		time.Sleep(10 * time.Millisecond) // a refused dial should not spin
		return err
	}
	status, body, keep, err := s.c.do(s.t)
	if err != nil || !keep {
		s.close()
	}
	switch {
	case err != nil:
		return err
	case status != http.StatusOK:
		return fmt.Errorf("HTTP %d: %.200q", status, body)
	case !bytes.Contains(body, s.t.answer):
		return fmt.Errorf("answer without %s: %.200q", s.t.answer, body)
	}
	return nil
}

// loadResult is one load phase.
type loadResult struct {
	ok, errors int64
	elapsed    time.Duration
	latencies  []time.Duration // open loop only, of the successful requests
	firstErr   error
	serverCPU  time.Duration // the server's CPU time meanwhile (closed loop only)
}

func (r *loadResult) add(o *loadResult) {
	r.ok += o.ok
	r.errors += o.errors
	r.elapsed += o.elapsed
	r.serverCPU += o.serverCPU
	r.latencies = append(r.latencies, o.latencies...)
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

// rps is the rate of successful requests.
func (r *loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// cpuPerRequest is the server's CPU time per successful request: what it would take to serve
// throughput on a CPU of its own, whatever else ran on the CPU meanwhile.
func (r *loadResult) cpuPerRequest() time.Duration {
	if r.ok == 0 {
		return 0
	}
	return r.serverCPU / time.Duration(r.ok)
}

type counter struct {
	ok, errors atomic.Int64
	once       sync.Once
	first      error
}

func (c *counter) count(err error) bool {
	if err == nil {
		c.ok.Add(1)
		return true
	}
	c.errors.Add(1)
	c.once.Do(func() { c.first = err })
	return false
}

// closedLoop runs conns connections, each sending its next request as soon as the answer to
// the previous one is in, for dur: the server's maximum throughput.
func closedLoop(t *target, conns int, dur time.Duration) *loadResult {
	var c counter
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for range conns {
		wg.Go(func() {
			s := &session{t: t}
			defer s.close()
			for time.Now().Before(deadline) {
				c.count(s.do())
			}
		})
	}
	wg.Wait()
	return &loadResult{ok: c.ok.Load(), errors: c.errors.Load(), elapsed: time.Since(start), firstErr: c.first}
}

// openLoop sends rate requests per second on a fixed schedule for dur, whatever the answers,
// over up to workers connections. A request's latency runs from its release by the schedule, so
// a request that waits for a free connection (all of them waiting for the server) counts its
// wait.
func openLoop(t *target, rate float64, dur time.Duration, workers int) *loadResult {
	n := int(rate * dur.Seconds())
	period := time.Duration(float64(time.Second) / rate)
	due := make(chan time.Time, n)
	var c counter
	var wg, dialled sync.WaitGroup
	lats := make([][]time.Duration, workers)
	dialled.Add(workers)
	for w := range workers {
		wg.Go(func() {
			s := &session{t: t}
			defer s.close()
			if err := s.dial(); err != nil { // connections are open before the schedule starts
				c.count(err)
			}
			dialled.Done()
			lat := make([]time.Duration, 0, n/workers+64)
			for released := range due {
				if c.count(s.do()) {
					lat = append(lat, time.Since(released))
				}
			}
			lats[w] = lat
		})
	}
	dialled.Wait()
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * period)); d > 0 {
			time.Sleep(d)
		}
		due <- time.Now()
	}
	close(due)
	wg.Wait()
	r := &loadResult{ok: c.ok.Load(), errors: c.errors.Load(), elapsed: time.Since(start), firstErr: c.first}
	for _, l := range lats {
		r.latencies = append(r.latencies, l...)
	}
	return r
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of the latencies; 0 when there
// are none. It sorts lat.
func percentile(lat []time.Duration, p float64) time.Duration {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	rank := int(math.Ceil(p / 100 * float64(len(lat))))
	return lat[min(max(rank, 1), len(lat))-1]
}

// probe sends one request on a new connection and returns the answer.
func probe(t *target) (int, []byte, error) {
	s := &session{t: t}
	defer s.close()
	if err := s.dial(); err != nil {
		return 0, nil, err
	}
	status, body, _, err := s.c.do(t)
	return status, bytes.Clone(body), err
}

// checkServer proves the server does the work before it is measured: the benchmark request
// answers 200 with the expected body, wrong credentials 401, a body that is not JSON 400.
func checkServer(s *server, host, path, auth string, body []byte) error {
	good := &target{addr: s.addr, request: buildRequest(host, path, auth, body)}
	status, got, err := probe(good)
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	if status != http.StatusOK || !bytes.Contains(got, s.answer) {
		return fmt.Errorf("%s: the benchmark request answered HTTP %d %q", s.name, status, got)
	}
	for _, want := range s.probe {
		if !bytes.Contains(got, want) {
			return fmt.Errorf("%s: the benchmark request's answer %q lacks %s", s.name, got, want)
		}
	}
	wrong := basicAuth(benchUser, benchPass+"x")
	for _, c := range []struct {
		what string
		req  []byte
		want int
	}{
		{"wrong credentials", buildRequest(host, path, wrong, body), http.StatusUnauthorized},
		{"no credentials", buildRequest(host, path, "", body), http.StatusUnauthorized},
		{"a body that is not JSON", buildRequest(host, path, auth, []byte(`{"email":`)), http.StatusBadRequest},
	} {
		status, got, err := probe(&target{addr: s.addr, request: c.req})
		if err != nil {
			return fmt.Errorf("%s: %s: %w", s.name, c.what, err)
		}
		if status != c.want {
			return fmt.Errorf("%s: %s answered HTTP %d %q, want %d", s.name, c.what, status, got, c.want)
		}
	}
	return nil
}
