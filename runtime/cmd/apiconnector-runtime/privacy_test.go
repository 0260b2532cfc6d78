package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretCanaries are the values of the Secret keys the privacy connector's calls and sink send.
var secretCanaries = map[string]string{
	"approvals-key/key":  "canary-secret-header\n",
	"approvals-key/code": "canary-secret-query",
}

// privacySecrets is a secrets directory as the runtime pod mounts it: the inbound Basic
// credentials and the Secret keys of secretHeaders and secretQueryParams.
func privacySecrets(t *testing.T) string {
	t.Helper()
	dir := basicSecrets(t)
	for ref, v := range secretCanaries {
		p := filepath.Join(dir, "secret-keys", ref)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// echoServer answers 401 with the headers and query it received: a dependency that refuses the key
// and quotes it back.
func echoServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"error": "bad key %q %q"}`, r.Header.Get("X-Functions-Key"), r.URL.RawQuery)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// No claim value reaches the logs or the metrics, on any failure path: expressions that fail on
// claim data (a claim used as a regular expression, a failed conversion, a look-up by a claim),
// a GET call whose URL carries claims and fails, a sync event that cannot be delivered, and
// bodies refused by the decoder. Nor does a value read from a Secret (a header or a query
// parameter of a call or a sink), whether the dependency is unreachable or refuses the request and
// quotes the key back. Each value is a distinctive canary; the failures themselves are logged (by
// field path, call or event and kind), so the test would see them if they carried values.
func TestNoClaimValueInLogsOrMetrics(t *testing.T) {
	closed := func() string { // a loopback port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	connector := privacyConnector(t, closed, echoServer(t))
	s := startServe(t, "--connector", connector, "--secrets-dir", privacySecrets(t), "--outbound-secrets-dir", privacySecrets(t),
		"--egress-allow-cidr", "127.0.0.0/8", "--log-level", "debug")
	code, body := postAsEntra(t, "http://"+s.addr+"/", `{"email":"canary-email@contoso.example","givenName":"canary-given(",`+
		`"city":"canary-city","surname":"canary-surname","jobTitle":"canary-job","postalCode":"canary-postal"}`)
	if code != 200 || strings.Contains(string(body), "canary") {
		t.Errorf("answer %d %s", code, body)
	}
	for _, refused := range []string{`{"canary-key":1,"canary-key":2}`, `{"email":"canary-x","n":1e999}`, "{\"canary-utf8\":\"\xff\"}",
		`{"email":["canary-type"]}`} {
		if code, _ := postAsEntra(t, "http://"+s.addr+"/", refused); code != 400 {
			t.Errorf("%q answered %d", refused, code)
		}
	}
	res, err := http.Get("http://" + s.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	s.stop()

	logs := s.out.String() + s.errOut.String()
	for _, want := range []string{"spec.rules[0].when: invalid regular expression", "spec.rules[1].when: type conversion failed",
		"spec.rules[2].when: no such key", "call lookup", `"event":"audit"`, "duplicate_key",
		`"call":"approve"`, "http://" + closed + "/approve: dial tcp", `"call":"refused"`, "status 401", `"event":"notify"`, "http://" + closed + "/notify: dial tcp"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q, so this test does not see that failure:\n%s", want, logs)
		}
	}
	for name, text := range map[string]string{"logs": logs, "metrics": string(metrics)} {
		if i := strings.Index(text, "canary"); i >= 0 {
			t.Errorf("%s carry a claim or Secret value: …%s…", name, text[max(0, i-200):min(len(text), i+100)])
		}
	}
}

// --log-claims logs claims on purpose, for debugging; values read from Secrets stay out even then.
func TestNoSecretValueInLogsWithLogClaims(t *testing.T) {
	closed := freePort(t) // freePort closes its listener: nobody listens there
	s := startServe(t, "--connector", privacyConnector(t, closed, echoServer(t)), "--secrets-dir", privacySecrets(t),
		"--outbound-secrets-dir", privacySecrets(t), "--egress-allow-cidr", "127.0.0.0/8", "--log-level", "debug", "--log-claims")
	if code, _ := postAsEntra(t, "http://"+s.addr+"/", `{"email":"canary-email@contoso.example","city":"canary-city"}`); code != 200 {
		t.Errorf("answer %d", code)
	}
	s.stop()
	logs := s.out.String() + s.errOut.String()
	if !strings.Contains(logs, "canary-email") || !strings.Contains(logs, "http://"+closed+"/approve: dial tcp") || !strings.Contains(logs, "status 401") {
		t.Errorf("logs lack the claims or the failures, so this test does not see them:\n%s", logs)
	}
	if i := strings.Index(logs, "canary-secret"); i >= 0 {
		t.Errorf("logs carry a Secret value: …%s…", logs[max(0, i-200):min(len(logs), i+100)])
	}
}

// privacyConnector writes a connector whose expressions fail on claim data and whose calls and
// sinks fail, some sending values from Secrets: to closed (nobody listens) and echo (answers 401
// quoting the key).
func privacyConnector(t *testing.T, closed, echo string) string {
	t.Helper()
	connector := filepath.Join(t.TempDir(), "connector.yaml")
	if err := os.WriteFile(connector, []byte(`apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: privacy, namespace: identity}
spec:
  step: PostAttributeCollection
  failurePolicy: Ignore
  authentication: {basic: {secretRef: {name: entra-basic}}}
  exposure: {host: privacy.example}
  calls:
  - name: lookup
    url: http://`+closed+`/lookup
    method: GET
    body: "{'email': claims.email, 'city': claims.city}"
    failurePolicy: Ignore
  - name: approve
    url: http://`+closed+`/approve?tenant=contoso
    failurePolicy: Ignore
    secretHeaders:
    - name: x-functions-key
      valueFrom: {secretKeyRef: {name: approvals-key, key: key}}
    secretQueryParams:
    - name: code
      valueFrom: {secretKeyRef: {name: approvals-key, key: code}}
  - name: refused
    url: http://`+echo+`/approve
    method: GET
    body: "{'email': claims.email}"
    failurePolicy: Ignore
    secretHeaders:
    - name: x-functions-key
      valueFrom: {secretKeyRef: {name: approvals-key, key: key}}
    secretQueryParams:
    - name: code
      valueFrom: {secretKeyRef: {name: approvals-key, key: code}}
  rules:
  - {name: regex, when: "claims.email.matches(claims.givenName)", block: {message: m}}
  - {name: conversion, when: "int(claims.city) > 0", block: {message: m}}
  - {name: lookup, when: "claims[claims.surname] == 'x'", block: {message: m}}
  claims:
    displayName: "claims.jobTitle + string(int(claims.postalCode))"
  events:
  - name: audit
    sink: {url: "http://`+closed+`/events"}
    delivery: Sync
    failurePolicy: Ignore
    data: "{'email': claims.email}"
  - name: notify
    sink:
      url: "http://`+closed+`/notify"
      secretHeaders:
      - name: x-api-key
        valueFrom: {secretKeyRef: {name: approvals-key, key: key}}
      secretQueryParams:
      - name: sig
        valueFrom: {secretKeyRef: {name: approvals-key, key: code}}
    delivery: Sync
    failurePolicy: Ignore
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return connector
}
