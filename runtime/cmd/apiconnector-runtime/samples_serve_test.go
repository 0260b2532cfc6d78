package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rulestest"
	"sigs.k8s.io/yaml"
)

// world stands in for the external systems a connector talks to: every call is answered, over
// real HTTP on loopback, with the current case's stub, and every event is received by a sink.
type world struct {
	mu     sync.Mutex
	stubs  map[string]rulestest.CallStub
	events []string
}

func (w *world) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	kind, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	_, _ = io.Copy(io.Discard, r.Body)
	w.mu.Lock()
	defer w.mu.Unlock()
	if kind == "events" {
		w.events = append(w.events, name)
		rw.WriteHeader(http.StatusAccepted)
		return
	}
	stub, ok := w.stubs[name]
	if !ok || stub.Error != "" {
		// A transport-level failure, like an unreachable service.
		if hj, ok := rw.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				conn.Close()
				return
			}
		}
		rw.WriteHeader(http.StatusBadGateway)
		return
	}
	status := stub.Status
	if status == 0 {
		status = http.StatusOK
	}
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	switch b := stub.Body.(type) {
	case nil:
	case string:
		io.WriteString(rw, b)
	default:
		json.NewEncoder(rw).Encode(b)
	}
}

func (w *world) reset(stubs map[string]rulestest.CallStub) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stubs, w.events = stubs, nil
}

func (w *world) sent() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]string{}, w.events...)
	sort.Strings(out)
	return out
}

// TestSamplesThroughServe runs every case of every Basic-auth sample through the real `serve`
// command over HTTP, with the sample's calls and event sinks pointed at real loopback servers:
// what the test runner promises is what Entra gets on the wire.
func TestSamplesThroughServe(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(samples, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		bundle, err := connfile.LoadFiles(file)
		if err != nil {
			t.Fatal(err)
		}
		if len(bundle.Connectors) == 0 {
			continue // no connector (entra-tenant.yaml), so no cases
		}
		cases, err := rulestest.LoadCases(filepath.Join(samples, "tests", name+".cases.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, conn := range bundle.Connectors {
			if conn.Spec.Authentication.Basic == nil {
				continue // bearer connectors: see the extension tests in runtime/server
			}
			var mine []rulestest.Case
			for _, c := range cases.Cases {
				owner := c.Connector
				if owner == "" {
					owner = cases.Connector
				}
				if owner == "" || owner == conn.Name {
					mine = append(mine, c)
				}
			}
			ran += len(mine)
			t.Run(name+"/"+conn.Name, func(t *testing.T) { serveCases(t, bundle, conn, mine) })
		}
	}
	if ran < 20 {
		t.Errorf("only %d cases ran through serve", ran)
	}
}

func serveCases(t *testing.T, bundle *connfile.Bundle, conn *v1alpha1.APIConnector, cases []rulestest.Case) {
	w := &world{}
	ext := httptest.NewServer(w)
	defer ext.Close()

	dir := t.TempDir()
	conn = conn.DeepCopy()
	outbound := func(kind, name string, auth *v1alpha1.OutboundAuth) {
		if auth == nil {
			return
		}
		d := filepath.Join(dir, "outbound", kind, name)
		os.MkdirAll(d, 0o700)
		for _, k := range []string{"username", "password", "token"} {
			os.WriteFile(filepath.Join(d, k), []byte("test-"+k), 0o600)
		}
	}
	for i := range conn.Spec.Calls {
		c := &conn.Spec.Calls[i]
		c.URL = ext.URL + "/calls/" + c.Name
		outbound("calls", c.Name, c.Auth)
	}
	for i := range conn.Spec.Events {
		e := &conn.Spec.Events[i]
		e.Sink.URL = ext.URL + "/events/" + e.Name
		outbound("events", e.Name, e.Sink.Auth)
	}
	var docs []string
	for _, obj := range append([]any{conn}, anySlice(bundle.ConfigMaps)...) {
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	connector := filepath.Join(dir, "connector.yaml")
	os.WriteFile(connector, []byte(strings.Join(docs, "---\n")), 0o600)
	s := startServe(t, "--connector", connector, "--secrets-dir", basicSecrets(t),
		"--outbound-secrets-dir", filepath.Join(dir, "outbound"), "--egress-allow-cidr", "127.0.0.0/8,::1/128")
	defer s.stop() // before the call and event sinks close: events still queued are delivered on stop

	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			w.reset(c.Calls)
			body, _ := json.Marshal(c.Claims)
			code, raw := postAsEntra(t, "http://"+s.addr+"/", string(body))
			var answer map[string]any
			if err := json.Unmarshal(raw, &answer); err != nil {
				t.Fatalf("answer is not JSON: %d %s", code, raw)
			}
			checkAnswer(t, c.Expect, code, answer)
			if c.Expect.Events != nil {
				want := append([]string{}, c.Expect.Events...)
				sort.Strings(want)
				deadline := time.Now().Add(5 * time.Second)
				for !reflect.DeepEqual(w.sent(), want) && len(w.sent()) <= len(want) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if got := w.sent(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Errorf("events received by the sinks = %v, want %v", got, want)
				}
			}
		})
	}
}

func checkAnswer(t *testing.T, want rulestest.Expect, code int, answer map[string]any) {
	t.Helper()
	wantCode := http.StatusOK
	if want.Action == entra.ActionValidationError {
		wantCode = http.StatusBadRequest
	}
	if code != wantCode || answer["action"] != string(want.Action) || answer["version"] != entra.Version {
		t.Fatalf("HTTP %d %v, want HTTP %d action %s", code, answer, wantCode, want.Action)
	}
	if want.UserMessage != nil && answer["userMessage"] != *want.UserMessage {
		t.Errorf("userMessage = %v, want %q", answer["userMessage"], *want.UserMessage)
	}
	if want.Claims != nil {
		got := map[string]string{}
		for k, v := range answer {
			switch k {
			case "version", "action", "status", "userMessage":
				continue
			}
			got[k] = fmt.Sprint(v)
		}
		if !reflect.DeepEqual(got, want.Claims) && !(len(got) == 0 && len(want.Claims) == 0) {
			t.Errorf("returned claims = %v, want %v", got, want.Claims)
		}
	}
}

// served is a serve command running in this process.
type served struct {
	addr, ops   string
	out, errOut *syncBuffer
	stop        func() int // cancels it and returns its exit code (-1: it did not stop)
}

// startServe runs serve with args, loopback endpoint and ops addresses and no shutdown delay,
// and waits until it is ready. It is stopped at the end of the test if not before.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	s := &served{addr: freePort(t), ops: freePort(t), out: &syncBuffer{}, errOut: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "--listen", s.addr, "--ops-listen", s.ops, "--shutdown-delay", "0s"}, args...), s.out, s.errOut)
	}()
	code := -1
	s.stop = sync.OnceValue(func() int {
		cancel()
		select {
		case code = <-done:
		case <-time.After(15 * time.Second):
		}
		return code
	})
	t.Cleanup(func() {
		if s.stop() == -1 {
			t.Error("serve did not stop")
		}
	})
	waitReadyz(t, s.ops, s.out, s.errOut)
	return s
}

// basicSecrets writes the Basic credentials postAsEntra sends into a new directory, the user
// name with the trailing newline a file made by hand usually has (serve trims it).
func basicSecrets(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range map[string]string{"username": "entra\n", "password": "pw"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func waitReadyz(t *testing.T, ops string, out, errOut *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get("http://" + ops + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready: %v\n%s%s", err, out.String(), errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func anySlice[T any](in []T) []any {
	out := make([]any, len(in))
	for i := range in {
		out[i] = in[i]
	}
	return out
}
