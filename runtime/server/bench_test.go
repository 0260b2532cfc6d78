package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
	"github.com/apiconnector/operator/runtime/server"
)

// The benchmark connector and request of hack/bench: Basic auth, 10 rules (regex,
// membership in a 5 000-entry ConfigMap list, string functions) and 3 claim overwrites; the
// request matches no rule, so everything is evaluated and the answer is Continue.
const (
	benchConnector = "../../hack/bench/testdata/connector.yaml"
	benchRequest   = "../../hack/bench/testdata/request.json"
	benchWant      = `{"version":"1.0.0","action":"Continue","displayName":"jOHN sMITH","givenName":"John","surname":"Smith"}`
)

// benchServer is the real server with the real rules engine, logging JSON lines like the
// runtime's serve does (to io.Discard).
// With tp, requests, calls and events are traced.
func benchServer(b *testing.B, tp trace.TracerProvider) (*server.Server, []byte) {
	b.Helper()
	bundle, err := connfile.LoadFiles(benchConnector)
	if err != nil {
		b.Fatal(err)
	}
	conn := bundle.Connectors[0]
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	eng, err := rules.Compile(conn, rules.Options{ResolveList: bundle.ListResolver(conn.Namespace), Logger: log, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, server.UsernameFile), []byte("entra"), 0o600)
	os.WriteFile(filepath.Join(dir, server.PasswordFile), []byte("bench-password"), 0o600)
	s, err := server.New(conn, eng, server.Options{SecretsDir: dir, Logger: log, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	body, err := os.ReadFile(benchRequest)
	if err != nil {
		b.Fatal(err)
	}
	return s, bytes.TrimSpace(body)
}

// BenchmarkServeConnector is one request through the connector handler, without the network:
// authentication, body read, decode, evaluation, encode, metrics and the request log line.
func BenchmarkServeConnector(b *testing.B) { benchmarkServeConnector(b, nil) }

// BenchmarkServeConnectorTraced is BenchmarkServeConnector with tracing on: every request a
// recorded span, handed to an exporter that discards it.
func BenchmarkServeConnectorTraced(b *testing.B) {
	benchmarkServeConnector(b, sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter())))
}

func benchmarkServeConnector(b *testing.B, tp trace.TracerProvider) {
	s, body := benchServer(b, tp)
	h := s.Handler()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("entra:bench-password"))
	serve := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/signup", bytes.NewReader(body))
		r.Header.Set("Authorization", auth)
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := serve(); w.Code != http.StatusOK || w.Body.String() != benchWant {
		b.Fatalf("HTTP %d %s, want 200 %s", w.Code, w.Body, benchWant)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		serve()
	}
}

// BenchmarkEvaluateBenchConnector is the rules engine alone on the same connector and request.
func BenchmarkEvaluateBenchConnector(b *testing.B) {
	bundle, err := connfile.LoadFiles(benchConnector)
	if err != nil {
		b.Fatal(err)
	}
	conn := bundle.Connectors[0]
	eng, err := rules.Compile(conn, rules.Options{ResolveList: bundle.ListResolver(conn.Namespace)})
	if err != nil {
		b.Fatal(err)
	}
	_, body := benchServer(b, nil)
	req, err := entra.DecodeRequest(body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eng.Evaluate(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}
