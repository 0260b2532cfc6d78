package server

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/rules"
)

// traceparents records the traceparent header of each request a loopback dependency received, by
// path.
type traceparents struct {
	mu   sync.Mutex
	seen map[string]string
}

func (tp *traceparents) server(t *testing.T, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tp.mu.Lock()
		tp.seen[r.URL.Path] = r.Header.Get("Traceparent")
		tp.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (tp *traceparents) get(path string) string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.seen[path]
}

// A traced request is a server span, the child of the caller's traceparent, with a client span
// for each call and event delivery (async ones included) as its children; each dependency receives
// the traceparent of its span. The spans say who decided what, and carry no claim value, no
// Secret value and no query string, also when a call fails.
func TestTraceSpans(t *testing.T) {
	seen := &traceparents{seen: map[string]string{}}
	dep := seen.server(t, `{"risk":"high"}`)
	closed := func() string { // a loopback port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	b, err := connfile.Parse("test.yaml", []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: signup, namespace: default}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: creds}}}
  exposure: {host: signup.example.com}
  calls:
  - name: risk
    url: '`+dep.URL+`/risk?tenant=contoso'
    method: GET
    body: "{'email': claims.email}"
    secretQueryParams:
    - name: code
      valueFrom: {secretKeyRef: {name: keys, key: code}}
  - name: down
    url: 'http://`+closed+`/down'
    failurePolicy: Ignore
    body: "{'email': claims.email}"
    secretQueryParams:
    - name: code
      valueFrom: {secretKeyRef: {name: keys, key: code}}
  rules:
  - name: risky
    when: "calls.risk.body.risk == 'high'"
    block: {messageExpression: "'Sorry ' + claims.email"}
  events:
  - name: audit
    sink: {url: '`+dep.URL+`/audit'}
    delivery: Sync
  - name: notify
    sink: {url: '`+dep.URL+`/notify'}
    delivery: Async
`))
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	conn := b.Connectors[0]
	eng, err := rules.Compile(conn, rules.Options{
		EgressAllow:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		TracerProvider: tp,
		SecretKeys: func(v1alpha1.SecretKeySelector) ([]byte, error) {
			return []byte("canary-secret"), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ts := start(t, newServer(t, conn, eng, Options{SecretsDir: basicSecrets(t, testUser, testPass), Logger: jsonLogger(&logs), TracerProvider: tp}))

	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	hdr := basicHeader(testUser, testPass)
	hdr["Traceparent"] = parent
	hdr["X-Request-Id"] = "req-1"
	res := do(t, ts.client, http.MethodPost, ts.url+"/", "application/json", `{"email":"canary-email@example.com"}`, hdr)
	if res.code != http.StatusOK || !strings.Contains(res.body, "ShowBlockPage") {
		t.Fatalf("answer %d %s", res.code, res.body)
	}
	refused := do(t, ts.client, http.MethodPost, ts.url+"/", "application/json", `{"email":"canary-refused@example.com"}`, basicHeader(testUser, "wrong"))
	if refused.code != http.StatusUnauthorized {
		t.Fatalf("wrong password answered %d", refused.code)
	}
	// The async event is delivered after the answer; Close waits for it.
	eventually(t, "the async event", func() bool { return seen.get("/notify") != "" })
	if err := ts.stop(t); err != nil {
		t.Fatal(err)
	}

	spans := map[string]sdktrace.ReadOnlySpan{}
	var requests []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "POST PostAttributeCollection" {
			requests = append(requests, s)
			continue
		}
		spans[s.Name()] = s
	}
	if len(requests) != 2 {
		t.Fatalf("want 2 request spans, got %d (spans: %v)", len(requests), spanNames(rec.Ended()))
	}
	req := requests[0]
	if attrs(req)["apiconnector.request_id"] != "req-1" {
		req = requests[1]
	}
	if req.SpanKind() != trace.SpanKindServer || req.Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		req.Parent().SpanID().String() != "00f067aa0ba902b7" || !req.Parent().IsRemote() {
		t.Errorf("request span %v is not the child of the caller's traceparent (parent %v)", req.SpanKind(), req.Parent())
	}
	wantAttrs(t, req, map[string]string{
		"apiconnector.connector": "default/signup", "apiconnector.step": "PostAttributeCollection", "apiconnector.action": "ShowBlockPage",
		"apiconnector.source": "rule", "apiconnector.rule": "risky", "http.response.status_code": "200", "http.request.method": "POST",
	})
	for _, name := range []string{"call risk", "call down", "event audit", "event notify"} {
		s, ok := spans[name]
		if !ok {
			t.Errorf("no span %q among %v", name, spanNames(rec.Ended()))
			continue
		}
		if s.SpanKind() != trace.SpanKindClient || s.Parent().SpanID() != req.SpanContext().SpanID() || s.SpanContext().TraceID() != req.SpanContext().TraceID() {
			t.Errorf("%s: kind %v, parent %v: not a client span under the request span %v", name, s.SpanKind(), s.Parent(), req.SpanContext())
		}
	}
	for name, path := range map[string]string{"call risk": "/risk", "event audit": "/audit", "event notify": "/notify"} {
		s := spans[name]
		if s == nil {
			continue
		}
		if want := "00-" + s.SpanContext().TraceID().String() + "-" + s.SpanContext().SpanID().String() + "-01"; seen.get(path) != want {
			t.Errorf("%s received traceparent %q, want its span's %q", path, seen.get(path), want)
		}
	}
	if s := spans["call risk"]; s != nil {
		wantAttrs(t, s, map[string]string{"url.full": dep.URL + "/risk", "apiconnector.call": "risk", "http.response.status_code": "200"})
	}
	if s := spans["event notify"]; s != nil {
		wantAttrs(t, s, map[string]string{"url.full": dep.URL + "/notify", "apiconnector.event": "notify"})
	}
	if s := spans["call down"]; s != nil && s.Status().Description == "" {
		t.Errorf("the failed call's span has no error status: %v", s.Status())
	}

	refusedSpan := requests[0]
	if refusedSpan == req {
		refusedSpan = requests[1]
	}
	wantAttrs(t, refusedSpan, map[string]string{"apiconnector.action": "Unauthorized", "apiconnector.source": "refused",
		"apiconnector.reason": "invalid_credentials", "http.response.status_code": "401"})

	for _, s := range rec.Ended() {
		text := s.Name() + " " + s.Status().Description
		for _, kv := range s.Attributes() {
			text += " " + string(kv.Key) + "=" + kv.Value.String()
		}
		for _, ev := range s.Events() {
			text += " " + ev.Name
			for _, kv := range ev.Attributes {
				text += " " + string(kv.Key) + "=" + kv.Value.String()
			}
		}
		if strings.Contains(text, "canary") || strings.Contains(text, "tenant=") || strings.Contains(text, "Sorry") {
			t.Errorf("span %s carries a claim, Secret, query or message: %s", s.Name(), text)
		}
	}
	lines := requestLines(t, logs.String())
	if len(lines) != 2 || lines[0]["trace_id"] != req.SpanContext().TraceID().String() {
		t.Errorf("the decision log line does not name the trace %s: %v", req.SpanContext().TraceID(), lines)
	}
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func wantAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[string]string) {
	t.Helper()
	got := attrs(s)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("span %s: %s = %q, want %q (all: %v)", s.Name(), k, got[k], v, got)
		}
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// Without a TracerProvider nothing is traced: no traceparent reaches the dependencies.
func TestNoTracingWithoutProvider(t *testing.T) {
	seen := &traceparents{seen: map[string]string{}}
	dep := seen.server(t, `{"risk":"low"}`)
	b, err := connfile.Parse("test.yaml", []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: signup, namespace: default}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: creds}}}
  exposure: {host: signup.example.com}
  calls:
  - name: risk
    url: '`+dep.URL+`/risk'
`))
	if err != nil {
		t.Fatal(err)
	}
	conn := b.Connectors[0]
	eng, err := rules.Compile(conn, rules.Options{EgressAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ts := start(t, newServer(t, conn, eng, Options{SecretsDir: basicSecrets(t, testUser, testPass), Logger: jsonLogger(&logs)}))
	hdr := basicHeader(testUser, testPass)
	hdr["Traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if res := do(t, ts.client, http.MethodPost, ts.url+"/", "application/json", `{"email":"a@example.com"}`, hdr); res.code != http.StatusOK {
		t.Fatalf("answer %d %s", res.code, res.body)
	}
	if err := ts.stop(t); err != nil {
		t.Fatal(err)
	}
	if got := seen.get("/risk"); got != "" {
		t.Errorf("the call carried traceparent %q with tracing off", got)
	}
	if strings.Contains(logs.String(), "trace_id") {
		t.Errorf("trace_id logged with tracing off:\n%s", logs.String())
	}
}
