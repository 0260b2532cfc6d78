package server

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// tracerName is the instrumentation scope of the request spans.
const tracerName = "github.com/apiconnector/operator/runtime/server"

// startSpan starts the server span of a connector request, named "<method> <step>", the child of
// the caller's W3C traceparent if it sent one, and returns r with the span in its context. Without
// a tracer it returns r and nil.
func (s *Server) startSpan(r *http.Request, step v1alpha1.Step, start time.Time) (*http.Request, trace.Span) {
	if s.tracer == nil {
		return r, nil
	}
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	name := spanMethod(r.Method)
	if name == "_OTHER" {
		name = "HTTP"
	}
	ctx, span := s.tracer.Start(ctx, name+" "+string(step), trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	return r.WithContext(ctx), span
}

// endSpan records what a request led to and ends its span: the outcome as the decision log has
// it, minus anything a request or a connector author supplies as text (claims, messages, URLs,
// headers, an evaluator's failure message).
func endSpan(span trace.Span, cfg *config, method, id string, o outcome) {
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(spanMethod(method)),
		semconv.HTTPResponseStatusCode(o.code),
		attribute.String("apiconnector.connector", cfg.name),
		attribute.String("apiconnector.step", string(cfg.step)),
		attribute.String("apiconnector.request_id", id),
		attribute.String("apiconnector.action", o.action),
		attribute.String("apiconnector.source", o.source),
	}
	if o.rule != "" {
		attrs = append(attrs, attribute.String("apiconnector.rule", o.rule))
	}
	reason := o.reason
	if reason == "" && o.failure != "" {
		reason = "evaluator" // the evaluator applied a policy itself; its message is only logged
	}
	if reason != "" {
		attrs = append(attrs, attribute.String("apiconnector.reason", reason))
	}
	span.SetAttributes(attrs...)
	switch {
	case o.source == sourcePolicy:
		span.SetStatus(codes.Error, "the failure policy answered")
	case o.code >= 500:
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// spanMethod is an HTTP method as OpenTelemetry records it: one of the standard ones or _OTHER.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace:
		return m
	}
	return "_OTHER"
}
