// Package logbuf batches log records into fewer writes. The runtime logs one JSON line per
// request; written one by one, those lines cost a system call each, which at load was a
// measurable share of a request's CPU (hack/bench/results/runtime.md). A Writer keeps whole
// records in memory and writes them together when the batch is full or a short delay after the
// first record of a batch, so a quiet server still logs within that delay.
package logbuf

import (
	"io"
	"sync"
	"time"
)

// Writer batches whole Write calls. slog handlers write one record per call, so records are never
// split or interleaved. It is safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	w       io.Writer
	buf     []byte
	size    int
	delay   time.Duration
	timer   *time.Timer
	pending bool // a flush is scheduled
	err     error
}

// New returns a Writer that writes to w at most delay after a record arrives, and earlier when
// size bytes are waiting.
func New(w io.Writer, size int, delay time.Duration) *Writer {
	b := &Writer{w: w, buf: make([]byte, 0, size), size: size, delay: delay}
	b.timer = time.AfterFunc(time.Hour, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write keeps p for the next batch. A record that does not fit in an empty batch is written at
// once (after what is waiting). Errors of earlier writes are returned, so a caller logging to a
// closed stream learns of it; slog ignores them like it does its direct writes'.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > b.size {
		b.flushLocked()
	}
	if len(p) > b.size {
		if _, err := b.w.Write(p); err != nil {
			b.err = err
		}
		return len(p), b.err
	}
	b.buf = append(b.buf, p...)
	if !b.pending {
		b.pending = true
		b.timer.Reset(b.delay)
	}
	return len(p), b.err
}

// Flush writes what is waiting. Call it before the process exits.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

func (b *Writer) flushLocked() {
	b.pending = false
	b.timer.Stop()
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}
