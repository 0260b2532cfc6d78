package rules_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiconnector/operator/runtime/rules"
)

// Warm leaves a connection to each dependency in the pool, which the first call then uses.
func TestWarmPreconnects(t *testing.T) {
	var conns atomic.Int32
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		w.Write([]byte(`{}`))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - {name: a, url: '`+srv.URL+`/a'}
  - {name: b, url: '`+srv.URL+`/b', when: "false"}
`, rules.Options{EgressAllow: loopback})
	e.Warm(context.Background())
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections after Warm, want 1 (one origin)", n)
	}
	eval(t, e, map[string]any{})
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections after the first call, want the warm one reused", n)
	}
	mu.Lock()
	defer mu.Unlock()
	// Go's server answers OPTIONS * itself: handlers never see it.
	if len(seen) != 1 || seen[0] != "POST /a" {
		t.Errorf("requests %v", seen)
	}
}

// A dependency that never answers holds Warm only until its context ends.
func TestWarmDoesNotWaitForADeadHost(t *testing.T) {
	// Accepts connections and never reads or answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	hang := struct{ URL string }{"http://" + ln.Addr().String()}
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - {name: a, url: '`+hang.URL+`'}
  events:
  - {name: audit, sink: {url: 'http://127.0.0.1:1/'}}
`, rules.Options{EgressAllow: loopback})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	e.Warm(ctx)
	if took := time.Since(start); took < 100*time.Millisecond || took > time.Second {
		t.Errorf("Warm took %v with a 200ms bound and a host that never answers", took)
	}
}
