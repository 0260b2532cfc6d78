package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The load generator speaks HTTP/1.1 over raw loopback TCP: one keep-alive connection per worker,
// the request bytes built once, the answer parsed just enough to check status, length and body.
// A net/http client costs about as much CPU per request as the server it measures; this one costs
// a fraction of it, so the servers (not the generator) are the bottleneck.

// target is one server under load and the answer it must give.
type target struct {
	addr       string
	request    []byte // full HTTP request, sent as is
	wantCode   int
	wantInBody [][]byte
}

func buildRequest(path, auth string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: bench.local\r\nUser-Agent: apiconnector-bench\r\n", path)
	if auth != "" {
		fmt.Fprintf(&b, "Authorization: %s\r\n", auth)
	}
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	return b.Bytes()
}

type conn struct {
	nc  net.Conn
	r   *bufio.Reader
	buf []byte
}

func dial(addr string) (*conn, error) {
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, r: bufio.NewReaderSize(nc, 8<<10), buf: make([]byte, 0, 4<<10)}, nil
}

var errBadAnswer = errors.New("unexpected answer")

// do sends one request and reads the answer. keep is false when the connection can't be reused.
func (c *conn) do(t *target, deadline time.Time) (status int, body []byte, keep bool, err error) {
	c.nc.SetDeadline(deadline)
	if _, err := c.nc.Write(t.request); err != nil {
		return 0, nil, false, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	length, keep := -1, true
	for {
		h, err := c.r.ReadSlice('\n')
		if err != nil {
			return status, nil, false, err
		}
		if len(h) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return status, nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		}
	}
	if length < 0 {
		return status, nil, false, errors.New("answer without Content-Length")
	}
	if cap(c.buf) < length {
		c.buf = make([]byte, length)
	}
	c.buf = c.buf[:length]
	if _, err := io.ReadFull(c.r, c.buf); err != nil {
		return status, nil, false, err
	}
	return status, c.buf, keep, nil
}

func (t *target) check(status int, body []byte) error {
	if status != t.wantCode {
		return fmt.Errorf("%w: HTTP %d %s", errBadAnswer, status, body)
	}
	for _, w := range t.wantInBody {
		if !bytes.Contains(body, w) {
			return fmt.Errorf("%w: body %s lacks %s", errBadAnswer, body, w)
		}
	}
	return nil
}

// probe sends one request and returns the answer, checked.
func probe(t *target) (string, error) {
	c, err := dial(t.addr)
	if err != nil {
		return "", err
	}
	defer c.nc.Close()
	status, body, _, err := c.do(t, time.Now().Add(5*time.Second))
	if err != nil {
		return "", err
	}
	ans := fmt.Sprintf("HTTP %d %s", status, body)
	return ans, t.check(status, body)
}

// result is one measured phase.
type result struct {
	conc          int
	rate          float64 // target rate of an open-loop phase, 0 for closed loop
	requests      int
	errors        int
	firstError    string
	elapsed       time.Duration
	timedOut      bool // stopped by the time bound before the request count
	p50, p90, p99 time.Duration
	max           time.Duration
	// open loop only: latency from the actual send, without the time a request waited for the
	// generator (which shares the machine) to send it
	sendP50, sendP99 time.Duration
	serverCPU        time.Duration     // CPU time of the server process during the phase (0 if unknown)
	serverSwitches   int64             // context switches of the server's threads during the phase (-1 if unknown)
	serverWait       time.Duration     // time the server's threads were ready but waited for a CPU (-1 if unknown)
	genCPU           time.Duration     // CPU time of this process during the phase
	genWait          time.Duration     // time this process's threads were ready but waited for a CPU (-1 if unknown)
	rounds           []*result         // the rounds of a merged phase
	latencies        [][]time.Duration // per connection, for merging rounds
	sendLatencies    [][]time.Duration // the same from the send (open loop)
}

// merge adds up the rounds of one phase: counts, times and CPU are summed, the percentiles are
// those of all the rounds' requests together.
func merge(rounds []*result) *result {
	m := &result{conc: rounds[0].conc, rate: rounds[0].rate}
	for _, r := range rounds {
		m.requests += r.requests
		m.errors += r.errors
		if m.firstError == "" {
			m.firstError = r.firstError
		}
		m.elapsed += r.elapsed
		m.timedOut = m.timedOut || r.timedOut
		m.serverCPU += r.serverCPU
		m.serverSwitches = addKnown(m.serverSwitches, r.serverSwitches)
		m.serverWait = addKnown(m.serverWait, r.serverWait)
		m.genCPU += r.genCPU
		m.genWait = addKnown(m.genWait, r.genWait)
		m.latencies = append(m.latencies, r.latencies...)
		m.sendLatencies = append(m.sendLatencies, r.sendLatencies...)
		m.rounds = append(m.rounds, r)
	}
	summarize(m, m.latencies)
	if m.rate > 0 {
		m.sendP50, _, m.sendP99, _ = percentiles(m.sendLatencies)
	}
	return m
}

// addKnown adds two counts of which a negative one is unknown (and makes the sum unknown).
func addKnown[T int64 | time.Duration](a, b T) T {
	if a < 0 || b < 0 {
		return -1
	}
	return a + b
}

// since is the change of a count from before to now, unknown (-1) when either is.
func since[T int64 | time.Duration](before, now T) T {
	if before < 0 || now < 0 {
		return -1
	}
	return now - before
}

func (r *result) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

func summarize(r *result, lat [][]time.Duration) {
	r.p50, r.p90, r.p99, r.max = percentiles(lat)
}

func percentiles(lat [][]time.Duration) (p50, p90, p99, pmax time.Duration) {
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(q float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		i := int(math.Ceil(q*float64(len(all)))) - 1
		return all[max(i, 0)]
	}
	return pct(0.50), pct(0.90), pct(0.99), pct(1)
}

// runClosed keeps conc requests in flight until n requests were answered or maxTime passed.
// Latency is from writing the request to reading the whole answer. Failed requests count as
// errors (not in the latencies), and the connection is opened again.
func runClosed(t *target, conc, n int, maxTime time.Duration) *result {
	return run(t, conc, n, maxTime, 0)
}

// runRate sends at a fixed rate (open loop) over conc connections for dur. Latency is measured
// from when a request was due, not from when it was sent, so a server that falls behind is
// charged for the queueing (no coordinated omission).
func runRate(t *target, conc int, rate float64, dur time.Duration) *result {
	n := int(rate * dur.Seconds())
	return run(t, conc, n, dur+10*time.Second, rate)
}

// pace hands out the requests' indexes at their due times, to whichever connection is free.
// time.Sleep wakes up to a millisecond late here when the process has nothing else to do (the
// scheduler then waits for the network in whole milliseconds), which released requests in bursts
// of a dozen and charged every server for the generator's lateness. A periodic timerfd is
// waited on by the same network poller, so each expiry wakes it on time. Latency still counts
// from the due time, so a server that keeps every connection busy is charged for the wait.
func pace(n int, start time.Time, period time.Duration, stopAt time.Time, due chan<- int64) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	timer := os.NewFile(uintptr(fd), "pace") // non-blocking: reads wait in the network poller
	defer timer.Close()
	spec := unix.ItimerSpec{
		Value:    unix.NsecToTimespec(max(time.Until(start), 1).Nanoseconds()),
		Interval: unix.NsecToTimespec(max(period, 1).Nanoseconds()),
	}
	if err := unix.TimerfdSettime(fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("timerfd: %w", err)
	}
	var buf [8]byte
	for i := 0; i < n; {
		if _, err := io.ReadFull(timer, buf[:]); err != nil {
			return fmt.Errorf("timerfd: %w", err)
		}
		// The number of expiries since the last read: more than one when the generator was late.
		for k := binary.NativeEndian.Uint64(buf[:]); k > 0 && i < n; k-- {
			if start.Add(time.Duration(i) * period).After(stopAt) {
				return nil
			}
			due <- int64(i)
			i++
		}
	}
	return nil
}

// withoutGC runs a measured phase with this process's garbage collector off (unless the heap
// reaches 1 GiB). The generator has one CPU, and there a collection keeps Go's scheduler from
// polling the network for up to milliseconds (the background sweeper, golang/go#56060): the
// answers that arrive meanwhile are read late, and every server was charged for the
// generator's collections, about two a second. A phase allocates little besides its latency
// slices, which are allocated up front. Not for in-process serving, whose server allocates.
func withoutGC(phase func() *result) *result {
	runtime.GC()
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(1 << 30))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	return phase()
}

func run(t *target, conc, n int, maxTime time.Duration, rate float64) *result {
	res := &result{conc: conc, rate: rate}
	lat := make([][]time.Duration, conc)
	sendLat := make([][]time.Duration, conc)
	var next atomic.Int64
	var errs atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	start := time.Now().Add(5 * time.Millisecond)
	stopAt := start.Add(maxTime)
	var period time.Duration
	if rate > 0 {
		period = time.Duration(float64(time.Second) / rate)
	}
	var due chan int64
	if rate > 0 {
		due = make(chan int64, conc)
		go func() {
			if err := pace(n, start, period, stopAt, due); err != nil {
				errs.Add(1)
				firstErr.Do(func() { res.firstError = err.Error() })
			}
			close(due) // after the error is counted: the connections stop when due closes
		}()
	}
	genStart := selfCPU()
	for w := range conc {
		lat[w] = make([]time.Duration, 0, n/conc+1)
		if rate > 0 {
			sendLat[w] = make([]time.Duration, 0, n/conc+1)
		}
		wg.Go(func() {
			var c *conn
			defer func() {
				if c != nil {
					c.nc.Close()
				}
			}()
			for {
				var t0 time.Time
				if rate > 0 {
					i, open := <-due
					if !open {
						return
					}
					t0 = start.Add(time.Duration(i) * period)
				} else {
					if next.Add(1) > int64(n) {
						return
					}
					t0 = time.Now()
				}
				if t0.After(stopAt) {
					return
				}
				sent := time.Now()
				err := func() error {
					if c == nil {
						var err error
						if c, err = dial(t.addr); err != nil {
							return err
						}
					}
					status, body, keep, err := c.do(t, time.Now().Add(10*time.Second))
					if err == nil {
						err = t.check(status, body)
					}
					if err != nil || !keep {
						c.nc.Close()
						c = nil
					}
					return err
				}()
				if err != nil {
					errs.Add(1)
					firstErr.Do(func() { res.firstError = err.Error() })
					continue
				}
				end := time.Now()
				lat[w] = append(lat[w], end.Sub(t0))
				if rate > 0 {
					sendLat[w] = append(sendLat[w], end.Sub(sent))
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.genCPU = selfCPU() - genStart
	for _, l := range lat {
		res.requests += len(l)
	}
	res.errors = int(errs.Load())
	res.timedOut = res.requests+res.errors < n
	res.latencies = lat
	summarize(res, lat)
	if rate > 0 {
		res.sendLatencies = sendLat
		res.sendP50, _, res.sendP99, _ = percentiles(sendLat)
	}
	return res
}
