package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func TestTracingEnabled(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "false"}, true},
	} {
		if got := tracingEnabled(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("%v: enabled %v, want %v", tc.env, got, tc.want)
		}
	}
}

// collector is a loopback OTLP/HTTP trace receiver keeping the raw export requests.
type collector struct {
	mu     sync.Mutex
	bodies [][]byte
	url    string
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path != "/v1/traces" {
			t.Errorf("export to %s", r.URL.Path)
		}
		c.mu.Lock()
		c.bodies = append(c.bodies, b)
		c.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL
	return c
}

func (c *collector) requests() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bodies...)
}

// With an OTLP endpoint configured, serve exports the spans of a request (the request, its calls
// and events) with the service and connector in the resource, flushed on shutdown; and not one
// claim or Secret value of the privacy connector's failing calls, expressions and events is in
// what it sends. Without an endpoint, or with OTEL_SDK_DISABLED, it sends nothing and logs no
// trace id.
func TestServeExportsTracesWithoutClaimValues(t *testing.T) {
	col := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", col.url)
	t.Setenv("OTEL_SERVICE_NAME", "")
	s := startServe(t, "--connector", privacyConnector(t, freePort(t), echoServer(t)), "--secrets-dir", privacySecrets(t),
		"--outbound-secrets-dir", privacySecrets(t), "--egress-allow-cidr", "127.0.0.0/8")
	if code, _ := postAsEntra(t, "http://"+s.addr+"/", `{"email":"canary-email@contoso.example","givenName":"canary-given(",`+
		`"city":"canary-city","surname":"canary-surname","jobTitle":"canary-job","postalCode":"canary-postal"}`); code != 200 {
		t.Errorf("answer %d", code)
	}
	if code := s.stop(); code != exitOK {
		t.Fatalf("serve exited %d:\n%s", code, s.out.String())
	}
	bodies := col.requests()
	if len(bodies) == 0 {
		t.Fatalf("nothing exported:\n%s", s.out.String())
	}
	names := map[string]bool{}
	resource := map[string]string{}
	var traceIDs []string
	for _, b := range bodies {
		if i := bytes.Index(b, []byte("canary")); i >= 0 {
			t.Errorf("the export carries a claim or Secret value: …%q…", b[max(0, i-100):min(len(b), i+50)])
		}
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Fatal(err)
		}
		for _, rs := range req.ResourceSpans {
			for _, kv := range rs.Resource.Attributes {
				resource[kv.Key] = kv.Value.GetStringValue()
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					names[sp.Name] = true
					if sp.Name == "POST PostAttributeCollection" {
						traceIDs = append(traceIDs, hex.EncodeToString(sp.TraceId))
					}
				}
			}
		}
	}
	for _, want := range []string{"POST PostAttributeCollection", "call lookup", "call approve", "call refused", "event audit", "event notify"} {
		if !names[want] {
			t.Errorf("no span %q in %v", want, names)
		}
	}
	for k, want := range map[string]string{"service.name": "apiconnector-runtime", "apiconnector.connector.namespace": "identity", "apiconnector.connector.name": "privacy"} {
		if resource[k] != want {
			t.Errorf("resource %s = %q, want %q", k, resource[k], want)
		}
	}
	var line map[string]any
	for _, l := range strings.Split(s.out.String(), "\n") {
		if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == "request" {
			break
		}
	}
	if len(traceIDs) != 1 || line["trace_id"] != traceIDs[0] {
		t.Errorf("request spans %v, decision log trace_id %v", traceIDs, line["trace_id"])
	}

	// Disabled: the same endpoint receives nothing.
	t.Setenv("OTEL_SDK_DISABLED", "true")
	before := len(col.requests())
	s = startServe(t, "--connector", privacyConnector(t, freePort(t), echoServer(t)), "--secrets-dir", privacySecrets(t),
		"--outbound-secrets-dir", privacySecrets(t), "--egress-allow-cidr", "127.0.0.0/8")
	postAsEntra(t, "http://"+s.addr+"/", `{"email":"a@contoso.example"}`)
	s.stop()
	if n := len(col.requests()); n != before || strings.Contains(s.out.String(), "trace_id") {
		t.Errorf("with OTEL_SDK_DISABLED=true: %d exports, logs:\n%s", n-before, s.out.String())
	}
}
