// Package rulestest runs test cases against APIConnectors through the real rules Engine, with
// outbound calls answered by stubs and events captured instead of sent, so connector logic can
// be tested on a laptop or in CI without any network. The CLI's test and eval subcommands use it.
package rulestest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// File is a test-case file.
type File struct {
	// Connector is the default connector name for cases that name none; it may be omitted when
	// the manifests hold a single connector.
	Connector string `json:"connector,omitempty"`
	Cases     []Case `json:"cases"`
}

// Case is one request and the answer expected for it.
type Case struct {
	Name      string `json:"name"`
	Connector string `json:"connector,omitempty"`
	// Claims is the request body Entra would send (step, client_id, ui_locales included).
	Claims map[string]any `json:"claims"`
	// Calls stubs the response of each call by name. A call that runs without a stub fails like
	// an unreachable service.
	Calls  map[string]CallStub `json:"calls,omitempty"`
	Expect Expect              `json:"expect"`
}

// CallStub is the stubbed response of a call.
type CallStub struct {
	// Status defaults to 200.
	Status int `json:"status,omitempty"`
	// Body is returned JSON-encoded; a string is returned as is (to test bad JSON).
	Body any `json:"body,omitempty"`
	// Error makes the call fail at the transport level (timeout, connection refused).
	Error string `json:"error,omitempty"`
}

// Expect is the expected answer. Fields left out are not checked.
type Expect struct {
	Action      entra.Action `json:"action"`
	UserMessage *string      `json:"userMessage,omitempty"`
	Rule        *string      `json:"rule,omitempty"`
	// Claims, when present, must equal the returned claims exactly ({} means none).
	Claims map[string]string `json:"claims,omitempty"`
	// Events, when present, are the names of the events sent, in any order ([] means none).
	Events []string `json:"events,omitempty"`
	// Failure, when present, must be a substring of Decision.Failure ("" means no failure).
	Failure *string `json:"failure,omitempty"`
}

// CapturedCall is an outbound call request as the engine built it.
type CapturedCall struct {
	Name   string
	Method string
	URL    string
	Header http.Header
	Body   string
}

// CapturedEvent is an event the engine delivered.
type CapturedEvent struct {
	Name  string
	Event rules.CloudEvent
}

// Outcome is what one evaluation produced.
type Outcome struct {
	Decision *entra.Decision
	Calls    []CapturedCall
	Events   []CapturedEvent
}

// CaseResult is the result of one case.
type CaseResult struct {
	Name      string
	Connector string
	Passed    bool
	// Problems are the mismatches (or the error) that made the case fail.
	Problems []string
	Outcome  *Outcome
}

// LoadCases reads a test-case file strictly (unknown fields are errors).
func LoadCases(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f := &File{}
	strict, err := sigsjson.UnmarshalStrict(js, f)
	if err == nil && len(strict) > 0 {
		err = strict[0]
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range f.Cases {
		// Decode claims the way the server does (numbers are float64).
		if f.Cases[i].Claims, err = normalize(f.Cases[i].Claims); err != nil {
			return nil, fmt.Errorf("%s: case %q: %w", path, f.Cases[i].Name, err)
		}
	}
	return f, nil
}

func normalize(m map[string]any) (map[string]any, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	return out, json.Unmarshal(b, &out)
}

// RunFile loads the manifests (APIConnectors and the ConfigMaps their lists use) and the case
// file, and runs every case. The error is for files that cannot be read; failing cases are
// reported in the results.
func RunFile(connectorPaths []string, casesPath string) ([]CaseResult, error) {
	b, err := connfile.LoadFiles(connectorPaths...)
	if err != nil {
		return nil, err
	}
	f, err := LoadCases(casesPath)
	if err != nil {
		return nil, err
	}
	return Run(b, f), nil
}

// Run runs the cases of f against the connectors of b.
func Run(b *connfile.Bundle, f *File) []CaseResult {
	results := make([]CaseResult, 0, len(f.Cases))
	for _, c := range f.Cases {
		name := c.Connector
		if name == "" {
			name = f.Connector
		}
		res := CaseResult{Name: c.Name, Connector: name}
		conn, err := pick(b, name)
		if err != nil {
			res.Problems = []string{err.Error()}
			results = append(results, res)
			continue
		}
		res.Connector = conn.Name
		out, err := Eval(conn, b.ListResolver(conn.Namespace), c.Claims, c.Calls)
		if err != nil {
			res.Problems = []string{err.Error()}
		} else {
			res.Outcome = out
			res.Problems = check(c.Expect, out)
		}
		res.Passed = len(res.Problems) == 0
		results = append(results, res)
	}
	return results
}

func pick(b *connfile.Bundle, name string) (*v1alpha1.APIConnector, error) {
	if name == "" {
		if len(b.Connectors) != 1 {
			return nil, fmt.Errorf("the manifests hold %d connectors; name one with the connector field", len(b.Connectors))
		}
		return b.Connectors[0], nil
	}
	for _, c := range b.Connectors {
		if c.Name == name {
			return c, nil
		}
	}
	return nil, fmt.Errorf("connector %q not found in the manifests", name)
}

// Eval evaluates one request against conn with stubbed calls and captured events. The request
// goes through the engine's real HTTP request construction; only the transport is replaced.
func Eval(conn *v1alpha1.APIConnector, resolve rules.ListResolver, claims map[string]any, stubs map[string]CallStub) (*Outcome, error) {
	tr := &stubTransport{stubs: stubs}
	eng, err := rules.Compile(conn, rules.Options{
		HTTPClient: &http.Client{Transport: tr},
		// Dummy credentials so calls and events with auth take the same path as in production.
		Secrets: func(kind, name string) (map[string][]byte, error) {
			return map[string][]byte{"username": []byte("test"), "password": []byte("test"), "token": []byte("test")}, nil
		},
		ResolveList:   resolve,
		EventAttempts: 1,
	})
	if err != nil {
		return nil, err
	}
	canonical, err := json.Marshal(claims) // encoding/json sorts map keys, as the server does
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), eng.Timeout()+5*time.Second)
	defer cancel()
	d, err := eng.Evaluate(ctx, &entra.Request{Claims: claims, Canonical: canonical})
	if err != nil {
		return nil, err
	}
	if err := eng.Close(ctx); err != nil { // deliver async events to the capture
		return nil, err
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sort.Slice(tr.events, func(i, j int) bool { return tr.events[i].Name < tr.events[j].Name })
	return &Outcome{Decision: d, Calls: tr.calls, Events: tr.events}, nil
}

func check(want Expect, out *Outcome) []string {
	var p []string
	d := out.Decision
	if want.Action != "" && d.Action != want.Action {
		p = append(p, fmt.Sprintf("action: got %s, want %s", d.Action, want.Action))
	}
	if want.UserMessage != nil && d.UserMessage != *want.UserMessage {
		p = append(p, fmt.Sprintf("userMessage: got %q, want %q", d.UserMessage, *want.UserMessage))
	}
	if want.Rule != nil && d.Rule != *want.Rule {
		p = append(p, fmt.Sprintf("rule: got %q, want %q", d.Rule, *want.Rule))
	}
	if want.Failure != nil {
		if (*want.Failure == "" && d.Failure != "") || !strings.Contains(d.Failure, *want.Failure) {
			p = append(p, fmt.Sprintf("failure: got %q, want %q", d.Failure, *want.Failure))
		}
	}
	if want.Claims != nil {
		got := d.Claims
		if got == nil {
			got = map[string]string{}
		}
		for k, v := range want.Claims {
			if g, ok := got[k]; !ok || g != v {
				p = append(p, fmt.Sprintf("claim %s: got %q, want %q", k, g, v))
			}
		}
		for k, v := range got {
			if _, ok := want.Claims[k]; !ok {
				p = append(p, fmt.Sprintf("claim %s: got %q, want none", k, v))
			}
		}
	}
	if want.Events != nil {
		got := make([]string, len(out.Events))
		for i, e := range out.Events {
			got[i] = e.Name
		}
		exp := slices.Clone(want.Events)
		sort.Strings(exp)
		if !slices.Equal(got, exp) {
			p = append(p, fmt.Sprintf("events: got %v, want %v", got, exp))
		}
	}
	if d.Failure != "" && want.Failure == nil && d.Action == entra.ActionShowBlockPage && want.Action != entra.ActionShowBlockPage {
		p = append(p, "failure: "+d.Failure)
	}
	return p
}

// Passed reports whether every case passed.
func Passed(results []CaseResult) bool {
	for _, r := range results {
		if !r.Passed {
			return false
		}
	}
	return true
}

// PrintTable writes one line per case and a summary.
func PrintTable(w io.Writer, results []CaseResult) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tCONNECTOR\tCASE\tACTION\tDETAIL")
	failed := 0
	for _, r := range results {
		result, action, detail := "PASS", "-", ""
		if r.Outcome != nil {
			d := r.Outcome.Decision
			action = string(d.Action)
			switch {
			case d.Rule != "":
				detail = "rule " + d.Rule
			case len(d.Claims) > 0:
				detail = fmt.Sprintf("%d claims", len(d.Claims))
			}
		}
		if !r.Passed {
			result = "FAIL"
			failed++
			detail = strings.Join(r.Problems, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", result, r.Connector, r.Name, action, detail)
	}
	fmt.Fprintf(tw, "\n%d passed, %d failed\n", len(results)-failed, failed)
	return tw.Flush()
}

// stubTransport answers calls from stubs by call name and captures events.
type stubTransport struct {
	stubs  map[string]CallStub
	mu     sync.Mutex
	calls  []CapturedCall
	events []CapturedEvent
}

func (t *stubTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	target, ok := rules.TargetFromContext(req.Context())
	if !ok {
		return nil, fmt.Errorf("unexpected request to %s", req.URL)
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if target.Kind == rules.SecretKindEvent {
		ev := CapturedEvent{Name: target.Name}
		if err := json.Unmarshal(body, &ev.Event); err != nil {
			return nil, fmt.Errorf("event %s is not a CloudEvent: %w", target.Name, err)
		}
		t.events = append(t.events, ev)
		return response(req, http.StatusAccepted, nil), nil
	}
	t.calls = append(t.calls, CapturedCall{Name: target.Name, Method: req.Method, URL: req.URL.String(), Header: req.Header.Clone(), Body: string(body)})
	stub, ok := t.stubs[target.Name]
	if !ok {
		return nil, fmt.Errorf("no stub for call %s in the test case", target.Name)
	}
	if stub.Error != "" {
		return nil, fmt.Errorf("%s", stub.Error)
	}
	status := stub.Status
	if status == 0 {
		status = http.StatusOK
	}
	var out []byte
	switch b := stub.Body.(type) {
	case nil:
	case string:
		out = []byte(b)
	default:
		var err error
		if out, err = json.Marshal(b); err != nil {
			return nil, err
		}
	}
	return response(req, status, out), nil
}

func response(req *http.Request, status int, body []byte) *http.Response {
	return &http.Response{
		StatusCode: status,
		Status:     http.StatusText(status),
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
