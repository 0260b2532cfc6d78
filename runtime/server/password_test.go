package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/rules"
)

// seal encrypts a password context to pub as Entra does: an unsecured JWT inside a compact JWE.
func seal(t *testing.T, pub *rsa.PublicKey, username, password, nonce string) string {
	t.Helper()
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.RSA_OAEP_256, Key: pub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := json.Marshal(map[string]string{"username": username, "user-password": password, "nonce": nonce})
	obj, err := enc.Encrypt([]byte(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString(c) + "."))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := obj.CompactSerialize()
	return s
}

// passwordRequest is Microsoft's documented OnPasswordSubmit request with a real context.
func passwordRequest(t *testing.T, jwe string) string {
	return strings.Replace(readGolden(t, "request-passwordsubmit.json"), "{5-part-JWE}", jwe, 1)
}

// Just-in-time password migration end to end: the server decrypts the context with the key from
// a Secret (either of two during a rollover), the rules engine verifies the password with a
// legacy system on loopback and the rules answer; the nonce is echoed. A wrong key, a tampered
// context and a replayed nonce answer Block, counted by reason. The password never reaches the
// logs, even with --log-claims, nor the answer.
func TestPasswordSubmitServe(t *testing.T) {
	p := newIDP(t)
	tok := sign(t, p.key, jose.RS256, p.kid, p.validClaims())
	var keys [3]*rsa.PrivateKey
	secretFiles := map[string][]byte{}
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		secretFiles[[]string{"current.pem", "next.pem", "unrelated.pem"}[i]] = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	var mu sync.Mutex
	var legacyGot []map[string]string
	legacy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in map[string]string
		json.NewDecoder(r.Body).Decode(&in)
		mu.Lock()
		legacyGot = append(legacyGot, in)
		mu.Unlock()
		ok := in["password"] == "C0rrect horse!" || in["password"] == "weak"
		json.NewEncoder(w).Encode(map[string]any{"valid": ok, "weak": in["password"] == "weak", "locked": in["username"] == "locked@contoso.com"})
	}))
	defer legacy.Close()

	conn := bearerConnector(v1alpha1.StepOnPasswordSubmit, p.issuer())
	conn.Spec.PasswordDecryption = &v1alpha1.PasswordDecryption{Keys: []v1alpha1.SecretKeySelector{
		{Name: "jit-keys", Key: "current.pem"}, {Name: "jit-keys", Key: "next.pem"}}}
	conn.Spec.Calls = []v1alpha1.Call{{Name: "verify", URL: legacy.URL + "/verify", Method: http.MethodPost,
		Body: "{'username': credentials.username, 'password': credentials.password, 'user': claims.id}"}}
	conn.Spec.Rules = []v1alpha1.Rule{
		{Name: "locked", When: "calls.verify.body.locked == true", Block: &v1alpha1.Outcome{Message: "Your account is locked."}},
		{Name: "weak", When: "calls.verify.body.valid == true && calls.verify.body.weak == true", UpdatePassword: &v1alpha1.PasswordOutcome{}},
		{Name: "verified", When: "calls.verify.body.valid == true", MigratePassword: &v1alpha1.PasswordOutcome{}},
	}
	forEngine := conn.DeepCopy() // the engine ignores authentication; the test IdP is on http
	forEngine.Spec.Authentication.Bearer.Issuer = ""
	eng, err := rules.Compile(forEngine, rules.Options{EgressAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	var logs syncBuffer
	s := newServer(t, conn, eng, Options{SecretsDir: t.TempDir(), LogClaims: true, Logger: jsonLogger(&logs),
		SecretKeys: func(ref v1alpha1.SecretKeySelector) ([]byte, error) {
			if b, ok := secretFiles[ref.Key]; ok && ref.Name == "jit-keys" {
				return b, nil
			}
			return nil, errors.New("no such file")
		}})
	ts := start(t, s)
	post := func(jwe string) (int, map[string]any) {
		r := do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", passwordRequest(t, jwe), map[string]string{"Authorization": "Bearer " + tok})
		var out map[string]any
		if err := json.Unmarshal([]byte(r.body), &out); err != nil {
			t.Fatalf("%d %q", r.code, r.body)
		}
		if strings.Contains(r.body, "C0rrect") {
			t.Errorf("the answer holds the password: %s", r.body)
		}
		return r.code, out["data"].(map[string]any)
	}
	action := func(data map[string]any) string {
		a := data["actions"].([]any)[0].(map[string]any)
		return strings.TrimPrefix(a["@odata.type"].(string), "microsoft.graph.passwordSubmit.")
	}

	for _, tt := range []struct {
		name                  string
		key                   *rsa.PublicKey
		user, password, nonce string
		wantAction, wantNonce string
	}{
		{"verified password is migrated", &keys[0].PublicKey, "casey@contoso.com", "C0rrect horse!", "n-1", "MigratePassword", "n-1"},
		{"encrypted to the next key during a rollover", &keys[1].PublicKey, "casey@contoso.com", "C0rrect horse!", "n-2", "MigratePassword", "n-2"},
		{"weak password must be updated", &keys[0].PublicKey, "casey@contoso.com", "weak", "n-3", "UpdatePassword", "n-3"},
		{"wrong password may retry", &keys[0].PublicKey, "casey@contoso.com", "guess", "n-4", "Retry", "n-4"},
		{"locked account is blocked", &keys[0].PublicKey, "locked@contoso.com", "C0rrect horse!", "n-5", "Block", "n-5"},
		{"a key that is not configured", &keys[2].PublicKey, "casey@contoso.com", "C0rrect horse!", "n-6", "Block", ""},
		{"a replayed nonce", &keys[0].PublicKey, "casey@contoso.com", "C0rrect horse!", "n-1", "Block", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, data := post(seal(t, tt.key, tt.user, tt.password, tt.nonce))
			if code != http.StatusOK || action(data) != tt.wantAction || (data["nonce"] != nil) != (tt.wantNonce != "") || (tt.wantNonce != "" && data["nonce"] != tt.wantNonce) {
				t.Errorf("got %d %v, want %s with nonce %q", code, data, tt.wantAction, tt.wantNonce)
			}
		})
	}
	good := seal(t, &keys[0].PublicKey, "casey@contoso.com", "C0rrect horse!", "n-7")
	tampered := []byte(good)
	i := strings.LastIndex(good, ".") - 3 // inside the ciphertext
	tampered[i] = map[bool]byte{true: 'B', false: 'A'}[tampered[i] == 'A']
	if code, data := post(string(tampered)); code != http.StatusOK || action(data) != "Block" {
		t.Errorf("tampered: %d %v", code, data)
	}
	if code, data := post("{5-part-JWE}"); code != http.StatusOK || action(data) != "Block" {
		t.Errorf("not a JWE: %d %v", code, data)
	}

	mu.Lock()
	if len(legacyGot) != 5 || legacyGot[0]["password"] != "C0rrect horse!" || legacyGot[0]["username"] != "casey@contoso.com" || legacyGot[0]["user"] != "00aa00aa-bb11-cc22-dd33-44ee44ee44ee" {
		t.Errorf("the legacy system received %v", legacyGot)
	}
	mu.Unlock()
	for reason, want := range map[string]float64{"decrypt": 2, "replay": 1, "malformed": 1} {
		if got := testutil.ToFloat64(s.metrics.passwordContext.WithLabelValues(reason)); got != want {
			t.Errorf("apiconnector_password_context_failures_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if l := logs.String(); strings.Contains(l, "C0rrect") || strings.Contains(l, "guess") || strings.Contains(l, `"password"`) || !strings.Contains(l, `"reason":"replay"`) {
		t.Errorf("logs:\n%s", l)
	}
}

// A nonce is refused again within nonceTTL, accepted after it, and the cache never holds more
// than maxNonces.
func TestNonceCache(t *testing.T) {
	var c nonceCache
	t0 := time.Unix(1_800_000_000, 0)
	if !c.add("a", t0) || c.add("a", t0.Add(nonceTTL)) || !c.add("a", t0.Add(nonceTTL+time.Second)) {
		t.Error("TTL not honoured")
	}
	for i := range maxNonces + 10 {
		c.add(strconv.Itoa(i), t0.Add(nonceTTL+2*time.Second))
	}
	if len(c.seen) > maxNonces || len(c.order) > maxNonces {
		t.Errorf("cache holds %d nonces (%d in order)", len(c.seen), len(c.order))
	}
}
