package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLintGoodManifests(t *testing.T) {
	all, err := filepath.Glob(filepath.Join(samples, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, append([]string{"lint"}, all...)...)
	if code != exitOK || !strings.HasPrefix(out, "lint: ") || !strings.Contains(out, "APIConnector(s) in") || strings.Count(out, "\n") != 1 {
		t.Errorf("code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestLintReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: unknown-field, namespace: identity}
spec:
  step: PostAttributeCollection
  rulez: []
---
apiVersion: v1
kind: Secret
metadata: {name: skipped}
---
apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: broken, namespace: identity}
spec:
  step: PostFederationSignup
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
  lists:
  - name: partners
    configMapRef: {name: partner-domains, key: domains.txt}
  rules:
  - name: postal-code
    enforcement: Audit
    when: "claims.postalCode.matches('[0-9]{5}') + 1"
    block: {message: m}
  - name: wrong-step
    when: "'x' in lists.partnerz"
    validationError: {message: m}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "lint", bad)
	if code != exitFailure {
		t.Errorf("code %d, want 1", code)
	}
	for _, want := range []string{
		bad + ` (document 1): unknown field "spec.rulez"`,
		bad + ` (document 3): APIConnector identity/broken: spec.lists[0].configMapRef (list "partners"): resolve ConfigMap partner-domains key domains.txt: ConfigMap partner-domains not found among the given files`,
		bad + ` (document 3): APIConnector identity/broken: spec.rules[0].when (rule "postal-code"): 1:39: found no matching overload for '_+_' applied to '(bool, int)'`,
		bad + ` (document 3): APIConnector identity/broken: spec.rules[1].validationError (rule "wrong-step"): validationError outcomes are only allowed`,
		bad + ` (document 3): APIConnector identity/broken: spec.rules[1].when (rule "wrong-step"): 1:13: lists.partnerz is not defined in the connector`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks\n  %s\ngot:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "lint: 5 problem(s) in 1 file(s)") {
		t.Errorf("stderr: %s", errOut)
	}

	// With the ConfigMap in another file, its problem goes away.
	cm := filepath.Join(dir, "cm.yaml")
	os.WriteFile(cm, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: partner-domains, namespace: identity}\ndata: {domains.txt: fabrikam.example}\n"), 0o600)
	if _, out, errOut := runCmd(t, "lint", bad, cm); strings.Contains(out, "partner-domains") || !strings.Contains(errOut, "4 problem(s) in 2 file(s)") {
		t.Errorf("with the ConfigMap:\n%s\n%s", out, errOut)
	}

	// No connector at all, and no argument.
	if code, _, errOut := runCmd(t, "lint", cm); code != exitFailure || !strings.Contains(errOut, "no APIConnector in "+cm) {
		t.Errorf("no connector: code %d, %s", code, errOut)
	}
	if code, _, _ := runCmd(t, "lint"); code != exitUsage {
		t.Errorf("no argument: code %d", code)
	}
}

func TestTestCoverage(t *testing.T) {
	manifest := filepath.Join(samples, "input-validation.yaml")
	all := filepath.Join(samples, "tests", "input-validation.cases.yaml")
	code, out, errOut := runCmd(t, "test", "--coverage", "--min-coverage", "100", "--cases", all, manifest)
	if code != exitOK || !strings.Contains(out, "rule (audit)  sub-addressed-email") || !strings.Contains(out, "coverage: 5 of 5 rules and claims exercised (100.0%)") {
		t.Errorf("code %d\n%s\n%s", code, out, errOut)
	}

	one := filepath.Join(t.TempDir(), "one.cases.yaml")
	os.WriteFile(one, []byte("cases:\n- name: disposable\n  claims: {email: a@mailinator.com}\n  expect: {action: ShowBlockPage}\n"), 0o600)
	code, out, errOut = runCmd(t, "test", "--coverage", "--min-coverage", "50", "--cases", one, manifest)
	if code != exitFailure || !strings.Contains(out, "postal-code            NOT COVERED") ||
		!strings.Contains(errOut, "coverage 20.0% is below --min-coverage 50%") {
		t.Errorf("code %d\n%s\n%s", code, out, errOut)
	}
	// The threshold alone prints no table but still fails.
	if code, out, _ := runCmd(t, "test", "--min-coverage", "50", "--cases", one, manifest); code != exitFailure || strings.Contains(out, "NOT COVERED") {
		t.Errorf("code %d\n%s", code, out)
	}
	if code, _, _ := runCmd(t, "test", "--min-coverage", "101", "--cases", one, manifest); code != exitUsage {
		t.Errorf("--min-coverage 101: code %d", code)
	}
}

func TestTestRefusesEmptyCaseFile(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	os.WriteFile(empty, []byte("cases: []\n"), 0o600)
	code, out, errOut := runCmd(t, "test", "--cases", empty, filepath.Join(samples, "input-validation.yaml"))
	if code != exitFailure || !strings.Contains(errOut, empty+" has no cases") || strings.Contains(out, "passed") {
		t.Errorf("code %d\n%s\n%s", code, out, errOut)
	}
}
