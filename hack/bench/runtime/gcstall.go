package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/exp/trace"
)

// stalls is what an execution trace of a server says about its scheduling delays: how long the
// goroutines that were woken (mostly a connection that became readable) waited until they ran,
// and how many of the long waits overlapped a garbage-collection window, from the start of a
// cycle's mark phase until its background sweeper parks. On one CPU the sweeper keeps Go's
// scheduler from polling the network until it is done (golang/go#56060).
type stalls struct {
	traced   time.Duration
	cycles   int
	inGC     time.Duration // time covered by GC windows
	wakeups  int
	long     int // waits longer than longWait
	longInGC int
	worst    time.Duration
}

const longWait = time.Millisecond

// sweeperParks is the reason the trace gives when the background sweeper has swept everything.
const sweeperParks = "GC background sweeper wait"

type span struct{ from, to trace.Time }

func analyzeTrace(path string) (*stalls, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var (
		first, last trace.Time
		windows     []span
		open        *span // the current cycle's window, until the sweeper parks
		marking     bool
		waits       []span
		woken       = map[trace.GoID]trace.Time{}
	)
	for {
		e, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if first == 0 {
			first = e.Time()
		}
		last = e.Time()
		switch e.Kind() {
		case trace.EventRangeBegin, trace.EventRangeEnd:
			if e.Range().Name != "GC concurrent mark phase" {
				continue
			}
			if e.Kind() == trace.EventRangeBegin {
				if open != nil { // the sweeper never parked: the window ends when the next begins
					windows = append(windows, *open)
				}
				open, marking = &span{from: e.Time(), to: e.Time()}, true
			} else if open != nil {
				open.to, marking = e.Time(), false
			}
		case trace.EventStateTransition:
			st := e.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			g := st.Resource.Goroutine()
			from, to := st.Goroutine()
			switch {
			case from == trace.GoWaiting && to == trace.GoRunnable:
				woken[g] = e.Time()
			case to == trace.GoRunning:
				if t, ok := woken[g]; ok {
					waits = append(waits, span{t, e.Time()})
					delete(woken, g)
				}
			case to == trace.GoWaiting && st.Reason == sweeperParks && open != nil && !marking:
				open.to = e.Time()
				windows = append(windows, *open)
				open = nil
			}
		}
	}
	if open != nil {
		windows = append(windows, *open)
	}
	s := &stalls{traced: time.Duration(last - first), cycles: len(windows), wakeups: len(waits)}
	for _, w := range windows {
		s.inGC += time.Duration(w.to - w.from)
	}
	for _, w := range waits {
		d := time.Duration(w.to - w.from)
		s.worst = max(s.worst, d)
		if d <= longWait {
			continue
		}
		s.long++
		// windows are in time order: the first one ending after the wait began
		i, _ := slices.BinarySearchFunc(windows, w.from, func(g span, t trace.Time) int { return cmp.Compare(g.to, t) })
		if i < len(windows) && windows[i].from <= w.to {
			s.longInGC++
		}
	}
	return s, nil
}

// traceRound runs one more half-load round of v (not merged into its figures: tracing slows
// the server) while the server writes an execution trace, and returns the trace's analysis.
func traceRound(v *variant, path string, round func() *result) (*stalls, *result, error) {
	p := v.proc.cmd.Process
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		return nil, nil, err
	}
	r := round()
	if err := p.Signal(syscall.SIGUSR2); err != nil {
		return nil, nil, err
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%s: no trace written to %s", v.name, path)
		}
	}
	s, err := analyzeTrace(path)
	return s, r, err
}
