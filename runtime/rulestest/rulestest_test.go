package rulestest

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRunnerReportsFailuresAndCapturesCalls(t *testing.T) {
	dir := t.TempDir()
	cases := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cases, []byte(`
connector: identity-verification
cases:
  - name: wrong expectation
    claims: {surname: Lovelace, email: ada@fabrikam.example}
    calls:
      verify: {body: {verified: true}}
    expect:
      action: ShowBlockPage
      claims: {other: x}
  - name: missing stub fails closed
    claims: {email: a@b.example}
    expect: {action: Continue}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	results, err := RunFile([]string{"../../config/samples/identity-verification.yaml"}, cases)
	if err != nil {
		t.Fatal(err)
	}
	if Passed(results) || len(results) != 2 {
		t.Fatalf("want 2 failing results, got %+v", results)
	}
	p := strings.Join(results[0].Problems, "\n")
	for _, want := range []string{"action: got Continue, want ShowBlockPage", `claim other: got "", want "x"`, `claim extension_IdentityVerified: got "true", want none`} {
		if !strings.Contains(p, want) {
			t.Errorf("problems lack %q:\n%s", want, p)
		}
	}
	if !strings.Contains(strings.Join(results[1].Problems, "\n"), "no stub for call verify") {
		t.Errorf("problems: %v", results[1].Problems)
	}
	calls := results[0].Outcome.Calls
	if len(calls) != 1 || calls[0].Method != "POST" || calls[0].Header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(calls[0].Header.Get("Authorization"), "Basic ") || !strings.Contains(calls[0].Body, `"surname":"Lovelace"`) {
		t.Errorf("captured call %+v", calls)
	}
	var buf bytes.Buffer
	PrintTable(&buf, results)
	if !strings.Contains(buf.String(), "0 passed, 2 failed") {
		t.Errorf("table:\n%s", buf.String())
	}
}

func TestUnknownCaseFieldIsAnError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("cases:\n- name: x\n  expect: {action: Continue, claimz: {}}\n"), 0o600)
	if _, err := LoadCases(p); err == nil || !strings.Contains(err.Error(), "claimz") {
		t.Errorf("got %v", err)
	}
}

// Calls and sinks with values from Secrets run in tests like calls with auth: the values are the
// stand-in "test", sent where production sends the real ones.
func TestSecretValuesAreStoodIn(t *testing.T) {
	dir := t.TempDir()
	conn := filepath.Join(dir, "c.yaml")
	os.WriteFile(conn, []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: fn, namespace: identity}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: entra-basic}}}
  exposure: {host: signup.contoso.example}
  calls:
  - name: approve
    url: https://approvals.contoso.example/api/approve?tenant=contoso
    secretHeaders:
    - {name: x-functions-key, valueFrom: {secretKeyRef: {name: approvals-key, key: key}}}
    secretQueryParams:
    - {name: code, valueFrom: {secretKeyRef: {name: approvals-key, key: code}}}
  rules:
  - {name: denied, when: "!calls.approve.body.approved", block: {message: Not approved.}}
`), 0o600)
	cases := filepath.Join(dir, "cases.yaml")
	os.WriteFile(cases, []byte(`cases:
- name: approved
  claims: {email: ada@fabrikam.example}
  calls: {approve: {body: {approved: true}}}
  expect: {action: Continue}
`), 0o600)
	results, err := RunFile([]string{conn}, cases)
	if err != nil {
		t.Fatal(err)
	}
	if !Passed(results) {
		t.Fatalf("%+v", results[0].Problems)
	}
	calls := results[0].Outcome.Calls
	if len(calls) != 1 || calls[0].Header.Get("X-Functions-Key") != "test" ||
		calls[0].URL != "https://approvals.contoso.example/api/approve?code=test&tenant=contoso" {
		t.Errorf("captured call %+v", calls)
	}
}

func TestAuditMatchesAreCheckedAndShown(t *testing.T) {
	dir := t.TempDir()
	conn := filepath.Join(dir, "conn.yaml")
	os.WriteFile(conn, []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: c, namespace: ns}
spec:
  step: PostAttributeCollection
  enforcement: Audit
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
  rules:
  - name: audited
    enforcement: Audit
    when: "claims.email.endsWith('.test')"
    block: {message: m}
  - name: enforced
    when: "claims.email.startsWith('x')"
    block: {message: m}
`), 0o600)
	cases := filepath.Join(dir, "c.yaml")
	os.WriteFile(cases, []byte(`cases:
- name: both would match
  claims: {email: x@a.test}
  expect: {action: Continue, auditMatches: [audited, enforced]}
- name: wrong expectation
  claims: {email: x@a.example}
  expect: {action: Continue, auditMatches: []}
`), 0o600)
	results, err := RunFile([]string{conn}, cases)
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Passed || results[1].Passed {
		t.Fatalf("results: %+v", results)
	}
	if p := strings.Join(results[1].Problems, "; "); p != "auditMatches: got [enforced], want []" {
		t.Errorf("problems: %s", p)
	}
	var buf bytes.Buffer
	PrintTable(&buf, results[:1])
	if !strings.Contains(buf.String(), "audit: audited (ShowBlockPage), enforced (ShowBlockPage); connector in Audit, would answer ShowBlockPage") {
		t.Errorf("table:\n%s", buf.String())
	}
}

func TestRunFileRefusesEmptyInputAndCompilesEveryConnector(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: good, namespace: ns}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
`)
	// No case names this one; it must still compile.
	bad := write("bad.yaml", `apiVersion: v1
kind: Secret
metadata: {name: s}
---
apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: bad, namespace: ns}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
  rules:
  - name: typo
    when: "claims.email.endsWth('x')"
    block: {message: m}
`)
	noConnector := write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n")
	cases := write("c.yaml", "connector: good\ncases:\n- name: continues\n  expect: {action: Continue}\n")
	empty := write("empty.yaml", "cases: []\n")

	if _, err := RunFile([]string{good}, cases); err != nil {
		t.Fatalf("good: %v", err)
	}
	for _, tc := range []struct {
		manifests []string
		cases     string
		want      string
	}{
		{[]string{noConnector}, cases, "no APIConnector in " + noConnector},
		{[]string{good}, empty, empty + " has no cases"},
		{[]string{good, bad}, cases, bad + ` (document 2): APIConnector ns/bad: spec.rules[0].when (rule "typo"): 1:21: undeclared reference to 'endsWth'`},
	} {
		_, err := RunFile(tc.manifests, tc.cases)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %s: got %v, want ...%s...", tc.manifests, tc.cases, err, tc.want)
		}
	}
}

func TestParseStub(t *testing.T) {
	for arg, want := range map[string]CallStub{
		`a=200:{"ok":true}`: {Status: 200, Body: map[string]any{"ok": true}},
		`a=502`:             {Status: 502},
		`a=200:<html>`:      {Status: 200, Body: "<html>"},
		`a=timeout`:         {Timeout: true},
		`a=error`:           {Error: "connection refused"},
		`a=error:reset`:     {Error: "reset"},
	} {
		name, got, err := ParseStub(arg)
		if err != nil || name != "a" || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %s %+v %v, want %+v", arg, name, got, err, want)
		}
	}
	for _, bad := range []string{"a", "=200", "a=", "a=ok", "a=99", "a=timeout:1s"} {
		if _, _, err := ParseStub(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestStubsInCases(t *testing.T) {
	dir := t.TempDir()
	conn := filepath.Join(dir, "conn.yaml")
	os.WriteFile(conn, []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: c, namespace: ns}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
  calls:
  - name: risk
    url: https://risk.contoso.example/score
    timeout: 100ms
    failurePolicy: Ignore
  rules:
  - name: risky
    when: "calls.risk.status == 200 && calls.risk.body.score > 50"
    block: {message: m}
`), 0o600)
	cases := filepath.Join(dir, "c.yaml")
	os.WriteFile(cases, []byte(`cases:
- name: risky
  calls: {risk: {body: {score: 90}}}
  expect: {action: ShowBlockPage, rule: risky}
- name: timeout is ignored
  calls: {risk: {timeout: true}}
  expect: {action: Continue, failure: "deadline exceeded"}
- name: unstubbed passes the expectation but fails the case
  expect: {action: Continue, failure: "no stub"}
`), 0o600)
	results, err := RunFile([]string{conn}, cases)
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Passed || !results[1].Passed || results[2].Passed {
		t.Fatalf("results: %+v", results)
	}
	if p := strings.Join(results[2].Problems, "; "); !strings.Contains(p, "no stub for call risk in the test case: add calls.risk") {
		t.Errorf("problems: %s", p)
	}

	os.WriteFile(cases, []byte("cases:\n- name: two things\n  calls: {risk: {status: 200, timeout: true}}\n  expect: {action: Continue}\n"), 0o600)
	if _, err := RunFile([]string{conn}, cases); err == nil || !strings.Contains(err.Error(), `case "two things": call risk: set either status and body, error, or timeout`) {
		t.Errorf("got %v", err)
	}
}
