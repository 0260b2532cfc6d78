package rules_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

const (
	otpCode    = "48213507"
	otpAddress = "ada.lovelace@fabrikam.example"
)

func otpRequest(t *testing.T) *entra.Request {
	t.Helper()
	body := `{"type":"microsoft.graph.authenticationEvent.emailOtpSend","source":"/tenants/t/applications/a",
	"data":{"@odata.type":"microsoft.graph.onOtpSendCalloutData","otpContext":{"identifier":"` + otpAddress + `","oneTimeCode":"` + otpCode + `"},
	"authenticationContext":{"correlationId":"c0","requestType":"signUp","client":{"locale":"fr-fr"}}}}`
	req, err := entra.DecodeExtensionRequest([]byte(body), entra.StepOtpSend)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// mailServer records what it receives: the e-mail API of the OnOtpSend sample, and an event sink.
type mailServer struct {
	mu       sync.Mutex
	status   int
	received []string // method, URL and body of each request
}

func (m *mailServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	m.mu.Lock()
	m.received = append(m.received, r.Method+" "+r.URL.String()+" "+string(b))
	status := m.status
	m.mu.Unlock()
	if status == 0 {
		status = http.StatusAccepted
	}
	w.WriteHeader(status)
}

// At OnOtpSend the code and the address reach the e-mail call's body, and nothing else: not the
// event, not the decision, not the logs, not the errors, even with ErrorDetail on.
func TestOtpSendValuesOnlyReachCalls(t *testing.T) {
	mail, sink, failing := &mailServer{}, &mailServer{}, &mailServer{status: http.StatusInternalServerError}
	mailSrv, sinkSrv, failingSrv := httptest.NewServer(mail), httptest.NewServer(sink), httptest.NewServer(failing)
	defer mailSrv.Close()
	defer sinkSrv.Close()
	defer failingSrv.Close()
	down := httptest.NewServer(mail)
	down.Close() // nothing listens: a transport error, which quotes the URL and its query
	var logs bytes.Buffer
	conn := parseExt(t, `  step: OnOtpSend
  calls:
  - name: mail
    url: `+mailSrv.URL+`/send
    body: "{'to': otp.identifier, 'code': otp.oneTimeCode, 'locale': context.client.locale}"
    timeout: 1s
  - name: lookup
    url: `+failingSrv.URL+`/lookup
    method: GET
    body: "{'to': otp.identifier, 'code': otp.oneTimeCode}"
    when: context.requestType == 'signIn'
    failurePolicy: Ignore
  - name: lookupDown
    url: `+down.URL+`/lookup
    method: GET
    body: "{'to': otp.identifier, 'code': otp.oneTimeCode}"
    when: context.requestType == 'signIn'
    failurePolicy: Ignore
  - name: broken
    url: `+mailSrv.URL+`/broken
    body: "{'n': int(otp.oneTimeCode + otp.identifier)}"
    when: context.requestType == 'broken'
    failurePolicy: Ignore
  events:
  - name: otp-sent
    sink: {url: `+sinkSrv.URL+`/events}
    delivery: Sync
`)
	e, err := rules.Compile(conn, rules.Options{EgressAllow: loopback, ErrorDetail: true, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())

	d, err := e.Evaluate(context.Background(), otpRequest(t))
	if err != nil || d.Action != entra.ActionContinue || d.Failure != "" {
		t.Fatalf("%+v %v", d, err)
	}
	var sent map[string]string
	if len(mail.received) != 1 || json.Unmarshal([]byte(strings.SplitN(mail.received[0], " ", 3)[2]), &sent) != nil ||
		sent["to"] != otpAddress || sent["code"] != otpCode || sent["locale"] != "fr-fr" {
		t.Fatalf("the e-mail API received %q", mail.received)
	}
	if len(sink.received) != 1 {
		t.Fatalf("events %q", sink.received)
	}

	// A GET call whose query holds the code fails (the server answers 500), and an expression
	// over the values fails to convert: neither error shows a value.
	for _, requestType := range []string{"signIn", "broken"} {
		req := otpRequest(t)
		req.Extension.Context["requestType"] = requestType
		d, err = e.Evaluate(context.Background(), req)
		if err != nil || d.Failure == "" || (requestType == "signIn" && !strings.Contains(d.Failure, "call lookupDown")) {
			t.Fatalf("%s: %+v %v", requestType, d, err)
		}
		t.Logf("%s: %s", requestType, d.Failure)
	}
	if len(failing.received) != 1 || !strings.Contains(failing.received[0], otpCode) {
		t.Errorf("the GET call did not carry the code in its query: %q", failing.received)
	}
	mailSrv.Close() // the e-mail API is down: Fail answers the fail-closed decision
	d, _ = e.Evaluate(context.Background(), otpRequest(t))
	if d.Action != entra.ActionShowBlockPage || !strings.Contains(d.Failure, "call mail") {
		t.Errorf("e-mail API down: %+v", d)
	}

	everything := strings.Join(sink.received, "\n") + logs.String() + d.Failure + d.UserMessage
	for _, secret := range []string{otpCode, otpAddress, "fabrikam"} {
		if strings.Contains(everything, secret) {
			t.Errorf("%s leaked:\n%s", secret, everything)
		}
	}
}

// otp is for calls only, and only at OnOtpSend; the step returns no claims and has no rules.
func TestOtpSendCompileErrors(t *testing.T) {
	for _, tt := range []struct{ spec, path, reason string }{
		{"  step: OnOtpSend\n  rules:\n  - {name: r, when: \"otp.oneTimeCode == '1'\", block: {message: m}}\n", "spec.rules[0].when", "undeclared reference to 'otp'"},
		{"  step: OnOtpSend\n  rules:\n  - {name: r, when: 'true', block: {message: m}}\n", "spec.rules[0].block", "not allowed at step OnOtpSend"},
		{"  step: OnOtpSend\n  claims: {c: \"'x'\"}\n", "spec.claims", "claims are not allowed at step OnOtpSend"},
		{"  step: OnOtpSend\n  events:\n  - {name: e, sink: {url: 'https://s.example'}, data: '{\"c\": otp.oneTimeCode}'}\n", "spec.events[0].data", "undeclared reference to 'otp'"},
		{"  step: OnTokenIssuanceStart\n  calls:\n  - {name: c, url: 'https://s.example', body: '{\"c\": otp.oneTimeCode}'}\n", "spec.calls[0].body", "otp is not available at step OnTokenIssuanceStart"},
	} {
		_, err := rules.Compile(parseExt(t, tt.spec), rules.Options{})
		wantFieldError(t, err, tt.path, tt.reason)
	}
}
