package graphtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

func assertionToken(t *testing.T, s *Server, clientID, assertion string) (int, string) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "scope": {s.URL() + "/.default"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion}}
	resp, err := s.HTTPClient().PostForm(s.URL()+"/"+s.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Description string `json:"error_description"`
	}
	_ = jsonDecode(resp.Body, &out)
	return resp.StatusCode, out.Description
}

func sign(t *testing.T, key *rsa.PrivateKey, headers map[jose.HeaderKey]any, c jwt.Claims) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: headers}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.PS256, Key: key}, opts.WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCertificateAssertionChecks(t *testing.T) {
	s := New(t)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "app"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert, _ := x509.ParseCertificate(der)
	s.AddAppCertificate("app", cert)
	sum := sha256.Sum256(der)
	x5t := map[jose.HeaderKey]any{"x5t#S256": base64.StdEncoding.EncodeToString(sum[:])}
	now := time.Now()
	good := jwt.Claims{Issuer: "app", Subject: "app", Audience: jwt.Audience{s.tokenEndpoint()}, ID: "1",
		NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(10 * time.Minute))}
	if status, msg := assertionToken(t, s, "app", sign(t, key, x5t, good)); status != 200 {
		t.Fatalf("valid assertion: %d %s", status, msg)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	wrongAud := good
	wrongAud.Audience = jwt.Audience{"https://login.microsoftonline.com/x/oauth2/v2.0/token"}
	expired := good
	expired.Expiry = jwt.NewNumericDate(now.Add(-time.Hour))
	for name, tc := range map[string]struct {
		assertion, code string
	}{
		"forged signature":   {sign(t, other, x5t, good), "AADSTS7000274"},
		"wrong audience":     {sign(t, key, x5t, wrongAud), "AADSTS700024"},
		"expired":            {sign(t, key, x5t, expired), "AADSTS700024"},
		"unknown thumbprint": {sign(t, key, map[jose.HeaderKey]any{"x5t#S256": "AAAA"}, good), "AADSTS700027"},
		"garbage":            {"not.a.jwt", "AADSTS50027"},
	} {
		status, msg := assertionToken(t, s, "app", tc.assertion)
		if status != 401 || !strings.HasPrefix(msg, tc.code+":") {
			t.Errorf("%s: %d %s, want %s", name, status, msg, tc.code)
		}
	}
}

func TestFederatedAssertionChecks(t *testing.T) {
	s := New(t)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: string(jose.PS256), Use: "sig"}}}
	s.AddFederatedCredential("app", "https://issuer.example", "system:serviceaccount:ns:sa", "api://AzureADTokenExchange",
		func(context.Context) (jose.JSONWebKeySet, error) { return jwks, nil })
	kid := map[jose.HeaderKey]any{"kid": "k1"}
	now := time.Now()
	good := jwt.Claims{Issuer: "https://issuer.example", Subject: "system:serviceaccount:ns:sa", Audience: jwt.Audience{"api://AzureADTokenExchange"},
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}
	if status, msg := assertionToken(t, s, "app", sign(t, key, kid, good)); status != 200 {
		t.Fatalf("valid: %d %s", status, msg)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	wrongAud := good
	wrongAud.Audience = jwt.Audience{"other"}
	wrongIss := good
	wrongIss.Issuer = "https://evil.example"
	for name, tc := range map[string]struct{ assertion, code string }{
		"forged":         {sign(t, other, kid, good), "AADSTS700027"},
		"wrong audience": {sign(t, key, kid, wrongAud), "AADSTS70021"},
		"wrong issuer":   {sign(t, key, kid, wrongIss), "AADSTS70021"},
	} {
		if status, msg := assertionToken(t, s, "app", tc.assertion); status != 401 || !strings.HasPrefix(msg, tc.code+":") {
			t.Errorf("%s: %d %s, want %s", name, status, msg, tc.code)
		}
	}
}

func TestFaultInjectionIsCountedAcrossGoroutines(t *testing.T) {
	s := New(t)
	s.AddApp("app", "secret")
	_, tok := token(t, s, "app", "secret")
	s.FailNext(5, 503)
	s.Throttle(3, time.Second)
	codes := make(chan int, 20)
	for range 20 {
		go func() {
			req, _ := http.NewRequest(http.MethodGet, s.URL()+"/v1.0/applications(appId='x')", nil)
			req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
			resp, err := s.HTTPClient().Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "1" {
				codes <- -1
				return
			}
			codes <- resp.StatusCode
		}()
	}
	n := map[int]int{}
	for range 20 {
		n[<-codes]++
	}
	if n[503] != 5 || n[429] != 3 || n[404] != 12 {
		t.Fatalf("answers %v, want 5×503, 3×429, 12×404", n)
	}
}
