package rules

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// Claims are personal data: what the runtime logs, counts or reports about a failure names the
// field path, the call or event and the kind of failure, never a value from the request. CEL
// errors may quote values (a claim used as a regular expression is echoed by the regexp parser,
// a failed conversion quotes its input, a map look-up names the key), and transport errors quote
// the URL, whose query a GET call fills with claims. Options.ErrorDetail keeps the full text, for
// the local test and eval commands and for debugging with --log-claims. Values read from Secrets
// are never reported, not even then.

// celErrorKinds maps substrings of cel-go's and its libraries' error messages to what is reported
// instead of the message; the first match wins.
var celErrorKinds = []struct{ match, kind string }{
	{"cost limit exceeded", "actual cost limit exceeded"},
	{"operation interrupted", "deadline exceeded"},
	{"no such key", "no such key"},
	{"no such attribute", "no such attribute"},
	{"no such overload", "no such overload"},
	{"no matching overload", "no such overload"},
	{"regexp", "invalid regular expression"},
	{"regex", "invalid regular expression"},
	{"division by zero", "division by zero"},
	{"modulus by zero", "modulus by zero"},
	{"index out of", "index out of range"},
	{"overflow", "integer overflow"},
	{"optional.none() dereference", "optional.none() dereference"},
	{"conversion", "type conversion failed"},
	{"parse", "type conversion failed"},
	{"unsupported", "unsupported operation"},
}

// errorDetail says whether errors are reported in full: Options.ErrorDetail, except at steps whose
// requests carry sensitive values (a one-time code, a password) that calls' expressions and URLs
// may hold. Those are never reported, not even to the test and eval commands.
func (e *Engine) errorDetail() bool { return e.opts.ErrorDetail && e.step.SensitiveVariable() == "" }

// expressionError is how an expression's evaluation error is reported: path and kind.
func (e *Engine) expressionError(path string, err error) error {
	if e.errorDetail() {
		return fmt.Errorf("%s: %w", path, err)
	}
	return fmt.Errorf("%s: %s", path, errorKind(err))
}

func errorKind(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline exceeded"
	}
	if errors.Is(err, context.Canceled) {
		return "request canceled"
	}
	msg := err.Error()
	for _, k := range celErrorKinds {
		if strings.Contains(msg, k.match) {
			return k.kind
		}
	}
	return "evaluation failed"
}

// transportError reports an outbound request's error with the URL's query and credentials left
// out (net/http quotes the whole URL). Options.ErrorDetail keeps the query, unless the request
// carries query parameters from Secrets: their values are never reported.
func (e *Engine) transportError(err error, sv v1alpha1.SecretValues) error {
	var ue *url.Error
	if (e.errorDetail() && len(sv.SecretQueryParams) == 0) || !errors.As(err, &ue) {
		return err
	}
	return fmt.Errorf("%s %s: %w", ue.Op, redactURL(ue.URL), ue.Err)
}

// redactURL is scheme://host/path of raw, without user information, query or fragment.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
