package rules_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// secretKeysDir writes Secret keys in the layout the runtime Deployment mounts
// (<dir>/secret-keys/<Secret>/<key>) and returns dir.
func secretKeysDir(t *testing.T, values map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for ref, v := range values {
		p := filepath.Join(dir, rules.SecretKeyDir, ref)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// received is what a loopback dependency saw of one request.
type received struct {
	path, query string
	header      http.Header
}

type recorder struct {
	mu   sync.Mutex
	reqs []received
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	io.Copy(io.Discard, req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, received{req.URL.Path, req.URL.RawQuery, req.Header.Clone()})
	r.mu.Unlock()
	io.WriteString(w, `{"approved": true}`)
}

func (r *recorder) get(path string) (received, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.reqs {
		if x.path == path {
			return x, true
		}
	}
	return received{}, false
}

// The dependency and the sink receive the Secret values, read from the mounted files without
// their trailing newline, next to the static headers, the URL's own parameters and a GET call's
// parameters from body; a claim named like a secret parameter cannot replace it.
func TestSecretHeadersAndQueryParamsReachTheDependency(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	dir := secretKeysDir(t, map[string]string{
		"approvals-key/key":  "fn-key-value\n",
		"approvals-key/code": "fn-code+/=&value\r\n",
		"audit-key/api-key":  "audit-key-value",
	})
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - name: approve
    url: '`+srv.URL+`/api/approve?tenant=contoso'
    headers: {X-Client: signup}
    secretHeaders:
    - name: x-functions-key
      valueFrom: {secretKeyRef: {name: approvals-key, key: key}}
    secretQueryParams:
    - name: code
      valueFrom: {secretKeyRef: {name: approvals-key, key: code}}
  - name: lookup
    url: '`+srv.URL+`/api/lookup'
    method: GET
    body: "{'email': claims.email, 'code': claims.code}"
    secretQueryParams:
    - name: code
      valueFrom: {secretKeyRef: {name: approvals-key, key: code}}
  rules:
  - {name: approved, when: "!calls.approve.body.approved || !calls.lookup.body.approved", block: {message: denied}}
  events:
  - name: audit
    delivery: Sync
    failurePolicy: Fail
    sink:
      url: '`+srv.URL+`/events'
      secretHeaders:
      - name: X-Api-Key
        valueFrom: {secretKeyRef: {name: audit-key, key: api-key}}
`, rules.Options{EgressAllow: loopback, SecretKeys: rules.DirSecretKeys(dir)})
	d := eval(t, e, map[string]any{"email": "ada@fabrikam.example", "code": "from-a-claim"})
	if d.Action != entra.ActionContinue || d.Failure != "" {
		t.Fatalf("got %+v", d)
	}

	approve, ok := rec.get("/api/approve")
	if !ok {
		t.Fatal("the call did not reach the dependency")
	}
	if got := approve.header.Get("X-Functions-Key"); got != "fn-key-value" {
		t.Errorf("x-functions-key = %q, want the Secret's value without its newline", got)
	}
	if approve.header.Get("X-Client") != "signup" {
		t.Errorf("static header lost: %v", approve.header)
	}
	if approve.query != "code=fn-code%2B%2F%3D%26value&tenant=contoso" {
		t.Errorf("query %q", approve.query)
	}
	lookup, _ := rec.get("/api/lookup")
	if lookup.query != "code=fn-code%2B%2F%3D%26value&email=ada%40fabrikam.example" {
		t.Errorf("GET query %q: the secret parameter must win over the claim", lookup.query)
	}
	if lookup.header.Get("X-Functions-Key") != "" {
		t.Error("a header of one call was sent by another")
	}
	sink, ok := rec.get("/events")
	if !ok || sink.header.Get("X-Api-Key") != "audit-key-value" || sink.query != "" {
		t.Errorf("sink received %+v (found %v)", sink, ok)
	}
}

// A value that is missing, empty or cannot be a header fails the call under its failure policy,
// with a reason naming the header and the Secret key, never a value.
func TestBadSecretValuesFailTheCall(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	spec := `  step: PostAttributeCollection
  calls:
  - name: approve
    url: '` + srv.URL + `/api/approve'
    secretHeaders:
    - name: x-functions-key
      valueFrom: {secretKeyRef: {name: approvals-key, key: key}}
`
	for name, tc := range map[string]struct {
		files map[string]string
		opts  bool
		want  string
	}{
		"no source":     {nil, false, "call approve: calls approve needs values from Secrets but no secret source is configured"},
		"missing file":  {map[string]string{"approvals-key/other": "x"}, true, "call approve: secret header x-functions-key: Secret approvals-key key key: open "},
		"empty":         {map[string]string{"approvals-key/key": "\n"}, true, "call approve: secret header x-functions-key: Secret approvals-key key key: is empty"},
		"two lines":     {map[string]string{"approvals-key/key": "canary-first\ncanary-second\n"}, true, "call approve: secret header x-functions-key: Secret approvals-key key key is not a valid header value"},
		"control chars": {map[string]string{"approvals-key/key": "canary\x00"}, true, "is not a valid header value"},
	} {
		t.Run(name, func(t *testing.T) {
			opts := rules.Options{EgressAllow: loopback, ErrorDetail: true}
			if tc.opts {
				opts.SecretKeys = rules.DirSecretKeys(secretKeysDir(t, tc.files))
			}
			d := eval(t, compile(t, spec, opts), map[string]any{})
			if d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, tc.want) || strings.Contains(d.Failure, "canary") {
				t.Errorf("got %+v, want a failure containing %q", d, tc.want)
			}
		})
	}
	if len(rec.reqs) != 0 {
		t.Errorf("%d requests were sent without their secret header", len(rec.reqs))
	}
}

// A failed request's reason shows the URL without its query when a parameter comes from a
// Secret, even with ErrorDetail (serve --log-claims, the eval command).
func TestSecretQueryIsNeverInAFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dir := secretKeysDir(t, map[string]string{"approvals-key/code": "canary-code"})
	var logs bytes.Buffer
	for _, detail := range []bool{false, true} {
		e := compile(t, `  step: PostAttributeCollection
  calls:
  - name: approve
    url: 'http://`+closed+`/api/approve?tenant=contoso'
    secretQueryParams:
    - name: code
      valueFrom: {secretKeyRef: {name: approvals-key, key: code}}
  events:
  - name: audit
    delivery: Sync
    sink:
      url: 'http://`+closed+`/events'
      secretQueryParams:
      - name: sig
        valueFrom: {secretKeyRef: {name: approvals-key, key: code}}
`, rules.Options{EgressAllow: loopback, SecretKeys: rules.DirSecretKeys(dir), ErrorDetail: detail, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		d, err := e.Evaluate(context.Background(), request(t, map[string]any{}))
		if err != nil {
			t.Fatal(err)
		}
		want := "call approve: Post http://" + closed + "/api/approve: dial tcp"
		if !strings.Contains(d.Failure, want) || strings.Contains(d.Failure, "canary") || strings.Contains(d.Failure, "tenant") {
			t.Errorf("ErrorDetail %v: failure %q, want it to contain %q and no query", detail, d.Failure, want)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "event failed") || !strings.Contains(out, "http://"+closed+"/events: dial tcp") {
		t.Errorf("the sink's failure is not logged, so this test does not see it:\n%s", out)
	}
	if strings.Contains(out, "canary") {
		t.Errorf("a Secret value was logged:\n%s", out)
	}
}

// Secret values are credentials: over plain http only to in-cluster Services and loopback.
func TestSecretValuesNeedTLS(t *testing.T) {
	header := "    secretHeaders:\n    - {name: x-api-key, valueFrom: {secretKeyRef: {name: k, key: key}}}\n"
	query := "    secretQueryParams:\n    - {name: code, valueFrom: {secretKeyRef: {name: k, key: code}}}\n"
	_, err := rules.Compile(parse(t, "  step: PostAttributeCollection\n  calls:\n  - name: c\n    url: 'http://approvals.example/x'\n"+header+query), rules.Options{})
	wantFieldError(t, err, "spec.calls[0].url", "sends credentials (secretHeaders, secretQueryParams) over plain http to approvals.example; use https")
	_, err = rules.Compile(parse(t, "  step: PostAttributeCollection\n  events:\n  - name: e\n    sink:\n      url: 'http://10.0.0.1/e'\n  "+strings.ReplaceAll(query, "\n    ", "\n      ")), rules.Options{})
	wantFieldError(t, err, "spec.events[0].sink.url", "sends credentials (secretQueryParams) over plain http to 10.0.0.1")
	for _, host := range []string{"approvals.identity.svc", "approvals.identity.svc.cluster.local:8080", "127.0.0.1"} {
		if err := rules.Validate(parse(t, "  step: PostAttributeCollection\n  calls:\n  - name: c\n    url: 'http://"+host+"/x'\n"+header)); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

// A connector file loaded by the runtime gets the answers the CRD gives.
func TestSecretValuesAreValidated(t *testing.T) {
	ref := func(name, secret, key string) string {
		return "    - {name: '" + name + "', valueFrom: {secretKeyRef: {name: '" + secret + "', key: '" + key + "'}}}\n"
	}
	call := func(extra string) string {
		return "  step: PostAttributeCollection\n  calls:\n  - name: c\n    url: 'https://approvals.example/x?tenant=t'\n" + extra
	}
	for _, tc := range []struct{ name, spec, path, reason string }{
		{"header name", call("    secretHeaders:\n" + ref("x api key", "k", "key")), "spec.calls[0].secretHeaders[0].name", "must be an HTTP header name"},
		{"header twice", call("    secretHeaders:\n" + ref("X-Key", "k", "a") + ref("x-key", "k", "b")), "spec.calls[0].secretHeaders", "header names must be unique"},
		{"static and secret", call("    headers: {X-KEY: clear}\n    secretHeaders:\n" + ref("x-key", "k", "a")), "spec.calls[0].secretHeaders", "both in headers and in secretHeaders"},
		{"authorization with auth", call("    auth: {type: Bearer, secretRef: {name: t}}\n    secretHeaders:\n" + ref("Authorization", "k", "a")), "spec.calls[0].secretHeaders", "must not set Authorization when auth is set"},
		{"query in URL", call("    secretQueryParams:\n" + ref("tenant", "k", "a")), "spec.calls[0].secretQueryParams", "both in url and in secretQueryParams"},
		{"query twice", call("    secretQueryParams:\n" + ref("code", "k", "a") + ref("code", "k", "b")), "spec.calls[0].secretQueryParams[1]", "duplicate name"},
		{"query name empty", call("    secretQueryParams:\n" + ref("", "k", "a")), "spec.calls[0].secretQueryParams[0].name", "must be 1 to 256 characters"},
		{"secret name", call("    secretQueryParams:\n" + ref("code", "../k", "a")), "spec.calls[0].secretQueryParams[0].valueFrom.secretKeyRef.name", "must be a Secret name"},
		{"secret key", call("    secretHeaders:\n" + ref("x-key", "k", "a/b")), "spec.calls[0].secretHeaders[0].valueFrom.secretKeyRef.key", "must be a Secret key"},
		{"sink authorization with auth", "  step: PostAttributeCollection\n  events:\n  - name: e\n    sink:\n      url: 'https://s.example'\n      auth: {type: Basic, secretRef: {name: b}}\n      secretHeaders:\n  " + ref("authorization", "k", "a"),
			"spec.events[0].sink.secretHeaders", "must not set Authorization when auth is set"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantFieldError(t, rules.Validate(parse(t, tc.spec)), tc.path, tc.reason)
		})
	}
}

// DirSecretKeys reads <dir>/secret-keys/<Secret>/<key>.
func TestDirSecretKeys(t *testing.T) {
	dir := secretKeysDir(t, map[string]string{"approvals-key/code": "v\n"})
	got, err := rules.DirSecretKeys(dir)(v1alpha1.SecretKeySelector{Name: "approvals-key", Key: "code"})
	if err != nil || string(got) != "v" {
		t.Errorf("got %q, %v", got, err)
	}
}
