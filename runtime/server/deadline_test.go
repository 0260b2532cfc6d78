package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

type ctxKey struct{}

// Before anything waits on it, the context answers from the clock; once something does, it is
// a context.WithDeadline: Done closes at the deadline and Err, Value and Cause agree with it.
func TestDeadlineCtx(t *testing.T) {
	parent := context.WithValue(context.Background(), ctxKey{}, "v")

	d := withTimeout(parent, time.Now(), 30*time.Millisecond)
	if at, ok := d.Deadline(); !ok || at != d.at {
		t.Errorf("Deadline() = %v, %v", at, ok)
	}
	if d.Err() != nil || d.Value(ctxKey{}) != "v" {
		t.Errorf("before the deadline: Err %v, Value %v", d.Err(), d.Value(ctxKey{}))
	}
	time.Sleep(40 * time.Millisecond)
	if !errors.Is(d.Err(), context.DeadlineExceeded) {
		t.Errorf("after the deadline, nothing waiting: Err = %v", d.Err())
	}
	select {
	case <-d.Done(): // created after the deadline: already closed
	case <-time.After(time.Second):
		t.Fatal("Done not closed after the deadline")
	}
	if !errors.Is(context.Cause(d), context.DeadlineExceeded) || d.Value(ctxKey{}) != "v" {
		t.Errorf("Cause %v, Value %v", context.Cause(d), d.Value(ctxKey{}))
	}
	d.stop()

	// Waiting before the deadline: Done closes when it passes.
	d = withTimeout(parent, time.Now(), 20*time.Millisecond)
	start := time.Now()
	<-d.Done()
	if waited := time.Since(start); waited < 15*time.Millisecond || !errors.Is(d.Err(), context.DeadlineExceeded) {
		t.Errorf("Done after %v, Err %v", waited, d.Err())
	}
	d.stop()

	// The parent's cancellation shows, before and after Done is created.
	for _, wait := range []bool{false, true} {
		p, cancel := context.WithCancel(parent)
		d = withTimeout(p, time.Now(), time.Hour)
		if wait {
			d.Done()
		}
		cancel()
		if !errors.Is(d.Err(), context.Canceled) {
			t.Errorf("wait=%v: Err after the parent's cancel = %v", wait, d.Err())
		}
		select {
		case <-d.Done():
		case <-time.After(time.Second):
			t.Errorf("wait=%v: Done not closed after the parent's cancel", wait)
		}
		d.stop()
	}

	// stop releases what Done created: the context ends (as canceled) long before its deadline.
	d = withTimeout(parent, time.Now(), time.Hour)
	done := d.Done()
	d.stop()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Error("stop did not end the created context")
	}
}

// Many goroutines may ask for Done at once (an outbound call's transport, the evaluator).
func TestDeadlineCtxConcurrentDone(t *testing.T) {
	d := withTimeout(context.Background(), time.Now(), 10*time.Millisecond)
	defer d.stop()
	chans := make(chan (<-chan struct{}), 8)
	for range 8 {
		go func() { chans <- d.Done() }()
	}
	first := <-chans
	for range 7 {
		if c := <-chans; c != first {
			t.Fatal("Done returned different channels")
		}
	}
	<-first
	if d.Err() == nil {
		t.Error("Err nil after Done closed")
	}
}
