package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// approvalCheck is the first connector of the approval-workflow sample: a GET call with Bearer
// credentials (none are given here: eval with stubs needs none) decides.
func approvalCheck(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(samples, "approval-workflow.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(raw), "\n---\n")
	p := filepath.Join(t.TempDir(), "approval-check.yaml")
	if err := os.WriteFile(p, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEvalWithStubs(t *testing.T) {
	conn := approvalCheck(t)
	dir := t.TempDir()
	claims := filepath.Join(dir, "claims.json")
	os.WriteFile(claims, []byte(`{"email":"Grace@Fabrikam.example","step":"PostFederationSignup"}`), 0o600)
	stubFile := filepath.Join(dir, "stubs.yaml")
	os.WriteFile(stubFile, []byte("approval: {status: 200, body: {status: denied}}\n"), 0o600)

	for _, tc := range []struct {
		name    string
		args    []string
		out     string
		stderrs []string
	}{
		{"pending", []string{"--stub", `approval=200:{"status":"pending"}`},
			`"action":"ShowBlockPage","userMessage":"Your access request is pending approval."`,
			[]string{`rule="pending"`, "call approval: GET https://approvals.contoso.example/api/v1/access-requests/status?email=grace%40fabrikam.example (stubbed)"}},
		{"approved", []string{"--stub", `approval=200:{"status":"approved"}`}, `"action":"Continue"`, nil},
		{"from a file", []string{"--stub-file", stubFile}, "not approved", []string{`rule="denied"`}},
		{"the command line wins over the file", []string{"--stub-file", stubFile, "--stub", `approval=200:{"status":"pending"}`}, "pending approval", nil},
		{"service down fails closed", []string{"--stub", "approval=503"}, "We can't check your access request", []string{"status 503"}},
		{"transport error", []string{"--stub", "approval=error:connection reset"}, "We can't check", []string{"connection reset"}},
		{"offline without a stub", []string{"--offline"}, "We can't check", []string{"call approval had no stub"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(t, append([]string{"eval", "--connector", conn, "--claims", claims}, tc.args...)...)
			if code != exitOK || !strings.Contains(out, tc.out) {
				t.Errorf("code %d\nstdout: %s\nstderr: %s", code, out, errOut)
			}
			for _, want := range tc.stderrs {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr lacks %q:\n%s", want, errOut)
				}
			}
		})
	}
	if code, _, errOut := runCmd(t, "eval", "--connector", conn, "--claims", claims, "--stub", "approval=bogus"); code != exitUsage || !strings.Contains(errOut, `"bogus" is not a status, timeout or error`) {
		t.Errorf("bad stub: code %d, %s", code, errOut)
	}
}

func TestEvalTimeoutStubWaitsForTheCallTimeout(t *testing.T) {
	conn := approvalCheck(t)
	raw, _ := os.ReadFile(conn)
	os.WriteFile(conn, []byte(strings.Replace(string(raw), "timeout: 3s", "timeout: 200ms", 1)), 0o600)
	claims := filepath.Join(t.TempDir(), "claims.json")
	os.WriteFile(claims, []byte(`{"email":"grace@fabrikam.example"}`), 0o600)
	start := time.Now()
	code, out, errOut := runCmd(t, "eval", "--connector", conn, "--claims", claims, "--stub", "approval=timeout")
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Errorf("took %s, want the call's 200ms timeout", took)
	}
	if code != exitOK || !strings.Contains(out, "We can't check") || !strings.Contains(errOut, "context deadline exceeded") {
		t.Errorf("code %d\n%s\n%s", code, out, errOut)
	}
}
