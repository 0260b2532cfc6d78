package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// Error is an error answer of Microsoft Graph ({"error":{"code","message"}}).
// It never holds request bodies, which may contain passwords.
type Error struct {
	StatusCode int
	Code       string
	Message    string
	// RetryAfter is the server's Retry-After, when it sent one.
	RetryAfter time.Duration
	Method     string
	Path       string
}

// Error returns e.g. "graph: POST /identity/apiConnectors: 403
// Authorization_RequestDenied: Insufficient privileges to complete the operation."
func (e *Error) Error() string {
	s := fmt.Sprintf("graph: %s %s: %d", e.Method, e.Path, e.StatusCode)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func newError(method, path string, resp *http.Response, body []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode, Method: method, Path: path}
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
	}
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
	}
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	return e
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// IsNotFound reports whether err is a Graph 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.StatusCode == http.StatusNotFound
}

// RetryAfter returns the server's Retry-After when err is a 429 or 503 that
// still failed after the client's retries.
func RetryAfter(err error) (time.Duration, bool) {
	var e *Error
	if errors.As(err, &e) && (e.StatusCode == http.StatusTooManyRequests || e.StatusCode == http.StatusServiceUnavailable) && e.RetryAfter > 0 {
		return e.RetryAfter, true
	}
	return 0, false
}

// IsTransient reports whether retrying later may succeed: Graph answered 408,
// 429 or 5xx, the token endpoint answered 408, 429 or 5xx or could not be
// reached, or the network failed.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return transientStatus(e.StatusCode)
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		// No response: the identity platform was not reached.
		return afe.RawResponse == nil || transientStatus(afe.RawResponse.StatusCode)
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded)
}

func transientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}
