package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apiconnector/operator/internal/version"
	"github.com/apiconnector/operator/runtime/rules"
)

const samples = "../../../config/samples"

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageAndExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, 2, ""},
		{[]string{"bogus"}, 2, ""},
		{[]string{"help"}, 0, "Usage:"},
		{[]string{"help", "serve"}, 0, "--secrets-dir"},
		{[]string{"version"}, 0, ""},
		{[]string{"serve"}, 2, ""},
		{[]string{"serve", "--connector", "x"}, 2, ""},
		{[]string{"serve", "--nope"}, 2, ""},
		{[]string{"serve", "-h"}, 0, ""},
		{[]string{"serve", "--connector", "x", "--secrets-dir", "d", "--tls-cert", "c"}, 2, ""},
		{[]string{"serve", "--connector", "x", "--secrets-dir", "d", "--max-connections", "0"}, 2, ""},
		{[]string{"serve", "--connector", "x", "--secrets-dir", "d", "--read-header-timeout", "0s"}, 2, ""},
		{[]string{"help", "serve"}, 0, "-max-connections int"},
		{[]string{"test"}, 2, ""},
		{[]string{"test", "--cases", "c.yaml"}, 2, ""},
		{[]string{"eval", "--connector", "x"}, 2, ""},
		{[]string{"eval", "--connector", "/nonexistent", "--claims", "/nonexistent"}, 1, ""},
	} {
		code, out, _ := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("%v: code %d, want %d; stdout %q", tc.args, code, tc.code, out)
		}
	}
}

func TestEval(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	conn := filepath.Join(samples, "input-validation.yaml")
	for _, tc := range []struct {
		claims string
		want   string
	}{
		{`{"email":"ada@fabrikam.example","postalCode":"98052"}`, "HTTP 200\n{\"version\":\"1.0.0\",\"action\":\"Continue\"}\n"},
		{`{"email":"someone@mailinator.com","postalCode":"98052"}`, "HTTP 200\n{\"version\":\"1.0.0\",\"action\":\"ShowBlockPage\""},
		{`{"email":"ada@fabrikam.example","postalCode":"nope"}`, "HTTP 400\n{\"version\":\"1.0.0\",\"status\":400,\"action\":\"ValidationError\""},
		{`{"email":1}`, "HTTP 400\n" + `{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"The request could not be processed."}`},
	} {
		code, out, errOut := runCmd(t, "eval", "--connector", conn, "--claims", write("claims.json", tc.claims))
		if code != 0 || !strings.HasPrefix(out, tc.want) {
			t.Errorf("%s: code %d\n%s\nwant prefix\n%s\nstderr %s", tc.claims, code, out, tc.want, errOut)
		}
	}
}

func TestTestCommand(t *testing.T) {
	code, out, errOut := runCmd(t, "test", "--cases", filepath.Join(samples, "tests", "input-validation.cases.yaml"),
		filepath.Join(samples, "input-validation.yaml"))
	if code != 0 || !strings.Contains(out, "PASS") {
		t.Errorf("code %d\n%s\n%s", code, out, errOut)
	}
	dir := t.TempDir()
	failing := filepath.Join(dir, "failing.cases.yaml")
	os.WriteFile(failing, []byte("cases:\n- name: wrong\n  claims: {email: a@mailinator.com}\n  expect: {action: Continue}\n"), 0o600)
	if code, out, _ := runCmd(t, "test", "--cases", failing, filepath.Join(samples, "input-validation.yaml")); code != 1 || !strings.Contains(out, "FAIL") {
		t.Errorf("failing case: code %d\n%s", code, out)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestServe runs the real command wiring (connfile + rules + server) end to end and stops it
// like SIGTERM would.
// postAsEntra sends body to a serve command's endpoint as Entra does (JSON, Basic auth entra:pw)
// and returns the answer.
func postAsEntra(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth("entra", "pw")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	return res.StatusCode, raw
}

func TestServe(t *testing.T) {
	s := startServe(t, "--connector", filepath.Join(samples, "input-validation.yaml"), "--secrets-dir", basicSecrets(t))
	code, body := postAsEntra(t, "http://"+s.addr+"/validate", `{"email":"x@mailinator.com"}`)
	if code != 200 || !strings.Contains(string(body), `"action":"ShowBlockPage"`) {
		t.Errorf("answer %d %s", code, body)
	}
	res, err := http.Get("http://" + s.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if info := fmt.Sprintf("apiconnector_build_info{go_version=%q,version=%q} 1\n", runtime.Version(), version.Get()); !strings.Contains(string(metrics), info) {
		t.Errorf("/metrics lacks %q", info)
	}
	if code := s.stop(); code != 0 {
		t.Errorf("serve exited %d\n%s%s", code, s.out.String(), s.errOut.String())
	}
	// The request line, written without slog when batched (the default), is a JSON log line.
	var line map[string]any
	for l := range strings.Lines(s.out.String()) {
		if strings.Contains(l, `"msg":"request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("request line is not JSON: %v\n%s", err, l)
			}
		}
	}
	if line == nil {
		t.Fatalf("no JSON request log:\n%s", s.out.String())
	}
	if _, ok := line["latency_ms"].(float64); !ok || line["level"] != "INFO" || line["action"] != "ShowBlockPage" || line["code"] != 200.0 || line["rule"] == nil || line["time"] == nil {
		t.Errorf("request line: %v", line)
	}
}

// serve drops the CEL parser's tables after every load; a reload builds them again, and a
// rule that does not parse is refused while the connector loaded before keeps serving.
func TestServeReloadsAfterReleasingTheParser(t *testing.T) {
	dir := t.TempDir()
	sample, err := os.ReadFile(filepath.Join(samples, "input-validation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	connector := filepath.Join(dir, "connector.yaml")
	write := func(content string) {
		t.Helper()
		// Rename, as a ConfigMap volume swaps its files, so the watcher never reads half a file.
		if err := os.WriteFile(connector+".new", []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(connector+".new", connector); err != nil {
			t.Fatal(err)
		}
	}
	write(string(sample))
	s := startServe(t, "--connector", connector, "--secrets-dir", basicSecrets(t), "--poll-interval", "20ms")
	action := func(email string) string {
		t.Helper()
		_, body := postAsEntra(t, "http://"+s.addr+"/validate", `{"email":"x@`+email+`"}`)
		var answer struct{ Action string }
		json.Unmarshal(body, &answer)
		return answer.Action
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10s\n%s%s", what, s.out.String(), s.errOut.String())
			}
		}
	}
	if got := action("newspam.example"); got != "Continue" {
		t.Fatalf("before the reload: %s, want Continue", got)
	}

	write(strings.Replace(string(sample), "- mailinator.com", "- newspam.example", 1))
	waitFor("the reloaded deny list", func() bool { return action("newspam.example") == "ShowBlockPage" })
	if got := action("mailinator.com"); got != "Continue" {
		t.Errorf("mailinator.com after the reload: %s, want Continue (no longer listed)", got)
	}

	broken := strings.Replace(string(sample), "- mailinator.com", "- other.example", 1)
	broken = strings.Replace(broken, "in lists.disposableDomains", "in lists.disposableDomains &&", 1)
	if broken == strings.Replace(string(sample), "- mailinator.com", "- other.example", 1) {
		t.Fatal("the sample no longer has the rule this test breaks")
	}
	write(broken)
	waitFor("the refused reload", func() bool { return strings.Contains(s.out.String(), "connector reload refused") })
	if got := action("newspam.example"); got != "ShowBlockPage" {
		t.Errorf("after a refused reload: %s, want ShowBlockPage from the connector loaded before", got)
	}
}

// eval understands the custom authentication extension envelope at the On... steps.
func TestEvalExtensionEnvelope(t *testing.T) {
	golden := filepath.Join("..", "..", "entra", "testdata", "golden", "extensions")
	code, out, errOut := runCmd(t, "eval", "--connector", filepath.Join(samples, "extension-prefill.yaml"),
		"--claims", filepath.Join(golden, "request-attributecollectionstart.json"))
	want := `HTTP 200
{"data":{"@odata.type":"microsoft.graph.onAttributeCollectionStartResponseData","actions":[{"@odata.type":"microsoft.graph.attributeCollectionStart.setPrefillValues","inputs":{"country":"US","extension_Newsletter":true}}]}}`
	if code != 0 || strings.TrimSpace(out) != want {
		t.Errorf("code %d\n%s\nwant\n%s\nstderr %s", code, out, want, errOut)
	}
	// A legacy body at an extension connector is refused like the server would.
	p := filepath.Join(t.TempDir(), "legacy.json")
	os.WriteFile(p, []byte(`{"email":"a@b.example"}`), 0o600)
	code, out, _ = runCmd(t, "eval", "--connector", filepath.Join(samples, "extension-prefill.yaml"), "--claims", p)
	if code != 0 || !strings.HasPrefix(out, "HTTP 400\n{\"error\"") {
		t.Errorf("legacy body: code %d %s", code, out)
	}
}

// eval and test run connectors whose calls send values from Secrets: eval reads them from
// --outbound-secrets-dir (secret-keys/<Secret>/<key>), test stands them in.
func TestEvalAndTestWithSecretValues(t *testing.T) {
	dir := t.TempDir()
	closed := freePort(t)
	conn := filepath.Join(dir, "connector.yaml")
	os.WriteFile(conn, []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: fn, namespace: identity}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: entra-basic}}}
  exposure: {host: signup.contoso.example}
  calls:
  - name: approve
    url: http://`+closed+`/api/approve
    secretHeaders:
    - {name: x-functions-key, valueFrom: {secretKeyRef: {name: approvals-key, key: key}}}
    secretQueryParams:
    - {name: code, valueFrom: {secretKeyRef: {name: approvals-key, key: code}}}
  rules:
  - {name: denied, when: "!calls.approve.body.approved", block: {message: Not approved.}}
`), 0o600)
	claims := filepath.Join(dir, "claims.json")
	os.WriteFile(claims, []byte(`{"email":"ada@fabrikam.example"}`), 0o600)

	// Without the directory the call cannot get its values.
	code, out, errOut := runCmd(t, "eval", "--connector", conn, "--claims", claims)
	if code != 0 || !strings.Contains(out, "ShowBlockPage") || !strings.Contains(errOut, "needs values from Secrets but no secret source is configured") {
		t.Errorf("without --outbound-secrets-dir: code %d\n%s\n%s", code, out, errOut)
	}
	// With it, the request is built and sent (the egress guard refuses loopback), and the failure
	// shows the URL without the Secret's query parameter.
	secrets := filepath.Join(dir, "secrets")
	os.MkdirAll(filepath.Join(secrets, "secret-keys", "approvals-key"), 0o700)
	os.WriteFile(filepath.Join(secrets, "secret-keys", "approvals-key", "key"), []byte("canary-key\n"), 0o600)
	os.WriteFile(filepath.Join(secrets, "secret-keys", "approvals-key", "code"), []byte("canary-code\n"), 0o600)
	code, out, errOut = runCmd(t, "eval", "--connector", conn, "--claims", claims, "--outbound-secrets-dir", secrets)
	want := "call approve: Post http://" + closed + "/api/approve: dial tcp " + closed + ": egress to 127.0.0.1 refused"
	if code != 0 || !strings.Contains(out, "ShowBlockPage") || !strings.Contains(errOut, want) || strings.Contains(out+errOut, "canary") {
		t.Errorf("with --outbound-secrets-dir: code %d\n%s\n%s\nwant stderr to contain %q", code, out, errOut, want)
	}
	if !strings.Contains(errOut, "call approve: error in ") {
		t.Errorf("the call's outcome is not reported:\n%s", errOut)
	}

	cases := filepath.Join(dir, "cases.yaml")
	os.WriteFile(cases, []byte("cases:\n- name: approved\n  calls: {approve: {body: {approved: true}}}\n  expect: {action: Continue}\n"+
		"- name: refused\n  calls: {approve: {body: {approved: false}}}\n  expect: {action: ShowBlockPage, rule: denied}\n"), 0o600)
	if code, out, errOut := runCmd(t, "test", "--cases", cases, conn); code != 0 || !strings.Contains(out, "2 passed, 0 failed") {
		t.Errorf("test: code %d\n%s\n%s", code, out, errOut)
	}
}

// A runtime built with the release's -ldflags reports that version with both spellings.
func TestVersionStamped(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the runtime")
	}
	const want = "v9.8.7-stamp.1"
	bin := filepath.Join(t.TempDir(), "apiconnector-runtime")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-X "+version.Symbol+"="+want, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, arg := range []string{"version", "--version"} {
		if out, err := exec.Command(bin, arg).CombinedOutput(); err != nil || string(out) != want+"\n" {
			t.Errorf("apiconnector-runtime %s = %q, %v; want %q", arg, out, err, want)
		}
	}
}

// eval has no decryption keys: at OnPasswordSubmit it says so and shows the failure policy's
// answer (Block), never an answer made without the password.
func TestEvalPasswordSubmitIsNotDecrypted(t *testing.T) {
	golden := filepath.Join("..", "..", "entra", "testdata", "golden", "extensions")
	code, out, errOut := runCmd(t, "eval", "--connector", filepath.Join(samples, "password-migration.yaml"),
		"--claims", filepath.Join(golden, "request-passwordsubmit.json"))
	if code != 0 || !strings.Contains(out, "microsoft.graph.passwordSubmit.Block") || !strings.Contains(errOut, "not decrypted") {
		t.Errorf("code %d\n%s\nstderr %s", code, out, errOut)
	}
}

// Warm connections never hold readiness on a dead dependency: with a call to a host that accepts
// connections and never answers, serve is ready once rules.WarmTimeout has passed.
func TestServeReadyDespiteADeadDependency(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	file := filepath.Join(t.TempDir(), "connector.yaml")
	doc := `apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: dead, namespace: default}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: creds}}}
  exposure: {host: signup.example.com}
  calls:
  - {name: approval, url: 'http://` + ln.Addr().String() + `/approve', timeout: 1s, failurePolicy: Ignore}
`
	if err := os.WriteFile(file, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s := startServe(t, "--connector", file, "--secrets-dir", basicSecrets(t), "--egress-allow-cidr", "127.0.0.0/8")
	took := time.Since(start)
	if took < rules.WarmTimeout-200*time.Millisecond || took > rules.WarmTimeout+3*time.Second {
		t.Errorf("ready after %v, want about the %v warm-up bound", took, rules.WarmTimeout)
	}
	if code, body := postAsEntra(t, "http://"+s.addr+"/", `{"email":"a@contoso.example"}`); code != 200 || !strings.Contains(string(body), `"action":"Continue"`) {
		t.Errorf("answer %d %s", code, body)
	}
}
