package server

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/apiconnector/operator/api/v1alpha1"
)

func fingerprintHex(c testCert) string {
	sum := sha256.Sum256(c.cert.Raw)
	return hex.EncodeToString(sum[:])
}

// opensslFingerprint is the form `openssl x509 -fingerprint -sha256` prints: upper case, colons.
func opensslFingerprint(c testCert) string {
	sum := sha256.Sum256(c.cert.Raw)
	pairs := make([]string, len(sum))
	for i, b := range sum {
		pairs[i] = strings.ToUpper(hex.EncodeToString([]byte{b}))
	}
	return strings.Join(pairs, ":")
}

func withEKU(eku ...x509.ExtKeyUsage) func(*x509.Certificate) {
	return func(c *x509.Certificate) { c.ExtKeyUsage = eku }
}

// A CA in ca.crt issues certificates to others too: only the certificates the constraints name,
// issued for client authentication, get in (not, for example, a serverAuth-only certificate for
// CN=www.attacker.example from the same CA).
func TestClientCertificateConstraints(t *testing.T) {
	serverCA := newCert(t, "server-ca", true, nil)
	serverCert := newCert(t, "127.0.0.1", false, &serverCA)
	clientCA := newCert(t, "client-ca", true, nil)
	const entraName = "entra.contoso.example"
	entra := newCert(t, entraName, false, &clientCA, withEKU(x509.ExtKeyUsageClientAuth))
	entraNext := newCert(t, entraName, false, &clientCA, withEKU(x509.ExtKeyUsageClientAuth))
	attacker := newCert(t, "www.attacker.example", false, &clientCA, withEKU(x509.ExtKeyUsageServerAuth))
	serverOnly := newCert(t, entraName, false, &clientCA, withEKU(x509.ExtKeyUsageServerAuth))
	noEKU := newCert(t, entraName, false, &clientCA, withEKU())
	// The subject matches through a DNS SAN only.
	sanOnly := newCert(t, "something else", false, &clientCA, withEKU(x509.ExtKeyUsageClientAuth), func(c *x509.Certificate) {
		c.DNSNames = []string{"ENTRA.contoso.example"}
	})
	// An intermediate restricted to server authentication cannot vouch for a client.
	serverInter := newCert(t, "server-intermediate", true, &clientCA, withEKU(x509.ExtKeyUsageServerAuth))
	viaServerInter := newCert(t, entraName, false, &serverInter, withEKU(x509.ExtKeyUsageClientAuth))

	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tls.crt"), serverCert.pem+serverCA.pem)
	writeFile(t, filepath.Join(dir, "tls.key"), serverCert.keyPEM(t))
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, CAFile), clientCA.pem)

	type client struct {
		name   string
		cert   testCert
		chain  []testCert // intermediates sent along
		reason string     // "" means accepted
	}
	for _, tc := range []struct {
		name    string
		cc      v1alpha1.ClientCertificateAuth
		clients []client
	}{
		{"allowed subjects", v1alpha1.ClientCertificateAuth{AllowedSubjects: []string{entraName}}, []client{
			{"the named client", entra, nil, ""},
			{"rollover successor", entraNext, nil, ""},
			{"subject in a DNS SAN", sanOnly, nil, ""},
			{"another subject from the same CA", attacker, nil, reasonCertNotAllowed},
			{"serverAuth-only certificate", serverOnly, nil, reasonCertUsage},
			{"no extended key usage", noEKU, nil, reasonCertUsage},
			{"intermediate for serverAuth only", viaServerInter, []testCert{serverInter}, reasonCertUsage},
		}},
		{"pinned fingerprints", v1alpha1.ClientCertificateAuth{AllowedFingerprints: []string{fingerprintHex(entra), opensslFingerprint(entraNext)}}, []client{
			{"first pin", entra, nil, ""},
			{"second pin (rollover)", entraNext, nil, ""},
			{"same subject, not pinned", sanOnly, nil, reasonCertNotAllowed},
			{"another subject from the same CA", attacker, nil, reasonCertNotAllowed},
		}},
		{"extended key usage waived", v1alpha1.ClientCertificateAuth{AllowedSubjects: []string{entraName}, AllowAnyExtKeyUsage: true}, []client{
			{"serverAuth-only certificate", serverOnly, nil, ""},
			{"no extended key usage", noEKU, nil, ""},
			{"another subject from the same CA", attacker, nil, reasonCertNotAllowed},
		}},
		{"both constraints must match", v1alpha1.ClientCertificateAuth{AllowedSubjects: []string{entraName}, AllowedFingerprints: []string{fingerprintHex(entra)}}, []client{
			{"pinned and named", entra, nil, ""},
			{"named, not pinned", entraNext, nil, reasonCertNotAllowed},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := certConnector(nil)
			cc := tc.cc
			cc.SecretRef = conn.Spec.Authentication.ClientCertificate.SecretRef
			conn.Spec.Authentication.ClientCertificate = &cc
			ts := start(t, newServer(t, conn, continueEval, Options{SecretsDir: secrets,
				TLSCertFile: filepath.Join(dir, "tls.crt"), TLSKeyFile: filepath.Join(dir, "tls.key")}))
			for _, c := range tc.clients {
				t.Run(c.name, func(t *testing.T) {
					cl := tlsClient(serverCA, &c.cert)
					tlsCfg := cl.Transport.(*http.Transport).TLSClientConfig
					for _, i := range c.chain {
						tlsCfg.Certificates[0].Certificate = append(tlsCfg.Certificates[0].Certificate, i.cert.Raw)
					}
					before := counterValue(t, ts.Server, "apiconnector_auth_failures_total", map[string]string{"reason": c.reason})
					res := do(t, cl, http.MethodPost, ts.url, "application/json", `{}`, nil)
					want := http.StatusOK
					if c.reason != "" {
						want = http.StatusUnauthorized
					}
					if res.code != want {
						t.Fatalf("code = %d, want %d", res.code, want)
					}
					if c.reason != "" {
						if after := counterValue(t, ts.Server, "apiconnector_auth_failures_total", map[string]string{"reason": c.reason}); after != before+1 {
							t.Errorf("reason %s counted %v -> %v", c.reason, before, after)
						}
					}
				})
			}
		})
	}

	t.Run("a connector without constraints is refused", func(t *testing.T) {
		conn := certConnector(nil)
		conn.Spec.Authentication.ClientCertificate.AllowedSubjects = nil
		if _, err := New(conn, continueEval, Options{SecretsDir: secrets}); err == nil || !strings.Contains(err.Error(), "allowedFingerprints or allowedSubjects") {
			t.Errorf("New = %v", err)
		}
		conn.Spec.Authentication.ClientCertificate.AllowedFingerprints = []string{"abc"}
		if _, err := New(conn, continueEval, Options{SecretsDir: secrets}); err == nil || !strings.Contains(err.Error(), "SHA-256") {
			t.Errorf("New with a bad fingerprint = %v", err)
		}
	})
}

// The forwarded header is checked like a handshake certificate: a certificate is public, so the
// CA's other certificates (or Entra's own certificate issued for another purpose) do not pass.
func TestForwardedClientCertificateConstraints(t *testing.T) {
	clientCA := newCert(t, "client-ca", true, nil)
	entra := newCert(t, "entra", false, &clientCA, withEKU(x509.ExtKeyUsageClientAuth))
	attacker := newCert(t, "www.attacker.example", false, &clientCA, withEKU(x509.ExtKeyUsageServerAuth))
	serverOnly := newCert(t, "entra", false, &clientCA, withEKU(x509.ExtKeyUsageServerAuth))
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, CAFile), clientCA.pem)
	conn := certConnector(&v1alpha1.ForwardedClientCertificate{Header: HeaderTraefikClientCert, TrustedProxies: []string{"127.0.0.0/8"}})
	conn.Spec.Authentication.ClientCertificate.AllowedSubjects = []string{"entra"}
	ts := start(t, newServer(t, conn, continueEval, Options{SecretsDir: secrets}))
	for _, tc := range []struct {
		name string
		cert testCert
		code int
	}{
		{"the named client", entra, 200},
		{"another certificate of the CA", attacker, 401},
		{"the right name, issued for servers", serverOnly, 401},
	} {
		res := do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`,
			map[string]string{HeaderTraefikClientCert: base64.StdEncoding.EncodeToString(tc.cert.cert.Raw)})
		if res.code != tc.code {
			t.Errorf("%s: code = %d, want %d", tc.name, res.code, tc.code)
		}
	}
}

// A public root in ca.crt trusts every certificate of the web PKI with the allowed name; it is
// accepted only with fingerprint pins.
func TestPublicCARequiresPins(t *testing.T) {
	var root *x509.Certificate
	for r := range bundle.Roots() {
		if c, err := x509.ParseCertificate(r.Certificate); err == nil && r.Constraint == nil {
			root = c
			break
		}
	}
	if root == nil {
		t.Fatal("no root in the embedded bundle")
	}
	own := newCert(t, "own-ca", true, nil)
	entra := newCert(t, "entra", false, &own, withEKU(x509.ExtKeyUsageClientAuth))
	secrets := t.TempDir()
	writeFile(t, filepath.Join(secrets, CAFile), string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw}))+own.pem)
	fwd := &v1alpha1.ForwardedClientCertificate{Header: HeaderTraefikClientCert, TrustedProxies: []string{"127.0.0.0/8"}}
	header := map[string]string{HeaderTraefikClientCert: base64.StdEncoding.EncodeToString(entra.cert.Raw)}

	logs := &syncBuffer{}
	ts := start(t, newServer(t, certConnector(fwd), continueEval, Options{SecretsDir: secrets, Logger: jsonLogger(logs)}))
	if res := ts.get(t, "/readyz"); res.code != http.StatusServiceUnavailable || !strings.Contains(res.body, "public CA") {
		t.Errorf("/readyz = %d %q, want 503 naming the public CA", res.code, res.body)
	}
	if res := do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, header); res.code != 401 {
		t.Errorf("code = %d, want 401", res.code)
	}
	if v := counterValue(t, ts.Server, "apiconnector_auth_failures_total", map[string]string{"reason": reasonPublicCA}); v != 1 {
		t.Errorf("%s counted %v", reasonPublicCA, v)
	}
	if !strings.Contains(logs.String(), "allowedFingerprints") {
		t.Errorf("the refusal is not logged: %s", logs.String())
	}

	pinned := certConnector(fwd)
	pinned.Spec.Authentication.ClientCertificate.AllowedFingerprints = []string{fingerprintHex(entra)}
	ts = start(t, newServer(t, pinned, continueEval, Options{SecretsDir: secrets}))
	if res := ts.get(t, "/readyz"); res.code != 200 {
		t.Errorf("/readyz with pins = %d %q", res.code, res.body)
	}
	if res := do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, header); res.code != 200 {
		t.Errorf("pinned client: code = %d, want 200", res.code)
	}

	// Own CAs, leaves and public leaves pinned in ca.crt are not public CAs.
	if isPublicCA(own.cert, nil) || isPublicCA(entra.cert, nil) {
		t.Error("a private CA or a leaf counted as public")
	}
	if !isPublicCA(root, nil) {
		t.Error("a Mozilla root not recognised")
	}
}

// A CA counts as public when it chains to a public root through the bundle's other certificates,
// whatever their validity periods; a chain to another root does not.
func TestPublicCAThroughIntermediates(t *testing.T) {
	public := newCert(t, "Public Root", true, nil)
	other := newCert(t, "Private Root", true, nil)
	expired := func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	}
	mid := newCert(t, "Public Intermediate", true, &public, expired)
	issuing := newCert(t, "Public Issuing CA", true, &mid)
	roots := &publicRoots{ids: map[string]bool{certID(public.cert): true},
		bySubject: map[string][]*x509.Certificate{string(public.cert.RawSubject): {public.cert}}}
	if !roots.anchor(issuing.cert, []*x509.Certificate{issuing.cert, mid.cert}) {
		t.Error("a CA two levels below a public root, through an expired intermediate, is not public")
	}
	if roots.anchor(issuing.cert, []*x509.Certificate{issuing.cert}) {
		t.Error("without its intermediate the chain cannot be followed, yet counted as public")
	}
	if roots.anchor(newCert(t, "Own CA", true, &other).cert, nil) {
		t.Error("a CA of another root counted as public")
	}
}
