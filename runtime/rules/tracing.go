package rules

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// traceRequests wraps rt so that every HTTP exchange of a call or event is a client span named
// "call <name>" or "event <name>", a child of the span in the request's context, and carries its
// W3C traceparent to the dependency. The span's url.full has no query string: a GET call's query
// carries claims and secretQueryParams put Secret values there.
func traceRequests(rt http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	return otelhttp.NewTransport(withoutQuery(rt),
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			t, _ := TargetFromContext(r.Context())
			switch t.Kind {
			case SecretKindCall:
				return "call " + t.Name
			case SecretKindEvent:
				return "event " + t.Name
			}
			return "HTTP " + r.Method
		}))
}

// withoutQuery runs inside otelhttp's transport, after it set the span's attributes from the
// request: it replaces url.full with the URL minus user information, query and fragment, and
// names the call or event.
func withoutQuery(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if span := trace.SpanFromContext(req.Context()); span.IsRecording() {
			u := *req.URL
			u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
			span.SetAttributes(semconv.URLFull(u.String()))
			switch t, _ := TargetFromContext(req.Context()); t.Kind {
			case SecretKindCall:
				span.SetAttributes(attribute.String("apiconnector.call", t.Name))
			case SecretKindEvent:
				span.SetAttributes(attribute.String("apiconnector.event", t.Name))
			}
		}
		return rt.RoundTrip(req)
	})
}
