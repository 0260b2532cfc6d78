package rules_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// keyRecorder is a dependency that records the Idempotency-Key of each request by path.
type keyRecorder struct {
	mu   sync.Mutex
	keys map[string][]string
}

func (k *keyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	k.keys[r.URL.Path] = append(k.keys[r.URL.Path], r.Header.Get("Idempotency-Key"))
	k.mu.Unlock()
	io.WriteString(w, `{}`)
}

// rawRequest decodes body as the server does at the legacy steps.
func rawRequest(t *testing.T, body string) *entra.Request {
	t.Helper()
	req, err := entra.DecodeRequest([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Every call carries an Idempotency-Key derived from the canonical request: Entra's retry of the
// same sign-up (the same claims, whatever their order and spacing) presents the same key; another
// call or another sign-up presents another.
func TestIdempotencyKey(t *testing.T) {
	rec := &keyRecorder{keys: map[string][]string{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - {name: submit, url: '`+srv.URL+`/submit'}
  - {name: notify, url: '`+srv.URL+`/notify'}
`, rules.Options{EgressAllow: loopback})
	for _, body := range []string{
		`{"email":"jane@contoso.example","givenName":"Jane","step":"PostAttributeCollection"}`,
		`{ "step": "PostAttributeCollection", "givenName": "Jane", "email": "jane@contoso.example" }`, // Entra's retry
		`{"email":"john@contoso.example","givenName":"John","step":"PostAttributeCollection"}`,
	} {
		if d, err := e.Evaluate(context.Background(), rawRequest(t, body)); err != nil || d.Failure != "" {
			t.Fatalf("evaluate: %v %+v", err, d)
		}
	}
	submit, notify := rec.keys["/submit"], rec.keys["/notify"]
	if len(submit) != 3 || len(notify) != 3 {
		t.Fatalf("keys %v", rec.keys)
	}
	first := rawRequest(t, `{"email":"jane@contoso.example","givenName":"Jane","step":"PostAttributeCollection"}`)
	if want := rules.IdempotencyKey("ns", "test", "PostAttributeCollection", "submit", first.Canonical()); submit[0] != want || len(want) != 64 {
		t.Errorf("submit key %q, want %q", submit[0], want)
	}
	if submit[0] != submit[1] || notify[0] != notify[1] {
		t.Errorf("a retried request has new keys: submit %v notify %v", submit, notify)
	}
	if submit[0] == notify[0] {
		t.Error("two calls share a key")
	}
	if submit[2] == submit[0] || notify[2] == notify[0] {
		t.Error("another sign-up has the same key")
	}
}

// A static Idempotency-Key in headers is sent instead of the derived one.
func TestIdempotencyKeyStaticHeaderWins(t *testing.T) {
	rec := &keyRecorder{keys: map[string][]string{}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - {name: submit, url: '`+srv.URL+`/submit', headers: {Idempotency-Key: fixed}}
`, rules.Options{EgressAllow: loopback})
	eval(t, e, map[string]any{"email": "jane@contoso.example"})
	if got := rec.keys["/submit"]; len(got) != 1 || got[0] != "fixed" {
		t.Errorf("keys %v", got)
	}
}
