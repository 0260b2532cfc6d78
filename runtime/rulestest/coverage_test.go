package rulestest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCoverage(t *testing.T) {
	dir := t.TempDir()
	conn := filepath.Join(dir, "conn.yaml")
	os.WriteFile(conn, []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: covered, namespace: ns}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
  rules:
  - name: blocked
    when: "claims.email.startsWith('blocked')"
    block: {message: m}
  - name: audited
    enforcement: Audit
    when: "claims.email.endsWith('.test')"
    block: {message: m}
  - name: never-matched
    when: "claims.email == 'nobody'"
    block: {message: m}
  claims:
    city: "claims.?city.optMap(c, c.upperAscii())"
    unused: "optional.none()"
---
apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: no-cases, namespace: ns}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
  rules:
  - name: r
    when: "true"
    block: {message: m}
`), 0o600)
	cases := filepath.Join(dir, "c.yaml")
	os.WriteFile(cases, []byte(`connector: covered
cases:
- name: blocked
  claims: {email: blocked@a.example}
  expect: {action: ShowBlockPage}
- name: audited with city
  claims: {email: a@a.test, city: Oslo}
  expect: {action: Continue}
- name: a failing case still counts
  claims: {email: blocked@a.test}
  expect: {action: Continue}
`), 0o600)
	b, f, err := Load([]string{conn}, cases)
	if err != nil {
		t.Fatal(err)
	}
	items := Coverage(b, Run(b, f))
	got := map[string]string{}
	for _, it := range items {
		got[it.Connector+"/"+it.Kind+"/"+it.Name] = strings.Join(it.Cases, "|")
	}
	want := map[string]string{
		"covered/rule/blocked":       "blocked|a failing case still counts",
		"covered/rule/audited":       "audited with city", // after blocked, which decided the failing case
		"covered/rule/never-matched": "",
		"covered/claim/city":         "audited with city",
		"covered/claim/unused":       "",
		"no-cases/rule/r":            "",
	}
	if len(got) != len(want) {
		t.Errorf("items: %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if pct := CoveragePercent(items); pct != 50 {
		t.Errorf("percent %v, want 50", pct)
	}
	var buf bytes.Buffer
	PrintCoverage(&buf, items)
	for _, line := range []string{"covered    rule (audit)  audited        audited with city\n", "covered    rule          never-matched  NOT COVERED", "coverage: 3 of 6 rules and claims exercised (50.0%)"} {
		if !strings.Contains(buf.String(), line) {
			t.Errorf("coverage output lacks %q:\n%s", line, buf.String())
		}
	}
}

func TestClaimIs(t *testing.T) {
	for _, tc := range []struct {
		returned, name string
		want           bool
	}{
		{"city", "city", true},
		{"extension_831374b3bd5041bfaa54263ec9e050fc_Tier", "extension_Tier", true},
		{"extension_831374b3bd5041bfaa54263ec9e050fc_Tier", "extension_Other", false},
		{"extension_XYZ_Tier", "extension_Tier", false},
		{"city", "extension_city", false},
	} {
		if got := claimIs(tc.returned, tc.name); got != tc.want {
			t.Errorf("claimIs(%s, %s) = %v", tc.returned, tc.name, got)
		}
	}
}
