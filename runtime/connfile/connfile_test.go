package connfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apiconnector/operator/runtime/connfile"
)

const manifest = `# leading comment-only document
---
apiVersion: v1
kind: ConfigMap
metadata: {name: domains, namespace: identity}
data:
  list: |
    # partners
    a.example

    b.example
---
apiVersion: v1
kind: Secret
metadata: {name: ignored}
---
apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: c, namespace: identity}
spec:
  step: PostAttributeCollection
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example, tls: {issuerRef: {name: le}}}
  lists:
  - {name: partners, configMapRef: {name: domains, key: list}}
  calls:
  - {name: c1, url: 'https://x.example'}
  events:
  - {name: e1, sink: {url: 'https://s.example'}}
`

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsAndConfigMaps(t *testing.T) {
	p := write(t, manifest)
	conn, err := connfile.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s := conn.Spec
	if s.FailurePolicy != "Fail" || s.Calls[0].Method != "POST" || s.Calls[0].Timeout.Duration.String() != "2s" ||
		s.Calls[0].FailurePolicy != "Fail" || s.Events[0].Delivery != "Async" || s.Events[0].FailurePolicy != "Ignore" ||
		s.Exposure.TLS.IssuerRef.Kind != "ClusterIssuer" {
		t.Errorf("defaults not applied: %+v", s)
	}
	b, err := connfile.LoadFiles(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.ConfigMaps) != 1 || len(b.Connectors) != 1 {
		t.Fatalf("got %d ConfigMaps, %d connectors", len(b.ConfigMaps), len(b.Connectors))
	}
	got, err := b.ListResolver("identity")(*s.Lists[0].ConfigMapRef)
	if err != nil || strings.Join(got, ",") != "a.example,b.example" {
		t.Errorf("resolved %q, %v", got, err)
	}
	if _, err := b.ListResolver("other")(*s.Lists[0].ConfigMapRef); err == nil {
		t.Error("resolved a ConfigMap from another namespace")
	}
}

func TestStrictErrorsNameThePath(t *testing.T) {
	for _, tc := range []struct{ edit, want string }{
		{"  - {name: c1, url: 'https://x.example', retries: 3}", `unknown field "spec.calls[0].retries"`},
		{"  - {name: c1, url: 'https://x.example', url: 'https://y.example'}", `already set`},
	} {
		bad := strings.Replace(manifest, "  - {name: c1, url: 'https://x.example'}", tc.edit, 1)
		_, err := connfile.Load(write(t, bad))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error containing %q, got %v", tc.want, err)
		}
	}
	if _, err := connfile.Load(write(t, strings.Replace(manifest, "apiconnector.dev/v1alpha1", "apiconnector.dev/v2", 1))); err == nil {
		t.Error("wrong apiVersion accepted")
	}
}

func TestLoadRenderedJSON(t *testing.T) {
	conn, err := connfile.Load(write(t, `{"metadata":{"name":"c","namespace":"n"},"spec":{"step":"PostFederationSignup",
"authentication":{"basic":{"secretRef":{"name":"s"}}},"exposure":{"host":"h.example"},
"lists":[{"name":"l","values":["a"]}]}}`))
	if err != nil || conn.Name != "c" || conn.Spec.Lists[0].Values[0] != "a" {
		t.Fatalf("%+v %v", conn, err)
	}
}
