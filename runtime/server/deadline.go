package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineCtx is a request's context with its deadline, whose timer starts only when something
// waits on Done (an outbound call, an interruptible expression, an evaluator run on another
// goroutine). Most requests evaluate their expressions without waiting for anything, and
// checking Err between them is all they need: context.WithTimeout cost every request a timer,
// a cancel context registered with the connection's and ~600 bytes, 8 % of the handler's CPU
// in the benchmark.
//
// Until Done is called, Err compares the clock with the deadline; from then on every method
// answers as the context.WithDeadline it created.
type deadlineCtx struct {
	parent  context.Context
	start   time.Time // with its monotonic reading: time.Since reads one clock, time.Now two
	timeout time.Duration
	at      time.Time
	once    sync.Once
	inner   atomic.Pointer[context.Context]
	cancel  context.CancelFunc // set with inner, under once
}

func withTimeout(parent context.Context, start time.Time, timeout time.Duration) *deadlineCtx {
	return &deadlineCtx{parent: parent, start: start, timeout: timeout, at: start.Add(timeout)}
}

func (d *deadlineCtx) Deadline() (time.Time, bool) { return d.at, true }

func (d *deadlineCtx) Done() <-chan struct{} {
	d.once.Do(func() {
		ctx, cancel := context.WithDeadline(d.parent, d.at)
		d.cancel = cancel
		d.inner.Store(&ctx)
	})
	return (*d.inner.Load()).Done()
}

func (d *deadlineCtx) Err() error {
	if inner := d.inner.Load(); inner != nil {
		return (*inner).Err()
	}
	if err := d.parent.Err(); err != nil {
		return err
	}
	if time.Since(d.start) >= d.timeout {
		return context.DeadlineExceeded
	}
	return nil
}

// Value answers from the created context when there is one, so context.Cause finds its cause.
func (d *deadlineCtx) Value(key any) any {
	if inner := d.inner.Load(); inner != nil {
		return (*inner).Value(key)
	}
	return d.parent.Value(key)
}

// stop releases the timer, if one was started. The context must not be used afterwards.
func (d *deadlineCtx) stop() {
	if d.inner.Load() != nil {
		d.cancel()
	}
}
