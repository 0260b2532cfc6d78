package rules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/secretfile"
)

// Target identifies the call or event an outbound HTTP request belongs to. It is attached to the
// request's context so that a RoundTripper (tests, the local runner, tracing) can tell requests
// to the same URL apart.
type Target struct {
	Kind string // SecretKindCall or SecretKindEvent
	Name string
}

type targetKey struct{}

// TargetFromContext returns the Target of an outbound request's context.
func TargetFromContext(ctx context.Context) (Target, bool) {
	t, ok := ctx.Value(targetKey{}).(Target)
	return t, ok
}

// DirSecrets reads outbound credentials from files at <dir>/<kind>/<name>/<key>, the layout the
// runtime Deployment mounts. It reads on every use so rotated Secrets (which the kubelet updates
// in place) apply without a restart; the files are tiny next to the HTTP request they serve.
func DirSecrets(dir string) SecretSource {
	return func(kind, name string) (map[string][]byte, error) {
		base := filepath.Join(dir, kind, name)
		out := map[string][]byte{}
		for _, key := range []string{"username", "password", "token"} {
			b, err := secretfile.Read(filepath.Join(base, key))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read secret %s: %w", filepath.Join(base, key), err)
			}
			out[key] = b
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no credentials in %s", base)
		}
		return out, nil
	}
}

// DirSecretKeys reads the values of secretHeaders and secretQueryParams from files at
// <dir>/secret-keys/<Secret name>/<key>, the layout the runtime Deployment mounts. Like
// DirSecrets it reads on every use.
func DirSecretKeys(dir string) SecretKeySource {
	return func(ref v1alpha1.SecretKeySelector) ([]byte, error) {
		// The CRD's patterns (and Validate, for a file loaded on a laptop) allow no separator in
		// either part and no ".." as the Secret name: the path stays under secret-keys/.
		return secretfile.Read(filepath.Join(dir, SecretKeyDir, ref.Name, ref.Key))
	}
}

// addSecretValues sets the request's headers and query parameters whose values come from
// Secrets. Errors name the header or parameter and the Secret and key, never a value.
func (e *Engine) addSecretValues(req *http.Request, kind, name string, sv v1alpha1.SecretValues) error {
	if len(sv.SecretHeaders) == 0 && len(sv.SecretQueryParams) == 0 {
		return nil
	}
	if e.opts.SecretKeys == nil {
		return fmt.Errorf("%s %s needs values from Secrets but no secret source is configured", kind, name)
	}
	read := func(what, field string, src v1alpha1.SecretValueSource) ([]byte, error) {
		ref := src.SecretKeyRef
		v, err := e.opts.SecretKeys(ref)
		if err == nil && len(v) == 0 {
			err = errors.New("is empty")
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: Secret %s key %s: %w", what, field, ref.Name, ref.Key, err)
		}
		return v, nil
	}
	for _, h := range sv.SecretHeaders {
		v, err := read("secret header", h.Name, h.ValueFrom)
		if err != nil {
			return err
		}
		if !httpguts.ValidHeaderFieldValue(string(v)) {
			return fmt.Errorf("secret header %s: Secret %s key %s is not a valid header value (it holds a line break or another control character)",
				h.Name, h.ValueFrom.SecretKeyRef.Name, h.ValueFrom.SecretKeyRef.Key)
		}
		req.Header.Set(h.Name, string(v))
	}
	if len(sv.SecretQueryParams) == 0 {
		return nil
	}
	// Set last, so a GET call's parameters from body (claims) can never replace a key.
	q := req.URL.Query()
	for _, p := range sv.SecretQueryParams {
		v, err := read("secret query parameter", p.Name, p.ValueFrom)
		if err != nil {
			return err
		}
		q.Set(p.Name, string(v))
	}
	req.URL.RawQuery = q.Encode()
	return nil
}

type callResult struct {
	status int
	body   any
	err    error
}

// notRun is calls.<name> for a call that did not run (when was false) or failed under
// failurePolicy Ignore without a usable body: status 0 and an empty body, so rules can test
// calls.x.status == 200 without has() guards.
func notRun() map[string]any { return map[string]any{"status": int64(0), "body": map[string]any{}} }

// runCalls runs every call whose when holds, concurrently, and returns the calls variable. A
// failure under failurePolicy Fail returns the fail-closed decision; failures under Ignore are
// returned for Decision.Failure.
func (e *Engine) runCalls(ctx context.Context, v *vars) (ref.Val, *entra.Decision, []string) {
	results := make([]callResult, len(e.calls))
	ran := make([]bool, len(e.calls))
	callCtx, cancel := callsContext(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, c := range e.calls {
		run, err := e.evalBool(ctx, c.when, v)
		if err != nil {
			results[i] = callResult{err: err}
			ran[i] = true
			continue
		}
		if !run {
			continue
		}
		ran[i] = true
		payload, err := e.callPayload(ctx, c, v)
		var cacheKey *[sha256.Size]byte
		if err == nil && c.cache != nil {
			var k [sha256.Size]byte
			k, err = e.cacheKey(ctx, c, v, payload)
			cacheKey = &k
		}
		if err != nil {
			results[i] = callResult{err: err}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := IdempotencyKey(e.namespace, e.name, v.step, c.spec.Name, v.req.Canonical())
			r, err := e.cachedCall(callCtx, c, cacheKey, payload, key)
			results[i] = callResult{status: r.status, body: r.body, err: err}
		}()
	}
	wg.Wait()

	out := make(map[string]any, len(e.calls))
	var ignored []string
	for i, c := range e.calls {
		r := results[i]
		if !ran[i] {
			out[c.spec.Name] = notRun()
			continue
		}
		if r.err != nil {
			reason := fmt.Sprintf("call %s: %v", c.spec.Name, r.err)
			if c.failurePolicy == v1alpha1.FailurePolicyFail {
				e.failures.log(ctx, slog.LevelWarn, "call failed, failing closed", c.spec.Name, "connector", e.Name(), "call", c.spec.Name, "err", r.err)
				return nil, e.fail(reason), nil
			}
			e.failures.log(ctx, slog.LevelInfo, "call failed, ignored", c.spec.Name, "connector", e.Name(), "call", c.spec.Name, "err", r.err)
			ignored = append(ignored, reason)
		}
		body := r.body
		if body == nil {
			body = map[string]any{}
		}
		out[c.spec.Name] = map[string]any{"status": int64(r.status), "body": body}
	}
	return types.NewStringInterfaceMap(types.DefaultTypeAdapter, out), nil, ignored
}

// callsContext ends the calls v1alpha1.AnswerMargin before ctx's deadline (half of the time left
// when that is shorter), so that when a call hangs the rules reading its result, the claims and the
// sync events still run within the deadline.
func callsContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-min(v1alpha1.AnswerMargin, time.Until(dl)/2)))
}

// callPayload is the body expression's value as plain Go data. Without one, a POST, PUT or PATCH
// sends the request's claims and a GET nothing: query strings end up in access logs.
func (e *Engine) callPayload(ctx context.Context, c *compiledCall, v *vars) (any, error) {
	if c.body == nil {
		if c.method == http.MethodGet {
			return nil, nil
		}
		if v.rawClaims == nil {
			return map[string]any{}, nil
		}
		return v.rawClaims, nil
	}
	out, err := e.eval(ctx, c.body, v)
	if err != nil {
		return nil, err
	}
	data, err := toJSON(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.body.path, err)
	}
	return data, nil
}

// toJSON converts a CEL value into encoding/json-compatible Go data using CEL's JSON mapping.
func toJSON(v ref.Val) (any, error) {
	pv, err := v.ConvertToNative(types.JSONValueType)
	if err != nil {
		return nil, fmt.Errorf("convert %s to JSON: %w", v.Type().TypeName(), err)
	}
	return pv.(*structpb.Value).AsInterface(), nil
}

// doCall sends one call with the request's Idempotency-Key. A GET carries the payload's top-level
// entries as query parameters; other methods send it as a JSON body. Any response outside 2xx, a transport error, a timeout
// or a body that is not JSON is an error; status and a parsable body are still returned.
func (e *Engine) doCall(ctx context.Context, c *compiledCall, payload any, idempotencyKey string) (callResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ctx = context.WithValue(ctx, targetKey{}, Target{Kind: SecretKindCall, Name: c.spec.Name})

	u, err := url.Parse(c.spec.URL)
	if err != nil {
		return callResponse{}, fmt.Errorf("parse url: %w", err)
	}
	var body io.Reader
	if c.method == http.MethodGet {
		u.RawQuery = withQuery(u.Query(), payload).Encode()
	} else {
		b, err := json.Marshal(payload)
		if err != nil {
			return callResponse{}, fmt.Errorf("encode body: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, u.String(), body)
	if err != nil {
		return callResponse{}, err
	}
	req.Header.Set("Idempotency-Key", idempotencyKey) // before headers, so a static one wins
	for k, val := range c.spec.Headers {
		req.Header.Set(k, val)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if err := e.addSecretValues(req, SecretKindCall, c.spec.Name, c.spec.SecretValues); err != nil {
		return callResponse{}, err
	}
	if err := e.authorize(req, SecretKindCall, c.spec.Name, c.spec.Auth); err != nil {
		return callResponse{}, err
	}

	resp, err := e.opts.HTTPClient.Do(req)
	if err != nil {
		return callResponse{}, e.transportError(err, c.spec.SecretValues)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return callResponse{status: resp.StatusCode}, fmt.Errorf("read response: %w", err)
	}
	if len(raw) > MaxResponseBytes {
		return callResponse{status: resp.StatusCode}, &badAnswerError{fmt.Sprintf("response larger than %d bytes", MaxResponseBytes)}
	}
	var parsed any = map[string]any{}
	var parseErr error
	if len(bytes.TrimSpace(raw)) > 0 {
		if json.Unmarshal(raw, &parsed) != nil {
			parsed, parseErr = nil, &badAnswerError{"response is not JSON"}
		}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return callResponse{status: resp.StatusCode, body: parsed}, &statusError{code: resp.StatusCode}
	}
	if parseErr != nil {
		return callResponse{status: resp.StatusCode}, parseErr
	}
	return callResponse{status: resp.StatusCode, body: parsed, size: len(raw)}, nil
}

// withQuery adds the payload's top-level entries (strings as is, other values as JSON) to q.
func withQuery(q url.Values, payload any) url.Values {
	m, _ := payload.(map[string]any)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch val := m[k].(type) {
		case string:
			q.Set(k, val)
		case float64:
			q.Set(k, strconv.FormatFloat(val, 'f', -1, 64))
		case bool:
			q.Set(k, strconv.FormatBool(val))
		case nil:
		default:
			b, _ := json.Marshal(val)
			q.Set(k, string(b))
		}
	}
	return q
}

// authorize adds outbound credentials from Options.Secrets.
func (e *Engine) authorize(req *http.Request, kind, name string, auth *v1alpha1.OutboundAuth) error {
	if auth == nil {
		return nil
	}
	if e.opts.Secrets == nil {
		return fmt.Errorf("%s %s needs credentials but no secret source is configured", kind, name)
	}
	data, err := e.opts.Secrets(kind, name)
	if err != nil {
		return fmt.Errorf("credentials for %s %s: %w", kind, name, err)
	}
	switch auth.Type {
	case v1alpha1.OutboundAuthBasic:
		user, pass := data["username"], data["password"]
		if len(user) == 0 {
			return fmt.Errorf("credentials for %s %s: no username", kind, name)
		}
		req.SetBasicAuth(string(user), string(pass))
	case v1alpha1.OutboundAuthBearer:
		tok := data["token"]
		if len(tok) == 0 {
			return fmt.Errorf("credentials for %s %s: no token", kind, name)
		}
		req.Header.Set("Authorization", "Bearer "+string(tok))
	default:
		return fmt.Errorf("%s %s: unknown auth type %q", kind, name, auth.Type)
	}
	return nil
}
