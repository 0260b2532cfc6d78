package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/apiconnector/operator/internal/version"
	"github.com/apiconnector/operator/runtime/connfile"
)

// defaultServiceName is service.name unless OTEL_SERVICE_NAME (or OTEL_RESOURCE_ATTRIBUTES) says
// otherwise.
const defaultServiceName = "apiconnector-runtime"

// tracingEnabled says whether the standard OpenTelemetry variables ask for traces: an OTLP
// endpoint is configured and the SDK is not disabled.
func tracingEnabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newTracerProvider returns the provider of serve's spans, exporting them in batches over OTLP
// HTTP/protobuf to the endpoint of the standard variables (which also give headers, TLS,
// compression, timeout, sampler and batching), or nil when tracing is off. The resource names the
// service and the connector of connectorPath.
func newTracerProvider(ctx context.Context, connectorPath string, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	if !tracingEnabled(os.Getenv) {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	attrs := []attribute.KeyValue{semconv.ServiceName(defaultServiceName), semconv.ServiceVersion(version.Get())}
	// The connector file is read again when serve loads it, which reports any problem with it.
	if b, err := connfile.LoadFiles(connectorPath); err == nil && len(b.Connectors) == 1 {
		attrs = append(attrs, attribute.String("apiconnector.connector.namespace", b.Connectors[0].Namespace),
			attribute.String("apiconnector.connector.name", b.Connectors[0].Name))
	}
	res, err := resource.New(ctx, resource.WithAttributes(attrs...), resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES: what could be read is used.
		log.Warn("tracing resource incomplete", "error", err.Error())
	}
	// Export failures (a collector that is down) are logged, not fatal: tracing must never
	// affect answers.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "error", err.Error()) }))
	service, _ := res.Set().Value(semconv.ServiceNameKey)
	log.Info("tracing: spans are exported over OTLP", "service", service.String())
	return sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}
