package rules_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

func loadSample(t *testing.T, file, name string) *v1alpha1.APIConnector {
	t.Helper()
	b, err := connfile.LoadFiles("../../config/samples/" + file)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range b.Connectors {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no connector %s in %s", name, file)
	return nil
}

func secrets(kind, name string) (map[string][]byte, error) {
	return map[string][]byte{"username": []byte(kind + "-user"), "password": []byte("pw"), "token": []byte("tok-" + name)}, nil
}

// approvalServer is a fake approval system: GET status by e-mail, POST to submit.
type approvalServer struct {
	mu       sync.Mutex
	statuses map[string]string
	auth     []string
}

func (a *approvalServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.auth = append(a.auth, r.Header.Get("Authorization"))
	w.Header().Set("Content-Type", "application/json")
	switch r.Method {
	case http.MethodGet:
		st, ok := a.statuses[r.URL.Query().Get("email")]
		if !ok {
			st = "none"
		}
		json.NewEncoder(w).Encode(map[string]string{"status": st})
	case http.MethodPost:
		if r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "want JSON", http.StatusUnsupportedMediaType)
			return
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		email, _ := body["email"].(string)
		if st, ok := a.statuses[email]; ok {
			json.NewEncoder(w).Encode(map[string]string{"status": st})
			return
		}
		a.statuses[email] = "pending"
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"status": "submitted"})
	}
}

func TestApprovalSampleWithRealServer(t *testing.T) {
	fake := &approvalServer{statuses: map[string]string{"ada@fabrikam.example": "approved"}}
	srv := httptest.NewServer(fake)
	defer srv.Close()

	check := loadSample(t, "approval-workflow.yaml", "approval-check")
	check.Spec.Calls[0].URL = srv.URL + "/api/v1/access-requests/status"
	submit := loadSample(t, "approval-workflow.yaml", "approval-submit")
	submit.Spec.Calls[0].URL = srv.URL + "/api/v1/access-requests"
	opts := rules.Options{EgressAllow: loopback, Secrets: secrets}
	ce, err := rules.Compile(check, opts)
	if err != nil {
		t.Fatal(err)
	}
	se, err := rules.Compile(submit, opts)
	if err != nil {
		t.Fatal(err)
	}

	// Approved user (e-mail lower-cased by the body expression) continues.
	if d := eval(t, ce, map[string]any{"email": "Ada@Fabrikam.example"}); d.Action != entra.ActionContinue {
		t.Fatalf("approved: %+v", d)
	}
	// New user: no request yet, continues to the form; submitting creates a request.
	newUser := map[string]any{"email": "new@fabrikam.example", "givenName": "New"}
	if d := eval(t, ce, newUser); d.Action != entra.ActionContinue {
		t.Fatalf("none: %+v", d)
	}
	d := eval(t, se, newUser)
	if d.Action != entra.ActionShowBlockPage || d.Rule != "submitted" || !strings.Contains(d.UserMessage, "has been submitted") {
		t.Fatalf("submit: %+v", d)
	}
	// Coming back while pending: blocked by both connectors.
	if d := eval(t, ce, newUser); d.Rule != "pending" || d.UserMessage != "Your access request is pending approval." {
		t.Fatalf("pending: %+v", d)
	}
	if d := eval(t, se, newUser); d.Rule != "already-pending" {
		t.Fatalf("pending submit: %+v", d)
	}
	fake.mu.Lock()
	for _, a := range fake.auth {
		if a != "Bearer tok-approval" && a != "Bearer tok-submit" {
			t.Errorf("Authorization = %q", a)
		}
	}
	fake.mu.Unlock()

	// Approval system gone: fail closed with the connector's failure message.
	srv.Close()
	d = eval(t, ce, newUser)
	if d.Action != entra.ActionShowBlockPage || d.UserMessage != check.Spec.FailureMessage || d.Failure == "" {
		t.Fatalf("down: %+v", d)
	}
}

func TestVerificationSampleWithRealServer(t *testing.T) {
	var slow atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != "calls-user" || pass != "pw" || r.Header.Get("X-Client") != "contoso-signup" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if slow.Load() {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		var body map[string]any
		json.NewDecoder(r.Body).Decode(&body)
		verified := body["surname"] == "Lovelace" && body["dateOfBirth"] == "1815-12-10"
		json.NewEncoder(w).Encode(map[string]any{"verified": verified})
	}))
	defer srv.Close()

	conn := loadSample(t, "identity-verification.yaml", "identity-verification")
	conn.Spec.Calls[0].URL = srv.URL
	conn.Spec.Calls[0].Timeout.Duration = 200 * time.Millisecond
	e, err := rules.Compile(conn, rules.Options{EgressAllow: loopback, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	ada := map[string]any{"surname": "Lovelace", "extension_831374b3bd5041bfaa54263ec9e050fc_DateOfBirth": "1815-12-10"}
	if d := eval(t, e, ada); d.Action != entra.ActionContinue || d.Claims["extension_IdentityVerified"] != "true" {
		t.Fatalf("verified: %+v", d)
	}
	if d := eval(t, e, map[string]any{"surname": "Mallory"}); d.Rule != "not-verified" {
		t.Fatalf("not verified: %+v", d)
	}

	// Slow service: the call times out; Fail blocks, Ignore continues without the claim.
	slow.Store(true)
	start := time.Now()
	d := eval(t, e, ada)
	if d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, "deadline exceeded") {
		t.Fatalf("timeout Fail: %+v", d)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("call timeout not applied: %v", el)
	}
	conn.Spec.Calls[0].FailurePolicy = v1alpha1.FailurePolicyIgnore
	e, err = rules.Compile(conn, rules.Options{EgressAllow: loopback, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	d = eval(t, e, ada)
	if d.Action != entra.ActionContinue || len(d.Claims) != 0 || d.Failure == "" {
		t.Fatalf("timeout Ignore: %+v", d)
	}
}

// cloudEventSink records CloudEvents.
type cloudEventSink struct {
	mu     sync.Mutex
	events []rules.CloudEvent
	types  []string
	block  chan struct{} // when non-nil, requests wait on it
}

func (s *cloudEventSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.block != nil {
		select {
		case <-s.block:
		case <-r.Context().Done():
			return
		}
	}
	b, _ := io.ReadAll(r.Body)
	var ev rules.CloudEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.types = append(s.types, r.Header.Get("Content-Type"))
	s.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

func TestEventsToLoopbackSink(t *testing.T) {
	sink := &cloudEventSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	conn := loadSample(t, "business-events.yaml", "business-events")
	for i := range conn.Spec.Events {
		conn.Spec.Events[i].Sink.URL = srv.URL + "/" + conn.Spec.Events[i].Name
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e, err := rules.Compile(conn, rules.Options{EgressAllow: loopback, Secrets: secrets, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"email": "ada@fabrikam.example", "givenName": "Ada", "country": "UK"}
	// Entra's retry sends the same body: same event ids.
	for range 2 {
		if d := eval(t, e, claims); d.Action != entra.ActionContinue {
			t.Fatalf("%+v", d)
		}
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.events) != 4 {
		t.Fatalf("got %d events, want 4", len(sink.events))
	}
	ids := map[string][]string{}
	for i, ev := range sink.events {
		if sink.types[i] != "application/cloudevents+json" || ev.SpecVersion != "1.0" || ev.Source != "apiconnector.dev/identity/business-events" ||
			ev.DataContentType != "application/json" || !ev.Time.Equal(now) {
			t.Errorf("bad envelope %+v (%s)", ev, sink.types[i])
		}
		ids[ev.Type] = append(ids[ev.Type], ev.ID)
	}
	for typ, list := range ids {
		if len(list) != 2 || list[0] != list[1] || len(list[0]) != 64 {
			t.Errorf("%s: ids %v, want two equal sha256 ids", typ, list)
		}
	}
	if ids["dev.apiconnector.signup.audit"][0] == ids["dev.apiconnector.signup.welcome"][0] {
		t.Error("different events share an id")
	}
	for _, ev := range sink.events {
		data := ev.Data.(map[string]any)
		switch ev.Type {
		case "dev.apiconnector.signup.welcome":
			if data["tier"] != "enterprise" || data["locale"] != "en-US" || data["email"] != "ada@fabrikam.example" {
				t.Errorf("welcome data %v", data)
			}
		case "dev.apiconnector.signup.audit":
			dec := data["decision"].(map[string]any)
			if dec["action"] != "Continue" || data["step"] != "PostAttributeCollection" {
				t.Errorf("audit data %v", data)
			}
		}
	}
	// A different request gets different ids.
	if rules.EventID("identity", "business-events", "PostAttributeCollection", "signup.audit", []byte(`{"a":1}`)) == ids["dev.apiconnector.signup.audit"][0] {
		t.Error("id does not depend on the request")
	}
}

func TestSyncEventFailurePolicy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	spec := func(policy string) string {
		return `  step: PostAttributeCollection
  events:
  - name: audit
    delivery: Sync
    failurePolicy: ` + policy + `
    sink: {url: '` + srv.URL + `'}
`
	}
	if d := eval(t, compile(t, spec("Fail"), rules.Options{EgressAllow: loopback}), map[string]any{}); d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, "status 503") {
		t.Errorf("Fail: %+v", d)
	}
	if d := eval(t, compile(t, spec("Ignore"), rules.Options{EgressAllow: loopback}), map[string]any{}); d.Action != entra.ActionContinue {
		t.Errorf("Ignore: %+v", d)
	}
}

type countingObserver struct {
	rules.NopObserver
	dropped, sent atomic.Int64
}

func (o *countingObserver) EventDropped(string)                    { o.dropped.Add(1) }
func (o *countingObserver) EventSent(string, time.Duration, error) { o.sent.Add(1) }

func TestAsyncQueueDropsWhenFull(t *testing.T) {
	sink := &cloudEventSink{block: make(chan struct{})}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	obs := &countingObserver{}
	e := compile(t, `  step: PostAttributeCollection
  events:
  - name: note
    sink: {url: '`+srv.URL+`'}
`, rules.Options{EgressAllow: loopback, Observer: obs, EventQueueSize: 2})
	// 4 workers take one event each and block in the sink; 2 wait in the queue; the rest drop.
	const n = 20
	for i := range n {
		eval(t, e, map[string]any{"i": i})
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.DroppedEvents() < n-6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(sink.block)
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	dropped := e.DroppedEvents()
	sink.mu.Lock()
	delivered := len(sink.events)
	sink.mu.Unlock()
	if dropped == 0 || dropped != uint64(obs.dropped.Load()) || delivered+int(dropped) != n {
		t.Errorf("dropped %d (observer %d), delivered %d, want a sum of %d", dropped, obs.dropped.Load(), delivered, n)
	}
	// After Close, async events are dropped, not sent.
	eval(t, e, map[string]any{"late": true})
	if e.DroppedEvents() != dropped+1 {
		t.Errorf("event after Close not dropped")
	}
}

func TestAsyncRetriesThenDelivers(t *testing.T) {
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) < 3 {
			http.Error(w, "flaky", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	obs := &countingObserver{}
	e := compile(t, `  step: PostAttributeCollection
  events:
  - name: note
    sink: {url: '`+srv.URL+`'}
`, rules.Options{EgressAllow: loopback, Observer: obs, EventBackoff: time.Millisecond})
	eval(t, e, map[string]any{})
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 3 || obs.sent.Load() != 1 {
		t.Errorf("attempts %d, sent %d", attempts.Load(), obs.sent.Load())
	}
}

func TestCallGetQueryAndIgnoredStatus(t *testing.T) {
	var gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.RawQuery
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"unknown"}`)
	}))
	defer srv.Close()
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - name: lookup
    url: '`+srv.URL+`/x?fixed=1'
    method: GET
    body: "{'email': claims.email, 'n': 2, 'ok': true}"
    failurePolicy: Ignore
  - name: skipped
    url: '`+srv.URL+`'
    when: "false"
  rules:
  - name: not-found
    when: "calls.lookup.status == 404 && calls.lookup.body.error == 'unknown' && calls.skipped.status == 0 && size(calls.skipped.body) == 0"
    block: {message: not found}
`, rules.Options{EgressAllow: loopback})
	d := eval(t, e, map[string]any{"email": "a+b@c.example"})
	if d.Rule != "not-found" || !strings.Contains(d.Failure, "status 404") {
		t.Errorf("got %+v", d)
	}
	if gotQuery != "email=a%2Bb%40c.example&fixed=1&n=2&ok=true" {
		t.Errorf("query %q", gotQuery)
	}
}

// A GET call without a body sends no query parameters: claims are not put into URLs unless the
// connector selects them.
func TestGetCallWithoutBodySendsNoClaims(t *testing.T) {
	var gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotQuery = r.URL.RawQuery
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	e := compile(t, `  step: PostAttributeCollection
  calls:
  - name: lookup
    url: '`+srv.URL+`/x?fixed=1'
    method: GET
`, rules.Options{EgressAllow: loopback})
	d := eval(t, e, map[string]any{"email": "jane@contoso.example", "givenName": "Jane"})
	if d.Action != entra.ActionContinue || d.Failure != "" {
		t.Fatalf("got %+v", d)
	}
	if gotQuery != "fixed=1" {
		t.Errorf("query %q, want only the URL's own", gotQuery)
	}
}

// loopback lets these tests' calls reach their servers on 127.0.0.1, which the egress guard
// refuses by default.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
