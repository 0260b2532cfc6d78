package entra

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

var (
	testKeysOnce sync.Once
	testKeys     [2]*rsa.PrivateKey
)

// rsaKeys are two 2048-bit keys, generated once per test binary.
func rsaKeys(t testing.TB) [2]*rsa.PrivateKey {
	t.Helper()
	testKeysOnce.Do(func() {
		for i := range testKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testKeys[i] = k
		}
	})
	return testKeys
}

// SealPasswordContext encrypts claims to pub as Entra does: an unsecured JWT (alg none) inside a
// compact JWE. Tests only.
func sealPasswordContext(t testing.TB, pub *rsa.PublicKey, alg jose.KeyAlgorithm, claims map[string]any) string {
	t.Helper()
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: alg, Key: pub}, (&jose.EncrypterOptions{}).WithContentType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := json.Marshal(claims)
	inner := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
	obj, err := enc.Encrypt([]byte(inner))
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var testContext = map[string]any{"username": "casey@contoso.com", "user-password": "C0rrect horse!", "nonce": "c8b7f4b6-7a3e-4a53-9a4e-0c5f7a3b1d2e"}

func TestDecryptPasswordContext(t *testing.T) {
	k := rsaKeys(t)
	good := sealPasswordContext(t, &k[0].PublicKey, jose.RSA_OAEP_256, testContext)
	s, nonce, err := DecryptPasswordContext(good, []*rsa.PrivateKey{k[0]})
	if err != nil || s["username"] != "casey@contoso.com" || s["password"] != "C0rrect horse!" || nonce != testContext["nonce"] {
		t.Fatalf("%v %q %v", s, nonce, err)
	}
	// Rollover: the context is encrypted to the second configured key; RSA-OAEP works too.
	other := sealPasswordContext(t, &k[1].PublicKey, jose.RSA_OAEP, testContext)
	if _, _, err := DecryptPasswordContext(other, []*rsa.PrivateKey{k[0], k[1]}); err != nil {
		t.Errorf("second key: %v", err)
	}
	// Plain JSON claims inside the JWE are accepted too.
	enc, _ := jose.NewEncrypter(jose.A128CBC_HS256, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: &k[0].PublicKey}, nil)
	obj, _ := enc.Encrypt([]byte(`{"username":"u","user-password":"p","nonce":"n"}`))
	plainJSON, _ := obj.CompactSerialize()
	if s, n, err := DecryptPasswordContext(plainJSON, []*rsa.PrivateKey{k[0]}); err != nil || s["password"] != "p" || n != "n" {
		t.Errorf("JSON payload: %v %q %v", s, n, err)
	}

	tampered := []byte(good)
	parts := strings.Split(good, ".")
	i := len(parts[0]) + len(parts[1]) + len(parts[2]) + 3 + 2             // inside the ciphertext
	tampered[i] = map[bool]byte{true: 'B', false: 'A'}[tampered[i] == 'A'] // another base64url character
	rsa15 := sealPasswordContext(t, &k[0].PublicKey, jose.RSA1_5, testContext)
	noNonce := sealPasswordContext(t, &k[0].PublicKey, jose.RSA_OAEP_256, map[string]any{"username": "u", "user-password": "p"})
	for _, tt := range []struct {
		name, jwe, reason string
		keys              []*rsa.PrivateKey
	}{
		{"no key", good, "no_key", nil},
		{"wrong key", good, "decrypt", []*rsa.PrivateKey{k[1]}},
		{"tampered", string(tampered), "decrypt", []*rsa.PrivateKey{k[0]}},
		{"RSA1_5 refused", rsa15, "malformed", []*rsa.PrivateKey{k[0]}},
		{"the docs' placeholder", "{5-part-JWE}", "malformed", []*rsa.PrivateKey{k[0]}},
		{"a JWS", "eyJhbGciOiJub25lIn0.e30.", "malformed", []*rsa.PrivateKey{k[0]}},
		{"no nonce", noNonce, "payload", []*rsa.PrivateKey{k[0]}},
		{"huge", strings.Repeat("a.", 2) + strings.Repeat("a", 1<<15) + ".a.a", "malformed", []*rsa.PrivateKey{k[0]}},
	} {
		_, _, err := DecryptPasswordContext(tt.jwe, tt.keys)
		var pe *PasswordContextError
		if !errors.As(err, &pe) || pe.Reason != tt.reason {
			t.Errorf("%s: %v, want reason %s", tt.name, err, tt.reason)
		}
		if err != nil && strings.Contains(err.Error(), "C0rrect") {
			t.Errorf("%s: the error quotes the password", tt.name)
		}
	}
}

func TestParseRSAPrivateKey(t *testing.T) {
	k := rsaKeys(t)[0]
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k)
	for name, b := range map[string][]byte{
		"PKCS#8":           pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"PKCS#1":           pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}),
		"after a cert PEM": append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...),
	} {
		got, err := ParseRSAPrivateKey(b)
		if err != nil || !got.Equal(k) {
			t.Errorf("%s: %v", name, err)
		}
	}
	for _, b := range [][]byte{nil, []byte("secret"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("x")})} {
		if _, err := ParseRSAPrivateKey(b); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: %v", b, err)
		}
	}
}

// The documented request decodes with the user as claims and the JWE kept apart (and out of
// Canonical); the documented MigratePassword answer echoes the nonce.
func TestPasswordSubmitGolden(t *testing.T) {
	req, err := DecodeExtensionRequest(golden(t, "request-passwordsubmit.json"), StepPasswordSubmit)
	if err != nil {
		t.Fatal(err)
	}
	if req.Claims["mail"] != "casey@contoso.com" || req.Extension.EncryptedPasswordContext != "{5-part-JWE}" || strings.Contains(string(req.Canonical()), "5-part-JWE") {
		t.Errorf("claims %v, context %q, canonical %s", req.Claims, req.Extension.EncryptedPasswordContext, req.Canonical())
	}
	status, body := EncodeExtensionDecision(StepPasswordSubmit, &Decision{Action: ActionMigratePassword, Nonce: "{nonce-value-from-external-id}"})
	if status != http.StatusOK || string(mustCanon(t, body)) != string(mustCanon(t, golden(t, "response-passwordsubmit-migratepassword.json"))) {
		t.Errorf("%d %s", status, body)
	}
	if _, err := DecodeExtensionRequest([]byte(`{"type":"microsoft.graph.authenticationEvent.passwordSubmit","data":{"@odata.type":"microsoft.graph.onPasswordSubmitCalloutData"}}`), StepPasswordSubmit); err == nil {
		t.Error("a request without encryptedPasswordContext was accepted")
	}
}

func TestEncodePasswordSubmit(t *testing.T) {
	for _, tt := range []struct {
		d    *Decision
		want string
	}{
		{&Decision{Action: ActionMigratePassword, Nonce: "n"}, `{"data":{"@odata.type":"microsoft.graph.onPasswordSubmitResponseData","actions":[{"@odata.type":"microsoft.graph.passwordSubmit.MigratePassword"}],"nonce":"n"}}`},
		{&Decision{Action: ActionUpdatePassword, Nonce: "n"}, `{"data":{"@odata.type":"microsoft.graph.onPasswordSubmitResponseData","actions":[{"@odata.type":"microsoft.graph.passwordSubmit.UpdatePassword"}],"nonce":"n"}}`},
		{&Decision{Action: ActionRetry, Nonce: "n"}, `{"data":{"@odata.type":"microsoft.graph.onPasswordSubmitResponseData","actions":[{"@odata.type":"microsoft.graph.passwordSubmit.Retry"}],"nonce":"n"}}`},
		// No rule matched (or failurePolicy Ignore): never a migration.
		{&Decision{Action: ActionContinue, Nonce: "n"}, `{"data":{"@odata.type":"microsoft.graph.onPasswordSubmitResponseData","actions":[{"@odata.type":"microsoft.graph.passwordSubmit.Retry"}],"nonce":"n"}}`},
		{&Decision{Action: ActionShowBlockPage, UserMessage: "Locked.", Nonce: "n"}, `{"data":{"@odata.type":"microsoft.graph.onPasswordSubmitResponseData","actions":[{"@odata.type":"microsoft.graph.passwordSubmit.Block","message":"Locked.","title":"Sign-in blocked"}],"nonce":"n"}}`},
		// The context could not be opened: no nonce to echo.
		{nil, `{"data":{"@odata.type":"microsoft.graph.onPasswordSubmitResponseData","actions":[{"@odata.type":"microsoft.graph.passwordSubmit.Block","message":"` + DefaultFailureMessage + `","title":"Sign-in blocked"}]}}`},
		{&Decision{Action: "Allow"}, `{"data":{"@odata.type":"microsoft.graph.onPasswordSubmitResponseData","actions":[{"@odata.type":"microsoft.graph.passwordSubmit.Block","message":"` + DefaultFailureMessage + `","title":"Sign-in blocked"}]}}`},
	} {
		status, body := EncodeExtensionDecision(StepPasswordSubmit, tt.d)
		if status != http.StatusOK || string(mustCanon(t, body)) != string(mustCanon(t, []byte(tt.want))) {
			t.Errorf("%+v:\n got %d %s\nwant %s", tt.d, status, body, tt.want)
		}
	}
}

// BenchmarkOpenPasswordContext is what the server does per OnPasswordSubmit request: read the
// PEM keys (re-read every request so rotation applies at once) and decrypt the context, here with
// the second of two keys (a rollover, the worst case).
func BenchmarkOpenPasswordContext(b *testing.B) {
	k := rsaKeys(b)
	jwe := sealPasswordContext(b, &k[1].PublicKey, jose.RSA_OAEP_256, testContext)
	var pems [][]byte
	for _, key := range k {
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		pems = append(pems, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	b.ReportAllocs()
	for b.Loop() {
		var keys []*rsa.PrivateKey
		for _, p := range pems {
			key, err := ParseRSAPrivateKey(p)
			if err != nil {
				b.Fatal(err)
			}
			keys = append(keys, key)
		}
		if _, _, err := DecryptPasswordContext(jwe, keys); err != nil {
			b.Fatal(err)
		}
	}
}
