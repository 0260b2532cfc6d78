package logbuf_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiconnector/operator/runtime/logbuf"
)

// recorder counts writes and keeps what was written.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	err    error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes++
	r.buf.Write(p)
	return len(p), r.err
}

func (r *recorder) state() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

func TestBatchesUntilFull(t *testing.T) {
	rec := &recorder{}
	w := logbuf.New(rec, 100, time.Hour)
	line := strings.Repeat("x", 29) + "\n" // 30 bytes: three fit, the fourth flushes them
	for range 3 {
		w.Write([]byte(line))
	}
	if out, n := rec.state(); n != 0 || out != "" {
		t.Fatalf("written before the batch was full: %d writes %q", n, out)
	}
	w.Write([]byte(line))
	if out, n := rec.state(); n != 1 || out != strings.Repeat(line, 3) {
		t.Fatalf("after the batch filled: %d writes, %d bytes; want 1 write of 3 lines", n, len(out))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if out, n := rec.state(); n != 2 || out != strings.Repeat(line, 4) {
		t.Fatalf("after Flush: %d writes, %d bytes; want 2 writes of 4 lines", n, len(out))
	}
	w.Flush()
	if _, n := rec.state(); n != 2 {
		t.Fatalf("an empty flush wrote: %d writes", n)
	}
}

func TestWritesAfterDelay(t *testing.T) {
	rec := &recorder{}
	w := logbuf.New(rec, 1<<16, 20*time.Millisecond)
	start := time.Now()
	w.Write([]byte("one\n"))
	w.Write([]byte("two\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		if out, n := rec.state(); out != "" {
			if n != 1 || out != "one\ntwo\n" {
				t.Fatalf("%d writes %q, want one write of both lines", n, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing written 5s after the records")
		}
		time.Sleep(time.Millisecond)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("written after %v, before the delay", d)
	}
	// A later record schedules its own flush.
	w.Write([]byte("three\n"))
	for out, _ := rec.state(); out != "one\ntwo\nthree\n"; out, _ = rec.state() {
		if time.Now().After(deadline) {
			t.Fatalf("second batch not written: %q", out)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLargeRecordPassesThroughInOrder(t *testing.T) {
	rec := &recorder{}
	w := logbuf.New(rec, 16, time.Hour)
	w.Write([]byte("small\n"))
	big := strings.Repeat("y", 40) + "\n"
	w.Write([]byte(big))
	if out, n := rec.state(); n != 2 || out != "small\n"+big {
		t.Fatalf("%d writes %q, want the waiting record then the large one", n, out)
	}
}

func TestReportsWriteErrors(t *testing.T) {
	rec := &recorder{err: errors.New("closed")}
	w := logbuf.New(rec, 64, time.Hour)
	if _, err := w.Write([]byte("a\n")); err != nil {
		t.Fatalf("error before anything was written: %v", err)
	}
	if err := w.Flush(); err == nil || err.Error() != "closed" {
		t.Fatalf("Flush error = %v, want closed", err)
	}
	if _, err := w.Write([]byte("b\n")); err == nil {
		t.Fatal("a write after a failed flush reports no error")
	}
}

// Concurrent records (as from concurrent requests) come out whole, each exactly once.
func TestConcurrentRecordsStayWhole(t *testing.T) {
	rec := &recorder{}
	w := logbuf.New(rec, 256, time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(w, "{\"g\":%d,\"i\":%d,\"pad\":%q}\n", g, i, strings.Repeat("z", i%50))
			}
		})
	}
	wg.Wait()
	w.Flush()
	out, _ := rec.state()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var g, i int
		if _, err := fmt.Sscanf(l, "{\"g\":%d,\"i\":%d,", &g, &i); err != nil || !strings.HasSuffix(l, "\"}") {
			t.Fatalf("broken record %q", l)
		}
		k := fmt.Sprint(g, i)
		if seen[k] {
			t.Fatalf("record %s written twice", k)
		}
		seen[k] = true
	}
}
