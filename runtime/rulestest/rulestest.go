// Package rulestest runs test cases against APIConnectors through the real rules Engine, with
// outbound calls answered by stubs and events captured instead of sent, so connector logic can
// be tested on a laptop or in CI without any network. The CLI's test and eval subcommands use it.
package rulestest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
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
	// Claims is the request body Entra would send (step, client_id, ui_locales included). At
	// the custom authentication extension steps it is mapped into the envelope: each claim
	// becomes a collected attribute (userSignUpInfo.attributes) typed from its value (string,
	// integer → int64, boolean; identities stays identities), at OnTokenIssuanceStart
	// authenticationContext.user, at OnOtpSend data.otpContext. See BuildEnvelope.
	Claims map[string]any `json:"claims,omitempty"`
	// Context is merged over the default authenticationContext of the envelope (extension
	// steps only).
	Context map[string]any `json:"context,omitempty"`
	// Request is the full extension envelope as Entra sends it, instead of claims and context.
	Request map[string]any `json:"request,omitempty"`
	// Credentials are the decrypted password context at OnPasswordSubmit (username, password):
	// the runner does not encrypt and decrypt it, it hands them to the calls' credentials
	// variable directly, with the nonce "test-nonce".
	Credentials map[string]string `json:"credentials,omitempty"`
	// Calls stubs the response of each call by name. A call that runs without a stub fails like
	// an unreachable service, and the case fails: nothing is sent to the network.
	Calls  map[string]CallStub `json:"calls,omitempty"`
	Expect Expect              `json:"expect"`
}

// CallStub is the stubbed response of a call: a response (status and body), a transport error,
// or a timeout.
type CallStub struct {
	// Status defaults to 200.
	Status int `json:"status,omitempty"`
	// Body is returned JSON-encoded; a string is returned as is (to test bad JSON).
	Body any `json:"body,omitempty"`
	// Error makes the call fail at the transport level (connection refused, reset).
	Error string `json:"error,omitempty"`
	// Timeout makes the call never answer: it fails when its timeout (or the connector's
	// deadline) ends, as a service that hangs would.
	Timeout bool `json:"timeout,omitempty"`
}

// validate checks that the stub is one thing.
func (s CallStub) validate() error {
	n := 0
	for _, set := range []bool{s.Status != 0 || s.Body != nil, s.Error != "", s.Timeout} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("set either status and body, error, or timeout")
	}
	if s.Status != 0 && (s.Status < 100 || s.Status > 599) {
		return fmt.Errorf("status %d is not an HTTP status", s.Status)
	}
	return nil
}

// ParseStub parses a call stub given on the command line as NAME=SPEC, SPEC being
// STATUS[:BODY] (BODY a JSON document, or returned as it is when it is not JSON), timeout, or
// error[:MESSAGE].
func ParseStub(arg string) (string, CallStub, error) {
	name, spec, ok := strings.Cut(arg, "=")
	if !ok || name == "" || spec == "" {
		return "", CallStub{}, fmt.Errorf("stub %q: want NAME=STATUS[:BODY], NAME=timeout or NAME=error[:MESSAGE]", arg)
	}
	var stub CallStub
	head, rest, hasRest := strings.Cut(spec, ":")
	switch head {
	case "timeout":
		if hasRest {
			return "", CallStub{}, fmt.Errorf("stub %s: timeout takes nothing after it", name)
		}
		stub.Timeout = true
	case "error":
		stub.Error = "connection refused"
		if rest != "" {
			stub.Error = rest
		}
	default:
		status, err := strconv.Atoi(head)
		if err != nil {
			return "", CallStub{}, fmt.Errorf("stub %s: %q is not a status, timeout or error", name, head)
		}
		stub.Status = status
		if hasRest {
			var body any
			if json.Unmarshal([]byte(rest), &body) == nil {
				stub.Body = body
			} else {
				stub.Body = rest
			}
		}
	}
	if err := stub.validate(); err != nil {
		return "", CallStub{}, fmt.Errorf("stub %s: %w", name, err)
	}
	return name, stub, nil
}

// LoadStubs reads a YAML or JSON file mapping call names to stubs, as a case's calls field.
func LoadStubs(path string) (map[string]CallStub, error) {
	stubs := map[string]CallStub{}
	if err := loadStrict(path, &stubs); err != nil {
		return nil, err
	}
	for name, s := range stubs {
		if err := s.validate(); err != nil {
			return nil, fmt.Errorf("%s: stub %s: %w", path, name, err)
		}
	}
	return stubs, nil
}

// Expect is the expected answer. Fields left out are not checked.
type Expect struct {
	Action      entra.Action `json:"action"`
	UserMessage *string      `json:"userMessage,omitempty"`
	Rule        *string      `json:"rule,omitempty"`
	// Claims, when present, must equal the returned string claims exactly ({} means none).
	Claims map[string]string `json:"claims,omitempty"`
	// ClaimValues, when present, must equal the returned claims that are not strings (int64 and
	// boolean attributes, string arrays at OnTokenIssuanceStart) exactly ({} means none).
	ClaimValues map[string]any `json:"claimValues,omitempty"`
	// AttributeErrors, when present, must equal the per-attribute errors exactly ({} means none).
	AttributeErrors map[string]string `json:"attributeErrors,omitempty"`
	// Events, when present, are the names of the events sent, in any order ([] means none).
	Events []string `json:"events,omitempty"`
	// Failure, when present, must be a substring of Decision.Failure ("" means no failure).
	Failure *string `json:"failure,omitempty"`
	// AuditMatches, when present, are the names of the audited rules that matched, in
	// evaluation order ([] means none): rules in Audit enforcement, and with the connector in
	// Audit the rule that would have decided.
	AuditMatches []string `json:"auditMatches,omitempty"`
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
	// Unstubbed are the calls that ran without a stub (they failed like an unreachable service).
	Unstubbed []string
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
	f := &File{}
	if err := loadStrict(path, f); err != nil {
		return nil, err
	}
	for i := range f.Cases {
		// Decode claims the way the server does (numbers are float64).
		c := &f.Cases[i]
		var err error
		if c.Claims, err = normalize(c.Claims); err != nil {
			return nil, fmt.Errorf("%s: case %q: %w", path, c.Name, err)
		}
		for name, s := range c.Calls {
			if err := s.validate(); err != nil {
				return nil, fmt.Errorf("%s: case %q: call %s: %w", path, c.Name, name, err)
			}
		}
	}
	return f, nil
}

// loadStrict decodes a YAML or JSON file into out; unknown and duplicate fields are errors.
func loadStrict(path string, out any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	strict, err := sigsjson.UnmarshalStrict(js, out)
	if err == nil && len(strict) > 0 {
		err = strict[0]
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func normalize[V any](m map[string]V) (map[string]any, error) {
	if m == nil {
		return map[string]any{}, nil
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	return out, json.Unmarshal(b, &out)
}

// RunFile loads the manifests (APIConnectors and the ConfigMaps their lists use) and the case
// file, compiles every connector (those no case names too) and runs every case. The error is for
// files that cannot be read, manifests without connectors, a case file without cases and
// connectors that do not compile; failing cases are reported in the results.
func RunFile(connectorPaths []string, casesPath string) ([]CaseResult, error) {
	b, f, err := Load(connectorPaths, casesPath)
	if err != nil {
		return nil, err
	}
	return Run(b, f), nil
}

// Load reads and checks what RunFile runs: the manifests hold at least one connector and every
// connector compiles, the case file has at least one case.
func Load(connectorPaths []string, casesPath string) (*connfile.Bundle, *File, error) {
	b, err := connfile.LoadFiles(connectorPaths...)
	if err != nil {
		return nil, nil, err
	}
	if len(b.Connectors) == 0 {
		return nil, nil, fmt.Errorf("no APIConnector in %s", strings.Join(connectorPaths, ", "))
	}
	f, err := LoadCases(casesPath)
	if err != nil {
		return nil, nil, err
	}
	if len(f.Cases) == 0 {
		return nil, nil, fmt.Errorf("%s has no cases", casesPath)
	}
	if problems, _ := b.Compile(); len(problems) > 0 {
		return nil, nil, ProblemsError(problems)
	}
	return b, f, nil
}

// ProblemsError lists compile problems, one per line.
type ProblemsError []connfile.Problem

func (e ProblemsError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d problem(s):", len(e))
	for _, p := range e {
		sb.WriteString("\n  ")
		sb.WriteString(p.String())
	}
	return sb.String()
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
		req, err := BuildRequest(conn.Spec.Step, c)
		if err != nil {
			res.Problems = []string{err.Error()}
			results = append(results, res)
			continue
		}
		out, err := EvalRequest(conn, b.ListResolver(conn.Namespace), req, c.Calls)
		if err != nil {
			res.Problems = []string{err.Error()}
		} else {
			if conn.Spec.Step.AllowsPasswordOutcomes() {
				// Cases speak Entra's answers there: Retry for no rule matched, Block.
				d := *out.Decision
				d.Action = entra.Action(entra.PasswordSubmitAnswer(d.Action))
				out.Decision = &d
			}
			res.Outcome = out
			res.Problems = check(c.Expect, out)
			for _, name := range out.Unstubbed {
				res.Problems = append(res.Problems, fmt.Sprintf("no stub for call %s in the test case: add calls.%s (a response, error or timeout); test cases never reach the network", name, name))
			}
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
	canonical, err := json.Marshal(claims) // encoding/json sorts map keys, as the server does
	if err != nil {
		return nil, err
	}
	return EvalRequest(conn, resolve, entra.NewRequest(claims, canonical), stubs)
}

// EvalRequest is Eval for a decoded request (legacy or extension).
func EvalRequest(conn *v1alpha1.APIConnector, resolve rules.ListResolver, req *entra.Request, stubs map[string]CallStub) (*Outcome, error) {
	tr := &stubTransport{stubs: stubs}
	eng, err := rules.Compile(conn, rules.Options{
		HTTPClient: &http.Client{Transport: tr},
		// Dummy credentials so calls and events with auth take the same path as in production.
		Secrets: func(kind, name string) (map[string][]byte, error) {
			return map[string][]byte{"username": []byte("test"), "password": []byte("test"), "token": []byte("test")}, nil
		},
		SecretKeys:    func(v1alpha1.SecretKeySelector) ([]byte, error) { return []byte("test"), nil },
		ResolveList:   resolve,
		EventAttempts: 1,
		// Test cases are written by the connector's author: show errors in full.
		ErrorDetail: true,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), eng.Timeout()+5*time.Second)
	defer cancel()
	d, err := eng.Evaluate(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := eng.Close(ctx); err != nil { // deliver async events to the capture
		return nil, err
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	sort.Slice(tr.events, func(i, j int) bool { return tr.events[i].Name < tr.events[j].Name })
	return &Outcome{Decision: d, Calls: tr.calls, Events: tr.events, Unstubbed: tr.unstubbed}, nil
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
	if want.ClaimValues != nil || (want.Claims != nil && len(d.ClaimValues) > 0) {
		wantVals, _ := normalize(want.ClaimValues)
		gotVals, err := normalize(d.ClaimValues)
		if err != nil {
			p = append(p, "claimValues: "+err.Error())
		}
		for k, v := range wantVals {
			if g, ok := gotVals[k]; !ok || !reflect.DeepEqual(g, v) {
				p = append(p, fmt.Sprintf("claim %s: got %s, want %s", k, jsonText(g), jsonText(v)))
			}
		}
		for k, v := range gotVals {
			if _, ok := wantVals[k]; !ok {
				p = append(p, fmt.Sprintf("claim %s: got %s, want none", k, jsonText(v)))
			}
		}
	}
	if want.AttributeErrors != nil && !maps.Equal(want.AttributeErrors, d.AttributeErrors) &&
		(len(want.AttributeErrors) > 0 || len(d.AttributeErrors) > 0) {
		p = append(p, fmt.Sprintf("attributeErrors: got %v, want %v", d.AttributeErrors, want.AttributeErrors))
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
	if want.AuditMatches != nil {
		got := auditMatches(d)
		if !slices.Equal(got, want.AuditMatches) {
			p = append(p, fmt.Sprintf("auditMatches: got %v, want %v", got, want.AuditMatches))
		}
	}
	if d.Failure != "" && want.Failure == nil && d.Action == entra.ActionShowBlockPage && want.Action != entra.ActionShowBlockPage {
		p = append(p, "failure: "+d.Failure)
	}
	return p
}

// auditMatches are the names of the audited rules that matched (not those that failed).
func auditMatches(d *entra.Decision) []string {
	out := []string{}
	for _, a := range d.Audits {
		if a.Outcome != entra.AuditError {
			out = append(out, a.Rule)
		}
	}
	return out
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// BuildRequest turns a case into the request the server would decode for step: the claims as
// the body at the legacy steps; at the extension steps the case's request envelope, or one built
// from its claims and context (BuildEnvelope), decoded by the server's decoder.
func BuildRequest(step v1alpha1.Step, c Case) (*entra.Request, error) {
	if !step.IsExtension() {
		if c.Request != nil || c.Context != nil {
			return nil, fmt.Errorf("request and context are only for custom authentication extension steps, not %s", step)
		}
		canonical, err := json.Marshal(c.Claims)
		if err != nil {
			return nil, err
		}
		return entra.NewRequest(c.Claims, canonical), nil
	}
	env := c.Request
	if env == nil {
		var err error
		if env, err = BuildEnvelope(string(step), c.Claims, c.Context); err != nil {
			return nil, err
		}
	} else if len(c.Claims) > 0 || c.Context != nil {
		return nil, errors.New("a case sets either request or claims and context")
	}
	body, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	req, err := entra.DecodeExtensionRequest(body, string(step))
	if err != nil {
		return nil, err
	}
	if c.Credentials != nil {
		if step != v1alpha1.StepOnPasswordSubmit {
			return nil, fmt.Errorf("credentials are only for step OnPasswordSubmit, not %s", step)
		}
		req.Extension.Sensitive = entra.Sensitive(c.Credentials)
		req.Extension.EncryptedPasswordContext, req.Extension.Nonce = "", TestNonce
	}
	return req, nil
}

// TestNonce is the password context nonce of test cases at OnPasswordSubmit.
const TestNonce = "test-nonce"

// Fixed identifiers of built envelopes, so event ids are stable across runs.
const (
	TestTenantID = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
	TestAppID    = "00001111-aaaa-2222-bbbb-3333cccc4444"
)

// BuildEnvelope builds the custom authentication extension request of step carrying claims:
// at the attribute collection events each claim becomes an attribute of
// data.userSignUpInfo.attributes, typed from its value (a string or list of strings is a
// stringDirectoryAttributeValue, an integer an int64DirectoryAttributeValue, a boolean a
// booleanDirectoryAttributeValue; custom attributes extension_* are directorySchemaExtension,
// others builtIn) and identities becomes data.userSignUpInfo.identities; at OnTokenIssuanceStart
// the claims are authenticationContext.user; at OnOtpSend they are data.otpContext (identifier,
// oneTimeCode). context is merged over a default
// authenticationContext (top-level keys replace the defaults).
func BuildEnvelope(step string, claims, context map[string]any) (map[string]any, error) {
	if !entra.IsExtensionStep(step) {
		return nil, fmt.Errorf("step %s is not a custom authentication extension event", step)
	}
	authCtx := map[string]any{
		"correlationId": "00000000-0000-0000-0000-0000000000c0",
		"client":        map[string]any{"ip": "203.0.113.10", "locale": "en-us", "market": "en-us"},
		"protocol":      "OAUTH2.0",
		"clientServicePrincipal": map[string]any{
			"id": "00000000-0000-0000-0000-0000000000a1", "appId": TestAppID,
			"appDisplayName": "Test application", "displayName": "Test application",
		},
		"resourceServicePrincipal": map[string]any{
			"id": "00000000-0000-0000-0000-0000000000a1", "appId": TestAppID,
			"appDisplayName": "Test application", "displayName": "Test application",
		},
	}
	for k, v := range context {
		authCtx[k] = v
	}
	data := map[string]any{
		"@odata.type":                     entra.CalloutType(step),
		"tenantId":                        TestTenantID,
		"authenticationEventListenerId":   "00000000-0000-0000-0000-0000000000e1",
		"customAuthenticationExtensionId": "00000000-0000-0000-0000-0000000000e2",
		"authenticationContext":           authCtx,
	}
	switch step {
	case entra.StepTokenIssuanceStart, entra.StepPasswordSubmit:
		if _, set := context["user"]; !set && claims != nil {
			authCtx["user"] = claims
		}
		if step == entra.StepPasswordSubmit {
			data["encryptedPasswordContext"] = "the.test.runner.does.not.encrypt" // see Case.Credentials
		}
	case entra.StepOtpSend:
		data["otpContext"] = claims
	default:
		attrs := map[string]any{}
		info := map[string]any{"attributes": attrs}
		for name, v := range claims {
			if name == "identities" {
				info["identities"] = v
				continue
			}
			typ, err := odataTypeOf(v)
			if err != nil {
				return nil, fmt.Errorf("claim %s: %w", name, err)
			}
			kind := "builtIn"
			if strings.HasPrefix(name, "extension_") {
				kind = "directorySchemaExtension"
			}
			attrs[name] = map[string]any{"@odata.type": typ, "value": v, "attributeType": kind}
		}
		data["userSignUpInfo"] = info
	}
	return map[string]any{
		"type":   entra.EventType(step),
		"source": "/tenants/" + TestTenantID + "/applications/" + TestAppID,
		"data":   data,
	}, nil
}

func odataTypeOf(v any) (string, error) {
	switch t := v.(type) {
	case string:
		return "microsoft.graph.stringDirectoryAttributeValue", nil
	case bool:
		return "microsoft.graph.booleanDirectoryAttributeValue", nil
	case float64:
		if t == math.Trunc(t) && math.Abs(t) < 1<<53 {
			return "microsoft.graph.int64DirectoryAttributeValue", nil
		}
		return "", errors.New("numbers must be integers (int64 attributes)")
	case int64, int:
		return "microsoft.graph.int64DirectoryAttributeValue", nil
	case []any:
		return "microsoft.graph.stringDirectoryAttributeValue", nil
	}
	return "", fmt.Errorf("cannot be an attribute value: %T", v)
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
			case len(d.Claims)+len(d.ClaimValues) > 0:
				detail = fmt.Sprintf("%d claims", len(d.Claims)+len(d.ClaimValues))
			}
			if a := auditDetail(d); a != "" {
				detail = strings.TrimPrefix(detail+"; "+a, "; ")
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

// auditDetail describes what audited rules found, for the table: "audit: r1 (ShowBlockPage),
// r2 (Error)", and with the connector in Audit what it would have answered.
func auditDetail(d *entra.Decision) string {
	var parts []string
	for _, a := range d.Audits {
		parts = append(parts, fmt.Sprintf("%s (%s)", a.Rule, a.Outcome))
	}
	out := ""
	if len(parts) > 0 {
		out = "audit: " + strings.Join(parts, ", ")
	}
	if a := d.Audited; a != nil {
		would := "connector in Audit, would answer " + string(a.Action)
		if a.Failure != "" {
			would += " (failure: " + a.Failure + ")"
		}
		out = strings.TrimPrefix(out+"; "+would, "; ")
	}
	return out
}

// stubTransport answers calls from stubs by call name and captures events.
type stubTransport struct {
	stubs     map[string]CallStub
	mu        sync.Mutex
	calls     []CapturedCall
	events    []CapturedEvent
	unstubbed []string
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
		if !slices.Contains(t.unstubbed, target.Name) {
			t.unstubbed = append(t.unstubbed, target.Name)
		}
		return nil, fmt.Errorf("no stub for call %s", target.Name)
	}
	if stub.Error != "" {
		return nil, fmt.Errorf("%s", stub.Error)
	}
	if stub.Timeout {
		// A service that never answers: the call's own timeout (or the deadline) ends it.
		t.mu.Unlock()
		<-req.Context().Done()
		t.mu.Lock()
		return nil, req.Context().Err()
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
