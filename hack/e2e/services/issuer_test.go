package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/server"
)

const (
	testTenant   = "aaaabbbb-0000-cccc-1111-dddd2222eeee"
	testAudience = "00001111-aaaa-2222-bbbb-3333cccc4444"
	testAdmin    = "issuer-admin-test"
)

func startIssuer(t *testing.T, tls bool) *httptest.Server {
	t.Helper()
	is, err := newIssuer(testAdmin)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/dial", dial) // as main registers it: the patterns must not conflict
	is.register(mux)
	var ts *httptest.Server
	if tls {
		ts = httptest.NewTLSServer(mux)
	} else {
		ts = httptest.NewServer(mux)
	}
	t.Cleanup(ts.Close)
	return ts
}

func getJSON(t *testing.T, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// mint asks the issuer's admin endpoint for a token; it returns the status and the token.
func mint(t *testing.T, c *http.Client, base, adminToken string, claims any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(claims)
	req, _ := http.NewRequest(http.MethodPost, base+"/admin/tokens", bytes.NewReader(b))
	if adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Token
}

func TestIssuerPublishesConfigurationAndKeys(t *testing.T) {
	ts := startIssuer(t, true)
	c := ts.Client()
	for _, tc := range []struct{ path, issuer, keys string }{
		{"/" + testTenant + "/v2.0/.well-known/openid-configuration", "https://login.microsoftonline.com/" + testTenant + "/v2.0", "/" + testTenant + "/discovery/v2.0/keys"},
		{"/" + strings.ToUpper(testTenant) + "/.well-known/openid-configuration", "https://sts.windows.net/" + testTenant + "/", "/" + testTenant + "/discovery/keys"},
	} {
		var conf struct {
			Issuer  string   `json:"issuer"`
			JWKSURI string   `json:"jwks_uri"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
		}
		getJSON(t, c, ts.URL+tc.path, &conf)
		if conf.Issuer != tc.issuer || conf.JWKSURI != ts.URL+tc.keys || len(conf.Algs) != 1 || conf.Algs[0] != "RS256" {
			t.Errorf("%s: %+v, want issuer %s, jwks_uri %s (https, same host)", tc.path, conf, tc.issuer, ts.URL+tc.keys)
		}
		if !strings.HasPrefix(conf.JWKSURI, "https://") {
			t.Errorf("jwks_uri %s is not https", conf.JWKSURI)
		}
		var set jose.JSONWebKeySet
		getJSON(t, c, conf.JWKSURI, &set)
		if len(set.Keys) != 1 || set.Keys[0].KeyID == "" || set.Keys[0].Use != "sig" || !set.Keys[0].IsPublic() || !set.Keys[0].Valid() {
			t.Fatalf("JWKS: %+v", set)
		}
	}
}

func TestIssuerMintsTokensOnlyForTheAdmin(t *testing.T) {
	ts := startIssuer(t, true)
	c := ts.Client()
	claims := map[string]any{"aud": testAudience, "exp": 1800000000, "tid": testTenant}
	for _, admin := range []string{"", "wrong"} {
		if code, tok := mint(t, c, ts.URL, admin, claims); code != 401 || tok != "" {
			t.Errorf("admin token %q: %d %q, want 401", admin, code, tok)
		}
	}
	if code, _ := mint(t, c, ts.URL, testAdmin, "not an object"); code != 400 {
		t.Errorf("bad body: %d, want 400", code)
	}
	code, tok := mint(t, c, ts.URL, testAdmin, claims)
	if code != 200 {
		t.Fatalf("mint: %d", code)
	}
	var set jose.JSONWebKeySet
	getJSON(t, c, ts.URL+"/"+testTenant+"/discovery/v2.0/keys", &set)
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.KeyID != set.Keys[0].KeyID || h.ExtraHeaders["typ"] != "JWT" {
		t.Errorf("header %+v, want kid %s and typ JWT", h, set.Keys[0].KeyID)
	}
	payload, err := jws.Verify(set.Keys[0].Key)
	if err != nil {
		t.Fatalf("signature does not verify with the published key: %v", err)
	}
	if string(payload) != `{"aud":"`+testAudience+`","exp":1800000000,"tid":"`+testTenant+`"}` {
		t.Errorf("payload %s: the claims must be signed as sent", payload)
	}
}

type continueEval struct{}

func (continueEval) Evaluate(context.Context, *entra.Request) (*entra.Decision, error) {
	return &entra.Decision{Action: entra.ActionContinue}, nil
}

// TestIssuerTokensAgainstTheRuntime runs the runtime's own bearer verification against the
// issuer: an OnOtpSend connector whose keys come from the issuer's v2.0 configuration (plain http
// on loopback, which only tests allow), fed Microsoft's documented request with the tokens the e2e
// suite mints.
func TestIssuerTokensAgainstTheRuntime(t *testing.T) {
	ts := startIssuer(t, false)
	conn := &v1alpha1.APIConnector{}
	conn.Name, conn.Namespace = "otp", "identity"
	conn.Spec.Step = v1alpha1.StepOnOtpSend
	conn.Spec.Exposure.Host = "extensions.contoso.example"
	conn.Spec.Authentication.Bearer = &v1alpha1.BearerAuth{TenantID: testTenant, Audience: testAudience,
		OpenIDConfigurationURL: ts.URL + "/" + testTenant + "/v2.0/.well-known/openid-configuration"}
	srv, err := server.New(conn, continueEval{}, server.Options{SecretsDir: t.TempDir(), InsecureLoopbackKeys: true})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join("..", "..", "..", "runtime", "entra", "testdata", "golden", "extensions")
	request, err := os.ReadFile(filepath.Join(root, "request-emailotpsend.json"))
	if err != nil {
		t.Fatal(err)
	}
	golden, _ := os.ReadFile(filepath.Join(root, "response-otpsend-continue.json"))
	want, _ := entra.Canonicalize(golden)

	now := time.Now().Unix()
	with := func(base, over map[string]any) map[string]any {
		c := map[string]any{}
		for k, v := range base {
			c[k] = v
		}
		for k, v := range over {
			c[k] = v
		}
		return c
	}
	common := map[string]any{"aud": testAudience, "tid": testTenant, "sub": "s", "iat": now - 60, "nbf": now - 60, "exp": now + 3600}
	v2 := func(over map[string]any) map[string]any {
		return with(with(common, map[string]any{"iss": "https://login.microsoftonline.com/" + testTenant + "/v2.0",
			"ver": "2.0", "azp": v1alpha1.EntraAuthenticationEventsAppID}), over)
	}
	v1 := func(over map[string]any) map[string]any {
		return with(with(common, map[string]any{"iss": "https://sts.windows.net/" + testTenant + "/",
			"ver": "1.0", "appid": v1alpha1.EntraAuthenticationEventsAppID}), over)
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   int
	}{
		{"v2.0 token", v2(nil), 200},
		{"v1.0 token", v1(nil), 200},
		{"wrong audience", v2(map[string]any{"aud": "11112222-bbbb-3333-cccc-4444dddd5555"}), 401},
		{"expired", v2(map[string]any{"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}), 401},
		{"wrong azp", v2(map[string]any{"azp": "11112222-bbbb-3333-cccc-4444dddd5555"}), 401},
		{"wrong appid", v1(map[string]any{"appid": "11112222-bbbb-3333-cccc-4444dddd5555"}), 401},
		{"other tenant's issuer", v2(map[string]any{"iss": "https://login.microsoftonline.com/ffff5f5f-aa6a-bb7b-cc8c-dddddd9d9d9d/v2.0"}), 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, tok := mint(t, ts.Client(), ts.URL, testAdmin, tc.claims)
			if code != 200 {
				t.Fatalf("mint: %d", code)
			}
			req := httptest.NewRequest(http.MethodPost, "https://extensions.contoso.example/email-otp", bytes.NewReader(request))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, req)
			body, _ := io.ReadAll(rec.Body)
			if rec.Code != tc.want {
				t.Fatalf("%d %s, want %d", rec.Code, body, tc.want)
			}
			if tc.want == 200 {
				if got, _ := entra.Canonicalize(body); string(got) != string(want) {
					t.Errorf("answer %s, want the documented %s", got, want)
				}
			}
		})
	}
}

func TestSinkMemberLookUp(t *testing.T) {
	if _, err := newSink("", "not json"); err == nil {
		t.Error("bad MEMBERS accepted")
	}
	sk, err := newSink("", `{"ab3ec3b2-a435-45e4-b93a-56a005e88bb7": {"tier": "gold", "number": "1234567"}}`)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	sk.register(mux)
	ts := httptest.NewTLSServer(mux)
	defer ts.Close()
	for _, tc := range []struct {
		query string
		code  int
		body  string
	}{
		{"objectId=ab3ec3b2-a435-45e4-b93a-56a005e88bb7&app=x", 200, `{"number":"1234567","tier":"gold"}`},
		{"objectId=00aa00aa-bb11-cc22-dd33-44ee44ee44ee", 404, `{"error":"no such member"}`},
	} {
		resp, err := ts.Client().Get(ts.URL + "/v1/members?" + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got, _ := entra.Canonicalize(b); resp.StatusCode != tc.code || string(got) != tc.body {
			t.Errorf("%s: %d %s, want %d %s", tc.query, resp.StatusCode, b, tc.code, tc.body)
		}
	}
	if len(sk.recs) != 2 || !sk.recs[0].TLS || sk.recs[0].Query != "objectId=ab3ec3b2-a435-45e4-b93a-56a005e88bb7&app=x" {
		t.Errorf("recorded %+v, want both look-ups with their queries", sk.recs)
	}
}
