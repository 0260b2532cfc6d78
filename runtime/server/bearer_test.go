package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

const (
	testTenant   = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
	testAudience = "00001111-aaaa-2222-bbbb-3333cccc4444"
)

// idp is a loopback OpenID provider: discovery document and JWKS with one RSA key.
type idp struct {
	srv     *httptest.Server
	key     *rsa.PrivateKey
	kid     string
	fetches atomic.Int32
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &idp{key: key, kid: "test-key-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+testTenant+"/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": p.issuer(), "jwks_uri": p.srv.URL + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) issuer() string { return p.srv.URL + "/" + testTenant + "/v2.0" }

type tokenClaims struct {
	jwt.Claims
	AZP   string `json:"azp,omitempty"`
	AppID string `json:"appid,omitempty"`
	Ver   string `json:"ver,omitempty"`
}

func (p *idp) validClaims() tokenClaims {
	now := time.Now()
	return tokenClaims{
		Claims: jwt.Claims{
			Issuer: p.issuer(), Audience: jwt.Audience{testAudience}, Subject: "s",
			Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			IssuedAt: jwt.NewNumericDate(now.Add(-time.Minute)),
		},
		AZP: v1alpha1.EntraAuthenticationEventsAppID, Ver: "2.0",
	}
}

func sign(t *testing.T, key any, alg jose.SignatureAlgorithm, kid string, c tokenClaims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func bearerConnector(step v1alpha1.Step, issuer string) *v1alpha1.APIConnector {
	c := &v1alpha1.APIConnector{}
	c.Name, c.Namespace = "signup", "default"
	c.Spec.Step = step
	c.Spec.Authentication.Bearer = &v1alpha1.BearerAuth{TenantID: testTenant, Audience: testAudience, Issuer: issuer}
	c.Spec.Exposure.Host = "signup.example.com"
	return c
}

func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "entra", "testdata", "golden", "extensions", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBearerAuth(t *testing.T) {
	p := newIDP(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	s := newServer(t, bearerConnector(v1alpha1.StepOnAttributeCollectionSubmit, p.issuer()), continueEval,
		Options{SecretsDir: t.TempDir(), Logger: jsonLogger(logs)})
	ts := start(t, s)
	body := readGolden(t, "request-attributecollectionsubmit.json")

	mutate := func(f func(*tokenClaims)) tokenClaims { c := p.validClaims(); f(&c); return c }
	valid := sign(t, p.key, jose.RS256, p.kid, p.validClaims())
	parts := strings.Split(valid, ".")
	tests := []struct {
		name, token, reason string
	}{
		{"valid", valid, ""},
		{"valid v1 token with appid", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.AZP, c.AppID, c.Ver = "", v1alpha1.EntraAuthenticationEventsAppID, "1.0" })), ""},
		{"expired", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-2 * BearerLeeway)) })), reasonExpired},
		{"expired within the leeway", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.Expiry = jwt.NewNumericDate(time.Now().Add(-BearerLeeway / 2)) })), ""},
		{"not yet valid", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(10 * time.Minute)) })), reasonNotYetValid},
		{"no exp", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.Expiry = nil })), reasonBadToken},
		{"wrong audience", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.Audience = jwt.Audience{"api://someone-else"} })), reasonWrongAudience},
		{"wrong azp", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.AZP = "11111111-2222-3333-4444-555555555555" })), reasonWrongAZP},
		{"no azp or appid", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) { c.AZP = "" })), reasonWrongAZP},
		{"wrong issuer", sign(t, p.key, jose.RS256, p.kid, mutate(func(c *tokenClaims) {
			c.Issuer = "https://login.microsoftonline.com/99999999-0000-0000-0000-000000000000/v2.0"
		})), reasonWrongIssuer},
		{"unknown key id", sign(t, other, jose.RS256, "rogue-key", p.validClaims()), reasonUnknownKey},
		{"known key id, other key", sign(t, other, jose.RS256, p.kid, p.validClaims()), reasonBadSignature},
		{"no key id", sign(t, p.key, jose.RS256, "", p.validClaims()), reasonBadToken},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT", "kid": p.kid}) + "." + parts[1] + ".", reasonBadToken},
		{"HS256 with the key id", sign(t, []byte("0123456789abcdef0123456789abcdef"), jose.HS256, p.kid, p.validClaims()), reasonBadToken},
		{"tampered payload", parts[0] + "." + b64(mutate(func(c *tokenClaims) { c.Audience = jwt.Audience{testAudience, "x"} })) + "." + parts[2], reasonBadSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])), reasonBadSignature},
		{"garbage", "not-a-jwt", reasonBadToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(logs.String())
			r := do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", body, map[string]string{"Authorization": "Bearer " + tt.token})
			if tt.reason == "" {
				if r.code != http.StatusOK || !strings.Contains(r.body, "onAttributeCollectionSubmitResponseData") {
					t.Fatalf("want 200, got %d %s\n%s", r.code, r.body, logs.String()[before:])
				}
				return
			}
			if r.code != http.StatusUnauthorized || r.body != "" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("want 401 with an empty body, got %d %q", r.code, r.body)
			}
			if line := logs.String()[before:]; !strings.Contains(line, `"reason":"`+tt.reason+`"`) {
				t.Errorf("want reason %s, log: %s", tt.reason, line)
			}
		})
	}
	for name, hdr := range map[string]map[string]string{
		"missing": nil, "basic": basicHeader(testUser, testPass), "empty bearer": {"Authorization": "Bearer "},
	} {
		if r := do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", body, hdr); r.code != http.StatusUnauthorized {
			t.Errorf("%s: want 401, got %d", name, r.code)
		}
	}
	// Unknown key ids refresh the keys at most every jwksMinRefresh: the prefetch and the first
	// request share one fetch, the rogue tokens above caused none.
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
	if ok, why := s.Ready(); !ok {
		t.Errorf("bearer mode needs no local credentials, not ready: %s", why)
	}
}

func TestBearerDefaultIssuers(t *testing.T) {
	c, err := parseBearer(&v1alpha1.BearerAuth{TenantID: strings.ToUpper(testTenant), Audience: testAudience}, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.configURL != "https://login.microsoftonline.com/"+testTenant+"/v2.0/.well-known/openid-configuration" {
		t.Errorf("config URL %s", c.configURL)
	}
	for iss, want := range map[string]bool{
		"https://login.microsoftonline.com/" + testTenant + "/v2.0":                           true,
		"https://contoso.ciamlogin.com/" + testTenant + "/v2.0":                               true,
		"https://" + testTenant + ".ciamlogin.com/" + testTenant + "/v2.0":                    true,
		"https://login.microsoftonline.com/" + testTenant + "/v2.0/extra":                     false,
		"https://contoso.ciamlogin.com.evil.example/" + testTenant + "/v2.0":                  false,
		"https://contoso.ciamlogin.com/99999999-0000-0000-0000-000000000000/v2.0":             false,
		"https://sts.windows.net/" + testTenant + "/":                                         false, // only for v1 tokens
		"http://login.microsoftonline.com/" + testTenant + "/v2.0":                            false,
		"https://login.microsoftonline.com/" + testTenant + "/v2.0?x=" + testTenant + "/v2.0": false,
	} {
		if got := c.issuerOK(iss, "2.0"); got != want {
			t.Errorf("issuer %s: got %v, want %v", iss, got, want)
		}
	}
	if !c.issuerOK("https://sts.windows.net/"+testTenant+"/", "1.0") {
		t.Error("v1 issuer refused for a v1 token")
	}
}

func TestBearerKeysUnavailable(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	s := newServer(t, bearerConnector(v1alpha1.StepOnTokenIssuanceStart, dead.URL+"/"+testTenant+"/v2.0"), continueEval, Options{SecretsDir: t.TempDir()})
	ts := start(t, s)
	p := newIDP(t)
	tok := sign(t, p.key, jose.RS256, p.kid, p.validClaims())
	r := do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", readGolden(t, "request-tokenissuancestart.json"), map[string]string{"Authorization": "Bearer " + tok})
	if r.code != http.StatusUnauthorized {
		t.Errorf("want 401 while keys cannot be fetched, got %d", r.code)
	}
}

// TestExtensionGoldenServe sends Microsoft's documented requests through the server with a
// valid bearer token and checks the documented response shapes.
func TestExtensionGoldenServe(t *testing.T) {
	p := newIDP(t)
	tok := sign(t, p.key, jose.RS256, p.kid, p.validClaims())
	tests := []struct {
		step          v1alpha1.Step
		request, resp string
		decide        func(req *entra.Request) *entra.Decision
	}{
		{v1alpha1.StepOnAttributeCollectionStart, "request-attributecollectionstart.json", "response-start-setprefillvalues.json",
			func(req *entra.Request) *entra.Decision {
				return &entra.Decision{Action: entra.ActionContinue, Claims: map[string]string{"key1": "value1,value2,value3"}, ClaimValues: map[string]any{"key2": true}}
			}},
		{v1alpha1.StepOnAttributeCollectionSubmit, "request-attributecollectionsubmit.json", "response-submit-showvalidationerror.json",
			func(req *entra.Request) *entra.Decision {
				return &entra.Decision{Action: entra.ActionValidationError, UserMessage: "Please fix the below errors to proceed.", AttributeErrors: map[string]string{
					"city": "City cannot contain any numbers", "extension_<appid>_graduationYear": "Graduation year must be at least 4 digits"}}
			}},
		{v1alpha1.StepOnAttributeCollectionSubmit, "request-attributecollectionsubmit.json", "response-submit-showblockpage.json",
			func(req *entra.Request) *entra.Decision {
				return &entra.Decision{Action: entra.ActionShowBlockPage, UserMessage: "Your access request is already processing. You'll be notified when your request has been approved."}
			}},
		{v1alpha1.StepOnTokenIssuanceStart, "request-tokenissuancestart.json", "response-token-provideclaimsfortoken.json",
			func(req *entra.Request) *entra.Decision {
				if req.Claims["mail"] != "casey@contoso.com" {
					return nil
				}
				return &entra.Decision{Action: entra.ActionContinue, Claims: map[string]string{"DateOfBirth": "01/01/2000"}, ClaimValues: map[string]any{"CustomRoles": []string{"Writer", "Editor"}}}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.resp, func(t *testing.T) {
			ev := evalFunc(func(_ context.Context, req *entra.Request) (*entra.Decision, error) { return tt.decide(req), nil })
			ts := start(t, newServer(t, bearerConnector(tt.step, p.issuer()), ev, Options{SecretsDir: t.TempDir()}))
			r := do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", readGolden(t, tt.request), map[string]string{"Authorization": "Bearer " + tok})
			got, err := entra.Canonicalize([]byte(r.body))
			if err != nil {
				t.Fatalf("%d %q: %v", r.code, r.body, err)
			}
			want, _ := entra.Canonicalize([]byte(readGolden(t, tt.resp)))
			if r.code != http.StatusOK || string(got) != string(want) {
				t.Errorf("got %d %s\nwant 200 %s", r.code, got, want)
			}
		})
	}
	// The connector's step selects the event: a start envelope at a submit connector is refused.
	ts := start(t, newServer(t, bearerConnector(v1alpha1.StepOnAttributeCollectionSubmit, p.issuer()), continueEval, Options{SecretsDir: t.TempDir()}))
	r := do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", readGolden(t, "request-attributecollectionstart.json"), map[string]string{"Authorization": "Bearer " + tok})
	if r.code != http.StatusBadRequest || !strings.Contains(r.body, `"error"`) {
		t.Errorf("mismatched event: got %d %s", r.code, r.body)
	}
}

func TestExtensionFailClosedAtTokenIssuance(t *testing.T) {
	p := newIDP(t)
	tok := sign(t, p.key, jose.RS256, p.kid, p.validClaims())
	failing := evalFunc(func(context.Context, *entra.Request) (*entra.Decision, error) { return nil, context.DeadlineExceeded })
	for _, tc := range []struct {
		policy v1alpha1.FailurePolicy
		code   int
	}{{v1alpha1.FailurePolicyFail, entra.ExtensionFailureStatus}, {v1alpha1.FailurePolicyIgnore, http.StatusOK}} {
		conn := bearerConnector(v1alpha1.StepOnTokenIssuanceStart, p.issuer())
		conn.Spec.FailurePolicy = tc.policy
		ts := start(t, newServer(t, conn, failing, Options{SecretsDir: t.TempDir()}))
		r := do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", readGolden(t, "request-tokenissuancestart.json"), map[string]string{"Authorization": "Bearer " + tok})
		if r.code != tc.code {
			t.Errorf("%s: got %d %s, want %d", tc.policy, r.code, r.body, tc.code)
		}
		if tc.policy == v1alpha1.FailurePolicyIgnore && !strings.Contains(r.body, `"claims":{}`) {
			t.Errorf("Ignore: %s", r.body)
		}
	}
	// The extension deadline defaults to 1500ms.
	s := newServer(t, bearerConnector(v1alpha1.StepOnTokenIssuanceStart, p.issuer()), continueEval, Options{SecretsDir: t.TempDir()})
	if s.cfg.Load().timeout != 1500*time.Millisecond {
		t.Errorf("timeout %s", s.cfg.Load().timeout)
	}
	// Bearer is refused at legacy steps and basic at extension steps.
	if _, err := New(bearerConnector(v1alpha1.StepPostAttributeCollection, p.issuer()), continueEval, Options{}); err == nil {
		t.Error("bearer accepted at PostAttributeCollection")
	}
	if _, err := New(basicConnector(v1alpha1.StepOnAttributeCollectionSubmit), continueEval, Options{}); err == nil {
		t.Error("basic accepted at OnAttributeCollectionSubmit")
	}
}

// slowIDP is a loopback identity provider whose answers can be held back.
func slowIDP(t *testing.T, p *idp) (slow *atomic.Bool) {
	t.Helper()
	slow = &atomic.Bool{}
	release := make(chan struct{})
	inner := p.srv.Config.Handler
	p.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow.Load() {
			select {
			case <-time.After(3 * time.Second):
			case <-release:
			}
		}
		inner.ServeHTTP(w, r)
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close, which waits for handlers
	return slow
}

// A signing-key fetch is waited on only until the request's deadline (1.5 s at the extension
// steps), however slow the identity provider.
func TestBearerKeyFetchBoundedByDeadline(t *testing.T) {
	t.Run("unknown key id, keys loaded", func(t *testing.T) {
		p := newIDP(t)
		slow := slowIDP(t, p)
		s := newServer(t, bearerConnector(v1alpha1.StepOnTokenIssuanceStart, p.issuer()), continueEval, Options{SecretsDir: t.TempDir()})
		ts := start(t, s)
		body := readGolden(t, "request-tokenissuancestart.json")
		valid := map[string]string{"Authorization": "Bearer " + sign(t, p.key, jose.RS256, p.kid, p.validClaims())}
		if r := do(t, ts.client, http.MethodPost, ts.url, "application/json", body, valid); r.code != 200 {
			t.Fatalf("valid token: %d", r.code)
		}
		// The keys are cached; a token with a new key id may refresh them once jwksMinRefresh passed.
		keys := s.cfg.Load().auth.keys
		keys.mu.Lock()
		keys.lastAttempt = time.Now().Add(-2 * jwksMinRefresh)
		keys.mu.Unlock()
		slow.Store(true)
		other, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rogue := map[string]string{"Authorization": "Bearer " + sign(t, other, jose.RS256, "rotated-key", p.validClaims())}
		begin := time.Now()
		r := do(t, ts.client, http.MethodPost, ts.url, "application/json", body, rogue)
		elapsed := time.Since(begin)
		if r.code != http.StatusUnauthorized {
			t.Errorf("code = %d, want 401", r.code)
		}
		if elapsed > v1alpha1.StepOnTokenIssuanceStart.DefaultTimeout()+300*time.Millisecond {
			t.Errorf("answered after %s; the step's deadline is %s", elapsed, v1alpha1.StepOnTokenIssuanceStart.DefaultTimeout())
		}
		if v := counterValue(t, s, "apiconnector_auth_failures_total", map[string]string{"reason": reasonUnknownKey}); v != 1 {
			t.Errorf("unknown_key counted %v", v)
		}
	})
	t.Run("no keys yet", func(t *testing.T) {
		p := newIDP(t)
		slowIDP(t, p).Store(true)
		s := newServer(t, bearerConnector(v1alpha1.StepOnTokenIssuanceStart, p.issuer()), continueEval, Options{SecretsDir: t.TempDir()})
		ts := start(t, s)
		begin := time.Now()
		r := do(t, ts.client, http.MethodPost, ts.url, "application/json", readGolden(t, "request-tokenissuancestart.json"),
			map[string]string{"Authorization": "Bearer " + sign(t, p.key, jose.RS256, p.kid, p.validClaims())})
		if elapsed := time.Since(begin); r.code != http.StatusUnauthorized || elapsed > v1alpha1.StepOnTokenIssuanceStart.DefaultTimeout()+300*time.Millisecond {
			t.Errorf("code = %d after %s, want 401 within %s", r.code, elapsed, v1alpha1.StepOnTokenIssuanceStart.DefaultTimeout())
		}
	})
}

// Signing keys come over https only: over http anyone on the path could substitute their own.
func TestBearerKeysNeedHTTPS(t *testing.T) {
	p := newIDP(t) // http on loopback
	for _, tc := range []struct {
		name string
		conn *v1alpha1.APIConnector
		opts Options
	}{
		{"http issuer", bearerConnector(v1alpha1.StepOnTokenIssuanceStart, p.issuer()), Options{}},
		{"http openIDConfigurationURL", func() *v1alpha1.APIConnector {
			c := bearerConnector(v1alpha1.StepOnTokenIssuanceStart, "")
			c.Spec.Authentication.Bearer.OpenIDConfigurationURL = "http://login.example.com/.well-known/openid-configuration"
			return c
		}(), Options{}},
		{"http to another host, even with the loopback test setting", func() *v1alpha1.APIConnector {
			c := bearerConnector(v1alpha1.StepOnTokenIssuanceStart, "")
			c.Spec.Authentication.Bearer.OpenIDConfigurationURL = "http://login.example.com/.well-known/openid-configuration"
			return c
		}(), Options{InsecureLoopbackKeys: true}},
	} {
		if _, err := New(tc.conn, continueEval, tc.opts); err == nil || !strings.Contains(err.Error(), "https") {
			t.Errorf("%s: New = %v, want an https error", tc.name, err)
		}
	}

	// A discovery document naming an http jwks_uri is refused too.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"jwks_uri": "http://login.example.com/keys"})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cfg, err := parseBearer(&v1alpha1.BearerAuth{TenantID: testTenant, Audience: testAudience,
		OpenIDConfigurationURL: srv.URL + "/.well-known/openid-configuration"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newJWKSCache(cfg, slog.New(slog.DiscardHandler)).fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("http jwks_uri: fetch = %v, want an https error", err)
	}
}
