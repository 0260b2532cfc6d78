package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// Circuit breaker defaults, applied when a call has no circuitBreaker or leaves a field empty.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerOpenFor  = 30 * time.Second
)

// Retry jitter: a retry waits a random time in [retryMinDelay, retryMaxDelay), so the retries of
// concurrent requests to a dependency that just failed do not arrive together.
const (
	retryMinDelay = 10 * time.Millisecond
	retryMaxDelay = 100 * time.Millisecond
)

// Breaker states as the Observer and the logs report them.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// ErrBreakerOpen is the error of a call that was not sent because its circuit breaker is open (or
// half-open with its probe under way).
var ErrBreakerOpen = errors.New("circuit breaker open: not called")

// callResponse is what one call returned: the status and, when parsable, the JSON body.
type callResponse struct {
	status int
	body   any
	size   int // bytes of the body, for the cache's bound
}

// statusError is a call's non-2xx answer.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("status %d", e.code) }

// dependencyFailed says whether err shows the dependency failing, as the circuit breaker and the
// retry count it: no answer (transport error, timeout) or a 5xx or 429 answer. Other answers, a
// 404 or a 2xx that is not JSON or too large, show a dependency that works (sending again would
// not help); the failure policy still applies.
func dependencyFailed(err error) bool {
	if err == nil {
		return false
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500 || se.code == http.StatusTooManyRequests
	}
	var bad *badAnswerError
	return !errors.As(err, &bad)
}

// badAnswerError is an answer the runtime cannot use: a body that is not JSON or too large.
type badAnswerError struct{ msg string }

func (e *badAnswerError) Error() string { return e.msg }

// newBreaker returns the call's circuit breaker, or nil when it is turned off.
func (e *Engine) newBreaker(call v1alpha1.Call) *gobreaker.CircuitBreaker[callResponse] {
	failures, openFor := uint32(DefaultBreakerFailures), DefaultBreakerOpenFor
	if cb := call.CircuitBreaker; cb != nil {
		if cb.ConsecutiveFailures != nil {
			failures = uint32(max(*cb.ConsecutiveFailures, 0))
		}
		if cb.OpenFor != nil && cb.OpenFor.Duration > 0 {
			openFor = cb.OpenFor.Duration
		}
	}
	if failures == 0 {
		return nil
	}
	name := call.Name
	e.opts.Observer.BreakerChanged(name, "", BreakerClosed)
	return gobreaker.NewCircuitBreaker[callResponse](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // one probe when half-open
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			return !dependencyFailed(err)
		},
		// A request the client gave up on says nothing about the dependency.
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			e.opts.Logger.Log(context.Background(), level, "call circuit breaker", "connector", e.Name(), "call", name,
				"from", from.String(), "to", to.String())
			e.opts.Observer.BreakerChanged(name, from.String(), to.String())
		},
	})
}

// sendCall makes the call through its circuit breaker, retrying once when allowed (see retry),
// and reports it to the Observer.
func (e *Engine) sendCall(ctx context.Context, c *compiledCall, payload any, key string) (r callResponse, err error) {
	start := time.Now()
	defer func() { e.opts.Observer.CallDone(c.spec.Name, time.Since(start), err) }()
	attempts := func() (callResponse, error) {
		r, err := e.doCall(ctx, c, payload, key)
		if err != nil && e.retry(ctx, c, err) {
			e.opts.Observer.CallRetried(c.spec.Name)
			r, err = e.doCall(ctx, c, payload, key)
		}
		return r, err
	}
	if c.breaker == nil {
		return attempts()
	}
	r, err = c.breaker.Execute(attempts)
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		err = ErrBreakerOpen
	}
	return r, err
}

// retry says whether a failed attempt is tried once more, and waits the jitter first. It is when
// the call may be sent twice (GET, or idempotent: true), the dependency failed (dependencyFailed),
// and what is left of ctx's deadline after the jitter still holds a whole attempt (the call's
// timeout): a retry never shortens the time the dependency gets, nor delays the answer.
func (e *Engine) retry(ctx context.Context, c *compiledCall, err error) bool {
	if !c.retry || !dependencyFailed(err) || ctx.Err() != nil {
		return false
	}
	delay := retryMinDelay + rand.N(retryMaxDelay-retryMinDelay)
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay+c.timeout {
		return false
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
