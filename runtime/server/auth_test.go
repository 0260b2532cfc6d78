package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
)

func TestBasicAuth(t *testing.T) {
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: basicSecrets(t, testUser, testPass)}))
	b64 := base64.StdEncoding.EncodeToString
	for _, tc := range []struct {
		name   string
		header map[string]string
		code   int
		reason string
	}{
		{"no header", nil, 401, reasonMissing},
		{"wrong user", basicHeader("other", testPass), 401, reasonInvalid},
		{"wrong password", basicHeader(testUser, "nope"), 401, reasonInvalid},
		{"password prefix", basicHeader(testUser, testPass[:5]), 401, reasonInvalid},
		{"empty credentials", basicHeader("", ""), 401, reasonInvalid},
		{"garbled base64", map[string]string{"Authorization": "Basic !!!not-base64"}, 401, reasonMalformed},
		{"no colon", map[string]string{"Authorization": "Basic " + b64([]byte("nocolonhere"))}, 401, reasonMalformed},
		{"bearer scheme", map[string]string{"Authorization": "Bearer abc"}, 401, reasonMalformed},
		{"scheme only", map[string]string{"Authorization": "Basic"}, 401, reasonMalformed},
		{"correct", basicHeader(testUser, testPass), 200, ""},
		{"scheme case-insensitive", map[string]string{"Authorization": "basic " + b64([]byte(testUser+":"+testPass))}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := counterValue(t, ts.Server, "apiconnector_auth_failures_total", map[string]string{"reason": tc.reason})
			res := do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, tc.header)
			if res.code != tc.code {
				t.Fatalf("code = %d, want %d (%s)", res.code, tc.code, res.body)
			}
			if tc.code == 401 {
				if res.body != "" {
					t.Errorf("401 body = %q, want empty", res.body)
				}
				if got := res.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="apiconnector"`) {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				if after := counterValue(t, ts.Server, "apiconnector_auth_failures_total", map[string]string{"reason": tc.reason}); after != before+1 {
					t.Errorf("auth failure %s counted %v -> %v", tc.reason, before, after)
				}
			}
		})
	}
	// A body never reaches the decoder unauthenticated: a malformed body still gets 401.
	if res := do(t, ts.client, http.MethodPost, ts.url, "text/plain", `garbage`, nil); res.code != 401 {
		t.Errorf("unauthenticated garbage = %d", res.code)
	}
}

func TestMissingSecretsRefuseEverything(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conn  *v1alpha1.APIConnector
		files map[string]string
	}{
		{"basic, no files", basicConnector(pac), nil},
		{"basic, no password", basicConnector(pac), map[string]string{UsernameFile: testUser}},
		{"basic, empty password", basicConnector(pac), map[string]string{UsernameFile: testUser, PasswordFile: "\n"}},
		{"cert, no ca.crt", certConnector(nil), map[string]string{UsernameFile: testUser, PasswordFile: testPass}},
		{"cert, ca.crt without certificates", certConnector(nil), map[string]string{CAFile: "not a pem"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for k, v := range tc.files {
				writeFile(t, filepath.Join(dir, k), v)
			}
			ts := start(t, newServer(t, tc.conn, continueEval, Options{SecretsDir: dir}))
			for _, h := range []map[string]string{nil, basicHeader(testUser, testPass), basicHeader("", ""), basicHeader(testUser, "")} {
				if res := do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, h); res.code != 401 {
					t.Errorf("code = %d with %v", res.code, h)
				}
			}
			if res := ts.get(t, "/readyz"); res.code != http.StatusServiceUnavailable {
				t.Errorf("/readyz = %d %s", res.code, res.body)
			}
			if res := ts.get(t, "/healthz"); res.code != 200 {
				t.Errorf("/healthz = %d", res.code)
			}
			if v := counterValue(t, ts.Server, "apiconnector_auth_failures_total", map[string]string{"reason": reasonNotConfigured}); v < 1 {
				t.Errorf("credentials_not_loaded count = %v", v)
			}
		})
	}
}

func TestBasicCredentialRotation(t *testing.T) {
	dir := t.TempDir()
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: dir}))
	if res := ts.post(t, `{}`); res.code != 401 {
		t.Fatalf("before secrets: %d", res.code)
	}
	// The Secret appears: picked up without a restart.
	writeFile(t, filepath.Join(dir, UsernameFile), testUser)
	writeFile(t, filepath.Join(dir, PasswordFile), testPass)
	eventually(t, "credentials loaded", func() bool { return ts.post(t, `{}`).code == 200 })
	if res := ts.get(t, "/readyz"); res.code != 200 {
		t.Errorf("/readyz = %d %s", res.code, res.body)
	}

	// Rotation through a ..data symlink swap, the way the kubelet updates Secret volumes.
	secrets := t.TempDir()
	v1, v2 := filepath.Join(secrets, "..v1"), filepath.Join(secrets, "..v2")
	for _, d := range []string{v1, v2} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(v1, UsernameFile), testUser)
	writeFile(t, filepath.Join(v1, PasswordFile), testPass)
	writeFile(t, filepath.Join(v2, UsernameFile), testUser)
	writeFile(t, filepath.Join(v2, PasswordFile), "rotated")
	must(t, os.Symlink("..v1", filepath.Join(secrets, "..data")))
	for _, f := range []string{UsernameFile, PasswordFile} {
		must(t, os.Symlink(filepath.Join("..data", f), filepath.Join(secrets, f)))
	}
	ts2 := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: secrets}))
	if res := ts2.post(t, `{}`); res.code != 200 {
		t.Fatalf("v1 credentials: %d", res.code)
	}
	must(t, os.Symlink("..v2", filepath.Join(secrets, "..data_tmp")))
	must(t, os.Rename(filepath.Join(secrets, "..data_tmp"), filepath.Join(secrets, "..data")))
	eventually(t, "rotated password accepted", func() bool {
		return do(t, ts2.client, http.MethodPost, ts2.url, "application/json", `{}`, basicHeader(testUser, "rotated")).code == 200
	})
	if res := ts2.post(t, `{}`); res.code != 401 {
		t.Errorf("old password after rotation: %d", res.code)
	}
	if v := counterValue(t, ts2.Server, "apiconnector_reloads_total", map[string]string{"kind": "credentials", "result": "success"}); v < 2 {
		t.Errorf("credential reloads = %v", v)
	}
}

func TestClientCertificateTLS(t *testing.T) {
	serverCA := newCert(t, "server-ca", true, nil)
	serverCert := newCert(t, "127.0.0.1", false, &serverCA)
	clientCA := newCert(t, "client-ca", true, nil)
	otherCA := newCert(t, "other-ca", true, nil)
	signed := newCert(t, "entra-signed", false, &clientCA)
	pinned := newCert(t, "entra-pinned", false, nil)     // self-signed leaf trusted by pinning
	pinnedNext := newCert(t, "entra-next", false, nil)   // the rollover successor
	untrusted := newCert(t, "stranger", false, &otherCA) // signed by a CA nobody trusts
	unpinned := newCert(t, "self-signed stranger", false, nil)
	// Expired: signed by the trusted CA but outside its validity.
	expired := newCert(t, "expired", false, &clientCA, func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = c.NotBefore.AddDate(-1, 0, 0), c.NotBefore.AddDate(0, 0, -1)
	})

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tls.crt"), serverCert.pem+serverCA.pem)
	writeFile(t, filepath.Join(dir, "tls.key"), serverCert.keyPEM(t))
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, CAFile), clientCA.pem+pinned.pem+pinnedNext.pem)

	s := newServer(t, certConnector(nil), continueEval, Options{SecretsDir: secrets,
		TLSCertFile: filepath.Join(dir, "tls.crt"), TLSKeyFile: filepath.Join(dir, "tls.key")})
	ts := start(t, s)
	for _, tc := range []struct {
		name   string
		client *testCert
		code   int
	}{
		{"no certificate", nil, 401},
		{"signed by trusted CA", &signed, 200},
		{"pinned leaf", &pinned, 200},
		{"second pinned leaf (rollover)", &pinnedNext, 200},
		{"signed by untrusted CA", &untrusted, 401},
		{"unpinned self-signed", &unpinned, 401},
		{"expired", &expired, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tlsClient(serverCA, tc.client)
			res := do(t, c, http.MethodPost, ts.url+"/x", "application/json", `{"city":"Bergen"}`, nil)
			if res.code != tc.code {
				t.Errorf("code = %d, want %d %s", res.code, tc.code, res.body)
			}
			if tc.code == 401 && res.header.Get("WWW-Authenticate") != "" {
				t.Errorf("WWW-Authenticate sent in certificate mode")
			}
		})
	}

	t.Run("TLS 1.1 refused", func(t *testing.T) {
		c := tlsClient(serverCA, &signed)
		tr := c.Transport.(*http.Transport)
		tr.TLSClientConfig.MinVersion, tr.TLSClientConfig.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		if _, err := c.Post(ts.url, "application/json", strings.NewReader(`{}`)); err == nil {
			t.Error("TLS 1.1 handshake succeeded")
		}
	})

	t.Run("trust bundle rotation", func(t *testing.T) {
		// Drop the CA, keep only the new pinned leaf: the CA-signed client is refused afterwards.
		writeFile(t, filepath.Join(secrets, CAFile), pinnedNext.pem)
		eventually(t, "CA removed from trust", func() bool {
			return do(t, tlsClient(serverCA, &signed), http.MethodPost, ts.url, "application/json", `{}`, nil).code == 401
		})
		if res := do(t, tlsClient(serverCA, &pinnedNext), http.MethodPost, ts.url, "application/json", `{}`, nil); res.code != 200 {
			t.Errorf("pinned successor after rotation: %d", res.code)
		}
	})

	t.Run("server certificate rotation", func(t *testing.T) {
		newServerCA := newCert(t, "server-ca-2", true, nil)
		newServerCert := newCert(t, "127.0.0.1", false, &newServerCA)
		writeFile(t, filepath.Join(dir, "tls.key"), newServerCert.keyPEM(t))
		writeFile(t, filepath.Join(dir, "tls.crt"), newServerCert.pem)
		eventually(t, "new server certificate served", func() bool {
			c := tlsClient(newServerCA, &pinnedNext)
			c.Transport.(*http.Transport).DisableKeepAlives = true
			req, _ := http.NewRequest(http.MethodPost, ts.url, strings.NewReader(`{}`))
			req.Header.Set("Content-Type", "application/json")
			res, err := c.Do(req)
			if err != nil {
				return false
			}
			res.Body.Close()
			return res.StatusCode == 200
		})
	})
}

func TestForwardedClientCertificate(t *testing.T) {
	clientCA := newCert(t, "client-ca", true, nil)
	signed := newCert(t, "entra", false, &clientCA)
	stranger := newCert(t, "stranger", false, nil)
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, CAFile), clientCA.pem)

	// ingress-nginx escapes as a URI component: space is %20, '+' is %2B.
	nginx := func(c testCert) string { return strings.ReplaceAll(url.QueryEscape(c.pem), "+", "%20") }
	traefik := func(c testCert) string { return base64.StdEncoding.EncodeToString(c.cert.Raw) }
	traefikChain := func(c testCert) string {
		return url.QueryEscape(traefik(c) + "," + base64.StdEncoding.EncodeToString(clientCA.cert.Raw))
	}

	for _, tc := range []struct {
		name    string
		header  string
		trusted []string
		value   string
		code    int
		reason  string
	}{
		{"nginx from trusted proxy", HeaderNginxClientCert, []string{"127.0.0.0/8"}, nginx(signed), 200, ""},
		{"nginx form-escaped", HeaderNginxClientCert, []string{"127.0.0.0/8"}, url.QueryEscape(signed.pem), 200, ""},
		{"nginx IPv6 trusted list, IPv4 peer", HeaderNginxClientCert, []string{"::1/128"}, nginx(signed), 401, reasonUntrustedProxy},
		{"nginx from untrusted proxy", HeaderNginxClientCert, []string{"10.0.0.0/8"}, nginx(signed), 401, reasonUntrustedProxy},
		{"nginx untrusted certificate", HeaderNginxClientCert, []string{"127.0.0.1/32"}, nginx(stranger), 401, reasonUntrustedCert},
		{"nginx garbage", HeaderNginxClientCert, []string{"127.0.0.1/32"}, "%%%", 401, reasonBadForwarded},
		{"nginx no PEM", HeaderNginxClientCert, []string{"127.0.0.1/32"}, "hello", 401, reasonBadForwarded},
		{"traefik from trusted proxy", HeaderTraefikClientCert, []string{"127.0.0.1/32"}, traefik(signed), 200, ""},
		{"traefik escaped chain", HeaderTraefikClientCert, []string{"127.0.0.1/32"}, traefikChain(signed), 200, ""},
		{"traefik from untrusted proxy", HeaderTraefikClientCert, []string{"192.168.0.0/16"}, traefik(signed), 401, reasonUntrustedProxy},
		{"traefik untrusted certificate", HeaderTraefikClientCert, []string{"127.0.0.1/32"}, traefik(stranger), 401, reasonUntrustedCert},
		{"traefik garbage", HeaderTraefikClientCert, []string{"127.0.0.1/32"}, "not*base64", 401, reasonBadForwarded},
		{"no header from trusted proxy", HeaderTraefikClientCert, []string{"127.0.0.1/32"}, "", 401, reasonNoCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := certConnector(&v1alpha1.ForwardedClientCertificate{Header: tc.header, TrustedProxies: tc.trusted})
			ts := start(t, newServer(t, conn, continueEval, Options{SecretsDir: secrets}))
			var h map[string]string
			if tc.value != "" {
				h = map[string]string{tc.header: tc.value}
			}
			res := do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, h)
			if res.code != tc.code {
				t.Fatalf("code = %d, want %d", res.code, tc.code)
			}
			if tc.reason != "" {
				if v := counterValue(t, ts.Server, "apiconnector_auth_failures_total", map[string]string{"reason": tc.reason}); v != 1 {
					t.Errorf("reason %s counted %v", tc.reason, v)
				}
			}
		})
	}

	t.Run("header ignored when forwarded mode is off", func(t *testing.T) {
		ts := start(t, newServer(t, certConnector(nil), continueEval, Options{SecretsDir: secrets}))
		res := do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, map[string]string{HeaderNginxClientCert: nginx(signed)})
		if res.code != 401 {
			t.Errorf("code = %d", res.code)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
