package rules

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// CallRecord is one HTTP exchange of a call, as the request's decision log reports it: never a
// URL, header or body (a GET call's URL carries claims), only what happened.
type CallRecord struct {
	Name string `json:"name"`
	// Status is the HTTP status, 0 when no response came.
	Status int `json:"status"`
	// Error is empty when a response came, else timeout, canceled or error (a transport failure).
	Error      string  `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
}

// CallTrail collects the CallRecords of one request. Its zero value is ready to use and it is
// safe for concurrent use (calls run concurrently).
type CallTrail struct {
	mu      sync.Mutex
	records []CallRecord
}

// Records returns what was recorded, in the order the exchanges ended.
func (t *CallTrail) Records() []CallRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]CallRecord(nil), t.records...)
}

type trailKey struct{}

// WithCallTrail returns a context whose calls are recorded in t: pass it to Engine.Evaluate.
func WithCallTrail(ctx context.Context, t *CallTrail) context.Context {
	return context.WithValue(ctx, trailKey{}, t)
}

// recordCalls wraps rt so that the exchanges of calls made within a WithCallTrail context are
// recorded. Events are not: they are delivered after the answer, on their own schedule.
func recordCalls(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		trail, _ := req.Context().Value(trailKey{}).(*CallTrail)
		target, ok := TargetFromContext(req.Context())
		if trail == nil || !ok || target.Kind != SecretKindCall {
			return rt.RoundTrip(req)
		}
		start := time.Now()
		resp, err := rt.RoundTrip(req)
		rec := CallRecord{Name: target.Name, DurationMS: float64(time.Since(start).Microseconds()) / 1000}
		switch {
		case err == nil:
			rec.Status = resp.StatusCode
		case errors.Is(err, context.DeadlineExceeded):
			rec.Error = "timeout"
		case errors.Is(err, context.Canceled):
			rec.Error = "canceled"
		default:
			rec.Error = "error"
		}
		trail.mu.Lock()
		trail.records = append(trail.records, rec)
		trail.mu.Unlock()
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
