package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// No claim value reaches the logs or the metrics, on any failure path: expressions that fail on
// claim data (a claim used as a regular expression, a failed conversion, a look-up by a claim),
// a GET call whose URL carries claims and fails, a sync event that cannot be delivered, and
// bodies refused by the decoder. Each value is a distinctive canary; the failures themselves are
// logged (by field path, call or event and kind), so the test would see them if they carried
// values.
func TestNoClaimValueInLogsOrMetrics(t *testing.T) {
	closed := func() string { // a loopback port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
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
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServe(t, "--connector", connector, "--secrets-dir", basicSecrets(t), "--log-level", "debug")
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
		"spec.rules[2].when: no such key", "call lookup", `"event":"audit"`, "duplicate_key"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q, so this test does not see that failure:\n%s", want, logs)
		}
	}
	for name, text := range map[string]string{"logs": logs, "metrics": string(metrics)} {
		if i := strings.Index(text, "canary"); i >= 0 {
			t.Errorf("%s carry a claim value: …%s…", name, text[max(0, i-200):min(len(text), i+100)])
		}
	}
}
