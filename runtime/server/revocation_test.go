package server

import (
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// A Secret that is emptied, deleted or made invalid revokes the credentials it held: the runtime
// fails closed as it does at start (401, /readyz 503 with the reason), it does not keep serving
// the previous values.
func TestCredentialsRevoked(t *testing.T) {
	t.Run("basic", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			change func(dir string)
			why    string
		}{
			{"password deleted", func(dir string) { must(t, os.Remove(filepath.Join(dir, PasswordFile))) }, "no such file"},
			{"password emptied", func(dir string) { writeFile(t, filepath.Join(dir, PasswordFile), "") }, "must not be empty"},
			{"Secret deleted", func(dir string) {
				must(t, os.Remove(filepath.Join(dir, PasswordFile)))
				must(t, os.Remove(filepath.Join(dir, UsernameFile)))
			}, "no such file"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				dir := basicSecrets(t, testUser, testPass)
				logs := &syncBuffer{}
				ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: dir, Logger: jsonLogger(logs)}))
				if res := ts.post(t, `{}`); res.code != 200 {
					t.Fatalf("before: %d", res.code)
				}
				tc.change(dir)
				eventually(t, "old credentials refused", func() bool { return ts.post(t, `{}`).code == 401 })
				res := ts.get(t, "/readyz")
				if res.code != http.StatusServiceUnavailable || !strings.Contains(res.body, "basic credentials not loaded") || !strings.Contains(res.body, tc.why) {
					t.Errorf("/readyz = %d %q", res.code, res.body)
				}
				if strings.Contains(res.body+logs.String(), testPass) {
					t.Error("the password appears in /readyz or the logs")
				}
				if !strings.Contains(logs.String(), "credentials not loaded") {
					t.Errorf("revocation not logged: %s", logs.String())
				}
				// Restoring the Secret restores service.
				writeFile(t, filepath.Join(dir, UsernameFile), testUser)
				writeFile(t, filepath.Join(dir, PasswordFile), testPass)
				eventually(t, "credentials back", func() bool { return ts.post(t, `{}`).code == 200 })
			})
		}
	})

	t.Run("client certificate", func(t *testing.T) {
		clientCA := newCert(t, "client-ca", true, nil)
		entra := newCert(t, "entra", false, &clientCA)
		secrets := t.TempDir()
		writeFile(t, filepath.Join(secrets, CAFile), clientCA.pem)
		conn := certConnector(&v1alpha1.ForwardedClientCertificate{Header: HeaderTraefikClientCert, TrustedProxies: []string{"127.0.0.0/8"}})
		ts := start(t, newServer(t, conn, continueEval, Options{SecretsDir: secrets}))
		header := map[string]string{HeaderTraefikClientCert: base64.StdEncoding.EncodeToString(entra.cert.Raw)}
		post := func() int { return do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, header).code }
		if c := post(); c != 200 {
			t.Fatalf("before: %d", c)
		}
		for _, tc := range []struct {
			name, content, why string
		}{
			{"ca.crt garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "parse certificate"},
			{"ca.crt emptied", "", "no PEM CERTIFICATE blocks"},
		} {
			writeFile(t, filepath.Join(secrets, CAFile), tc.content)
			eventually(t, tc.name+": old trust refused", func() bool { return post() == 401 })
			if res := ts.get(t, "/readyz"); res.code != http.StatusServiceUnavailable || !strings.Contains(res.body, tc.why) {
				t.Errorf("%s: /readyz = %d %q", tc.name, res.code, res.body)
			}
			writeFile(t, filepath.Join(secrets, CAFile), clientCA.pem)
			eventually(t, "trust back", func() bool { return post() == 200 })
		}
		must(t, os.Remove(filepath.Join(secrets, CAFile)))
		eventually(t, "ca.crt deleted: old trust refused", func() bool { return post() == 401 })
		if res := ts.get(t, "/readyz"); res.code != http.StatusServiceUnavailable {
			t.Errorf("ca.crt deleted: /readyz = %d %q", res.code, res.body)
		}
	})
}
