package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

const (
	pac = v1alpha1.StepPostAttributeCollection
	pfs = v1alpha1.StepPostFederationSignup

	badPAC = `{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"The request could not be processed."}`
	badPFS = `{"version":"1.0.0","status":400,"userMessage":"The request could not be processed."}`
)

func TestConnectorAnswers(t *testing.T) {
	sleepy := evalFunc(func(ctx context.Context, _ *entra.Request) (*entra.Decision, error) {
		time.Sleep(300 * time.Millisecond) // ignores ctx on purpose: the server must not wait
		return &entra.Decision{Action: entra.ActionContinue}, nil
	})
	failing := evalFunc(func(context.Context, *entra.Request) (*entra.Decision, error) { return nil, errTest })
	panicking := evalFunc(func(context.Context, *entra.Request) (*entra.Decision, error) { panic("kaboom") })
	nilDecision := evalFunc(func(context.Context, *entra.Request) (*entra.Decision, error) { return nil, nil })
	validation := evalFunc(func(context.Context, *entra.Request) (*entra.Decision, error) {
		return &entra.Decision{Action: entra.ActionValidationError, UserMessage: "Bad postal code.", Rule: "postal"}, nil
	})
	// Prompt evaluators run inline: a panic is still recovered, and an answer that arrives after
	// the deadline is not used.
	promptPanicking := promptFunc{panicking}
	promptLate := promptFunc{evalFunc(func(ctx context.Context, _ *entra.Request) (*entra.Decision, error) {
		<-ctx.Done()
		return &entra.Decision{Action: entra.ActionContinue}, nil
	})}
	block := `{"version":"1.0.0","action":"ShowBlockPage","userMessage":"Sorry, try later."}`
	cont := `{"version":"1.0.0","action":"Continue"}`

	for _, tc := range []struct {
		name        string
		conn        *v1alpha1.APIConnector
		ev          entra.Evaluator
		method, ct  string
		body        string
		code        int
		want        string // exact body; "" means empty
		wantHeaders map[string]string
	}{
		{name: "continue with claims, email never returned", conn: basicConnector(pac), ev: continueEval,
			body: `{"email":"a@b.c","city":"Seattle"}`, code: 200,
			want: `{"version":"1.0.0","action":"Continue","city":"SEATTLE"}`},
		{name: "charset param ok", conn: basicConnector(pac), ev: continueEval, ct: "application/json; charset=UTF-8",
			body: `{}`, code: 200, want: cont},
		{name: "GET is 405", conn: basicConnector(pac), ev: continueEval, method: http.MethodGet, code: 405,
			want:        `{"version":"1.0.0","status":405,"userMessage":"The request could not be processed."}`,
			wantHeaders: map[string]string{"Allow": "POST"}},
		{name: "PUT is 405", conn: basicConnector(pac), ev: continueEval, method: http.MethodPut, body: `{}`, code: 405,
			want: `{"version":"1.0.0","status":405,"userMessage":"The request could not be processed."}`},
		{name: "text/plain is 415", conn: basicConnector(pac), ev: continueEval, ct: "text/plain", body: `{}`, code: 415,
			want: `{"version":"1.0.0","status":415,"userMessage":"The request could not be processed."}`},
		{name: "no content type is 415", conn: basicConnector(pac), ev: continueEval, ct: "-", body: `{}`, code: 415,
			want: `{"version":"1.0.0","status":415,"userMessage":"The request could not be processed."}`},
		{name: "latin1 charset is 415", conn: basicConnector(pac), ev: continueEval, ct: "application/json; charset=iso-8859-1",
			body: `{}`, code: 415, want: `{"version":"1.0.0","status":415,"userMessage":"The request could not be processed."}`},
		{name: "body over limit is 413", conn: basicConnector(pac), ev: continueEval,
			body: `{"x":"` + strings.Repeat("a", 2048) + `"}`, code: 413,
			want: `{"version":"1.0.0","status":413,"userMessage":"The request could not be processed."}`},
		{name: "malformed JSON at PAC", conn: basicConnector(pac), ev: continueEval, body: `{"email":`, code: 400, want: badPAC},
		{name: "malformed JSON at PFS", conn: basicConnector(pfs), ev: continueEval, body: `{"email":`, code: 400, want: badPFS},
		{name: "array body", conn: basicConnector(pac), ev: continueEval, body: `[{"email":"a@b.c"}]`, code: 400, want: badPAC},
		{name: "empty body", conn: basicConnector(pac), ev: continueEval, body: ``, code: 400, want: badPAC},
		{name: "duplicate key", conn: basicConnector(pac), ev: continueEval, body: `{"city":"a","city":"b"}`, code: 400, want: badPAC},
		{name: "email not a string", conn: basicConnector(pac), ev: continueEval, body: `{"email":42}`, code: 400, want: badPAC},
		{name: "identities not an array", conn: basicConnector(pfs), ev: continueEval, body: `{"identities":"x"}`, code: 400, want: badPFS},
		{name: "identity issuer not a string", conn: basicConnector(pac), ev: continueEval,
			body: `{"identities":[{"issuer":false}]}`, code: 400, want: badPAC},
		{name: "panic, Fail", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyFail, 0), ev: panicking,
			body: `{}`, code: 200, want: block},
		{name: "panic, Ignore", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyIgnore, 0), ev: panicking,
			body: `{}`, code: 200, want: cont},
		{name: "error, Fail", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyFail, 0), ev: failing,
			body: `{}`, code: 200, want: block},
		{name: "error, Ignore", conn: withPolicy(basicConnector(pfs), v1alpha1.FailurePolicyIgnore, 0), ev: failing,
			body: `{}`, code: 200, want: cont},
		{name: "error, default policy and message", conn: basicConnector(pac), ev: failing, body: `{}`, code: 200,
			want: `{"version":"1.0.0","action":"ShowBlockPage","userMessage":"We can't complete your sign-up right now. Please try again later."}`},
		{name: "deadline, Fail", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyFail, 50*time.Millisecond), ev: sleepy,
			body: `{}`, code: 200, want: block},
		{name: "deadline, Ignore", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyIgnore, 50*time.Millisecond), ev: sleepy,
			body: `{}`, code: 200, want: cont},
		{name: "prompt evaluator panics, Fail", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyFail, 0), ev: promptPanicking,
			body: `{}`, code: 200, want: block},
		{name: "prompt evaluator answers after the deadline, Fail", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyFail, 50*time.Millisecond),
			ev: promptLate, body: `{}`, code: 200, want: block},
		{name: "prompt evaluator answers after the deadline, Ignore", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyIgnore, 50*time.Millisecond),
			ev: promptLate, body: `{}`, code: 200, want: cont},
		{name: "nil decision fails closed", conn: withPolicy(basicConnector(pac), v1alpha1.FailurePolicyFail, 0), ev: nilDecision,
			body: `{}`, code: 200, want: block},
		{name: "ValidationError at PAC", conn: basicConnector(pac), ev: validation, body: `{}`, code: 400,
			want: `{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"Bad postal code."}`},
		{name: "ValidationError at PFS is downgraded", conn: basicConnector(pfs), ev: validation, body: `{}`, code: 200,
			want: `{"version":"1.0.0","action":"ShowBlockPage","userMessage":"Bad postal code."}`},
		// B2C's token step has no block page: failing closed is an error status, never a token.
		{name: "continue with claims at PreTokenIssuance", conn: basicConnector(v1alpha1.StepPreTokenIssuance), ev: continueEval,
			body: `{"step":"PreTokenApplicationClaims","city":"Seattle"}`, code: 200, want: `{"version":"1.0.0","action":"Continue","city":"SEATTLE"}`},
		{name: "error at PreTokenIssuance, Fail", conn: withPolicy(basicConnector(v1alpha1.StepPreTokenIssuance), v1alpha1.FailurePolicyFail, 0), ev: failing,
			body: `{}`, code: 500, want: `{"version":"1.0.0","status":500,"userMessage":"Sorry, try later."}`},
		{name: "error at PreTokenIssuance, Ignore", conn: withPolicy(basicConnector(v1alpha1.StepPreTokenIssuance), v1alpha1.FailurePolicyIgnore, 0), ev: failing,
			body: `{}`, code: 200, want: cont},
		{name: "ValidationError at PreTokenIssuance is an error status", conn: basicConnector(v1alpha1.StepPreTokenIssuance), ev: validation,
			body: `{}`, code: 500, want: `{"version":"1.0.0","status":500,"userMessage":"Bad postal code."}`},
		{name: "malformed JSON at PreTokenIssuance", conn: basicConnector(v1alpha1.StepPreTokenIssuance), ev: continueEval, body: `{"email":`, code: 400,
			want: `{"version":"1.0.0","status":400,"userMessage":"The request could not be processed."}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := start(t, newServer(t, tc.conn, tc.ev, Options{SecretsDir: basicSecrets(t, testUser, testPass), MaxBody: 1024}))
			method, ct := tc.method, tc.ct
			if method == "" {
				method = http.MethodPost
			}
			switch ct {
			case "":
				ct = "application/json"
			case "-":
				ct = ""
			}
			begin := time.Now()
			res := do(t, ts.client, method, ts.url+"/default/signup", ct, tc.body, basicHeader(testUser, testPass))
			if res.code != tc.code || res.body != tc.want {
				t.Errorf("got %d %s\nwant %d %s", res.code, res.body, tc.code, tc.want)
			}
			if res.body != "" && !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type = %q", res.header.Get("Content-Type"))
			}
			for k, v := range tc.wantHeaders {
				if got := res.header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if res.header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			if d := time.Since(begin); d > 250*time.Millisecond && strings.HasPrefix(tc.name, "deadline") {
				t.Errorf("deadline answer took %v", d)
			}
		})
	}
}

func TestDeterministicRetry(t *testing.T) {
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: basicSecrets(t, testUser, testPass)}))
	body := `{"city":"Oslo","extension_abc_n":1,"identities":[{"issuer":"x"}]}`
	first := ts.post(t, body)
	for range 5 {
		if again := ts.post(t, body); again.code != first.code || again.body != first.body {
			t.Fatalf("retry answered %d %s, first %d %s", again.code, again.body, first.code, first.body)
		}
	}
}

func TestChunkedBodyOverLimit(t *testing.T) {
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: basicSecrets(t, testUser, testPass), MaxBody: 100}))
	// An io.Reader of unknown length makes the client send chunked, without Content-Length.
	pr := strings.NewReader(`{"x":"` + strings.Repeat("a", 500) + `"}`)
	req, _ := http.NewRequest(http.MethodPost, ts.url, struct{ *strings.Reader }{pr})
	req.Header.Set("Content-Type", "application/json")
	for k, v := range basicHeader(testUser, testPass) {
		req.Header.Set(k, v)
	}
	res, err := ts.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge || req.ContentLength != 0 {
		t.Errorf("status %d (content length %d)", res.StatusCode, req.ContentLength)
	}
}

func TestRequestIDValidated(t *testing.T) {
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: basicSecrets(t, testUser, testPass)}))
	h := basicHeader(testUser, testPass)
	h["X-Request-Id"] = "abc-123.x_y:z"
	if res := do(t, ts.client, "POST", ts.url, "application/json", `{}`, h); res.header.Get("X-Request-Id") != "abc-123.x_y:z" {
		t.Errorf("valid id not honoured: %q", res.header.Get("X-Request-Id"))
	}
	h["X-Request-Id"] = "evil\" injected=1"
	if res := do(t, ts.client, "POST", ts.url, "application/json", `{}`, h); strings.Contains(res.header.Get("X-Request-Id"), "evil") {
		t.Errorf("invalid id honoured: %q", res.header.Get("X-Request-Id"))
	}
}

// Every line a request logs carries its request_id and step, so its warnings can be matched with
// its request line.
func TestRequestLogLinesCarryIDAndStep(t *testing.T) {
	var buf syncBuffer
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{
		SecretsDir: basicSecrets(t, testUser, testPass), Logger: jsonLogger(&buf)}))
	h := basicHeader(testUser, testPass)
	h["X-Request-Id"] = "req-42"
	if res := do(t, ts.client, "POST", ts.url, "application/json", `{"email":`, h); res.code != http.StatusBadRequest {
		t.Fatalf("status %d", res.code)
	}
	if err := ts.stop(t); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var line map[string]any
		if json.Unmarshal([]byte(l), &line) != nil || (line["msg"] != "request" && line["msg"] != "request refused") {
			continue
		}
		seen[line["msg"].(string)] = true
		if line["request_id"] != "req-42" || line["step"] != string(pac) {
			t.Errorf("line without the request's id and step: %s", l)
		}
	}
	if !seen["request"] || !seen["request refused"] {
		t.Errorf("lines missing (%v):\n%s", seen, buf.String())
	}
}

func TestLogsCarryNoClaimsByDefault(t *testing.T) {
	for _, logClaims := range []bool{false, true} {
		var buf syncBuffer
		ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{
			SecretsDir: basicSecrets(t, testUser, testPass), Logger: jsonLogger(&buf), LogClaims: logClaims}))
		ts.post(t, `{"city":"Trondheim","email":"person@example.com"}`)
		if err := ts.stop(t); err != nil {
			t.Fatal(err)
		}
		logs := buf.String()
		for _, secret := range []string{"Trondheim", "person@example.com", "TRONDHEIM"} {
			if strings.Contains(logs, secret) != logClaims {
				t.Errorf("logClaims=%v: claim %q in logs = %v\n%s", logClaims, secret, !logClaims, logs)
			}
		}
		for _, never := range []string{testPass, "leak@example.com"} {
			if strings.Contains(logs, never) {
				t.Errorf("logs contain %q", never)
			}
		}
		var line map[string]any
		found := false
		for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
			if json.Unmarshal([]byte(l), &line) == nil && line["msg"] == "request" {
				found = true
				for _, k := range []string{"request_id", "step", "action", "code", "latency_ms"} {
					if _, ok := line[k]; !ok {
						t.Errorf("request log lacks %s: %s", k, l)
					}
				}
			}
		}
		if !found {
			t.Errorf("no request log line:\n%s", logs)
		}
	}
}
