package graph_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/apiconnector/operator/internal/graph"
	"github.com/apiconnector/operator/internal/graph/graphtest"
)

const clientID = "8f0b3f1e-5a52-4c1e-9d5f-2f6a1c3b7e90"

func newSecretClient(t *testing.T, srv *graphtest.Server, secret string, retry *policy.RetryOptions) *graph.Client {
	t.Helper()
	c, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: clientID, ClientSecret: secret},
		graph.Options{Endpoints: srv.Endpoints(), Transport: srv.HTTPClient(), Retry: retry})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func setup(t *testing.T, retry *policy.RetryOptions) (*graphtest.Server, *graph.Client) {
	srv := graphtest.New(t)
	srv.AddApp(clientID, "right-secret")
	return srv, newSecretClient(t, srv, "right-secret", retry)
}

func fastRetry() *policy.RetryOptions {
	return &policy.RetryOptions{MaxRetries: 3, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond}
}

func selfSigned(t *testing.T, cn string) (*x509.Certificate, *rsa.PrivateKey) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func TestCloudEndpoints(t *testing.T) {
	for name, graphURL := range map[string]string{"": "https://graph.microsoft.com", "AzurePublic": "https://graph.microsoft.com",
		"AzureUSGovernment": "https://graph.microsoft.us", "AzureChina": "https://microsoftgraph.chinacloudapi.cn"} {
		e, err := graph.CloudEndpoints(name)
		if err != nil || e.Graph != graphURL || !strings.HasPrefix(e.AuthorityHost, "https://login.") {
			t.Errorf("%q: %+v %v", name, e, err)
		}
	}
	if _, err := graph.CloudEndpoints("Mars"); err == nil {
		t.Error("unknown cloud accepted")
	}
}

func TestNewRejectsBadCredentials(t *testing.T) {
	e, _ := graph.CloudEndpoints("")
	for name, c := range map[string]graph.Credentials{
		"none":     {TenantID: "t", ClientID: "c"},
		"two":      {TenantID: "t", ClientID: "c", ClientSecret: "s", Assertion: func(context.Context) (string, error) { return "", nil }},
		"no key":   {TenantID: "t", ClientID: "c", CertificatePEM: []byte("x")},
		"bad cert": {TenantID: "t", ClientID: "c", CertificatePEM: []byte("x"), KeyPEM: []byte("y")},
		"tenant":   {ClientID: "c", ClientSecret: "s"},
	} {
		if _, err := graph.New(c, graph.Options{Endpoints: e}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSecretCredential(t *testing.T) {
	_, c := setup(t, nil)
	if err := c.CheckToken(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestWrongSecret(t *testing.T) {
	srv := graphtest.New(t)
	srv.AddApp(clientID, "right-secret")
	c := newSecretClient(t, srv, "wrong-secret", fastRetry())
	err := c.CheckToken(context.Background())
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("want AADSTS7000215 invalid_client, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Fatal("error contains the secret")
	}
	_, err = c.GetAPIConnector(context.Background(), "x")
	if err == nil || !strings.Contains(err.Error(), "AADSTS7000215") || graph.IsTransient(err) {
		t.Fatalf("Graph call with a wrong secret: %v", err)
	}
}

func TestCertificateCredential(t *testing.T) {
	srv := graphtest.New(t)
	cert, key := selfSigned(t, "operator")
	srv.AddAppCertificate(clientID, cert)
	newClient := func(cert *x509.Certificate, key *rsa.PrivateKey) *graph.Client {
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: clientID,
			CertificatePEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
			KeyPEM:         pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
			graph.Options{Endpoints: srv.Endpoints(), Transport: srv.HTTPClient(), Retry: fastRetry()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := newClient(cert, key).CheckToken(context.Background()); err != nil {
		t.Fatal(err)
	}
	other, otherKey := selfSigned(t, "stranger")
	if err := newClient(other, otherKey).CheckToken(context.Background()); err == nil || !strings.Contains(err.Error(), "AADSTS") {
		t.Fatalf("unregistered certificate: %v", err)
	}
}

func TestAssertionCredential(t *testing.T) {
	srv := graphtest.New(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, KeyID: "sa-key", Algorithm: string(jose.RS256), Use: "sig"}
	const issuer, subject, audience = "https://kubernetes.default.svc.cluster.local", "system:serviceaccount:operators:apiconnector-operator", "api://AzureADTokenExchange"
	srv.AddFederatedCredential(clientID, issuer, subject, audience, func(context.Context) (jose.JSONWebKeySet, error) {
		return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}, nil
	})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "sa-key").WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	assertion := func(sub string) func(context.Context) (string, error) {
		return func(context.Context) (string, error) {
			now := time.Now()
			return jwt.Signed(signer).Claims(jwt.Claims{Issuer: issuer, Subject: sub, Audience: jwt.Audience{audience},
				IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}).Serialize()
		}
	}
	newClient := func(sub string) *graph.Client {
		c, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: clientID, Assertion: assertion(sub)},
			graph.Options{Endpoints: srv.Endpoints(), Transport: srv.HTTPClient(), Retry: fastRetry()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newClient(subject)
	if err := c.CheckToken(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplicationByAppID(context.Background(), "missing"); !graph.IsNotFound(err) {
		t.Fatalf("Graph call with a federated token: %v", err)
	}
	if err := newClient("system:serviceaccount:other:sa").CheckToken(context.Background()); err == nil || !strings.Contains(err.Error(), "AADSTS70021") {
		t.Fatalf("wrong subject: %v", err)
	}
}

func pfx(t *testing.T, password string) ([]byte, *x509.Certificate) {
	t.Helper()
	cert, key := selfSigned(t, "connector-client")
	b, err := pkcs12.Modern.Encode(key, cert, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	return b, cert
}

func TestAPIConnectorCRUD(t *testing.T) {
	srv, c := setup(t, nil)
	ctx := context.Background()
	created, err := c.CreateAPIConnector(ctx, graph.APIConnector{DisplayName: "Check age", TargetURL: "https://api.example.com/age",
		Basic: &graph.BasicAuthentication{Username: "svc", Password: "p4ss-word"}})
	if err != nil {
		t.Fatal(err)
	}
	if created.ID == "" || created.DisplayName != "Check age" || created.TargetURL != "https://api.example.com/age" ||
		created.Basic == nil || created.Basic.Username != "svc" || created.Basic.Password != "" {
		t.Fatalf("created: %+v %+v", created, created.Basic)
	}
	got, err := c.GetAPIConnector(ctx, created.ID)
	if err != nil || got.ID != created.ID || got.Basic == nil || got.Basic.Password != "" {
		t.Fatalf("get: %+v %v", got, err)
	}
	if s := srv.APIConnectors(); len(s) != 1 || s[0].Basic.Password != "p4ss-word" {
		t.Fatalf("stored: %+v", s)
	}
	if err := c.UpdateAPIConnector(ctx, created.ID, graph.APIConnector{TargetURL: "https://api.example.com/v2",
		Basic: &graph.BasicAuthentication{Username: "svc", Password: "new-pass"}}); err != nil {
		t.Fatal(err)
	}
	if s := srv.APIConnectors(); s[0].TargetURL != "https://api.example.com/v2" || s[0].DisplayName != "Check age" || s[0].Basic.Password != "new-pass" {
		t.Fatalf("after update: %+v", s[0])
	}
	p12, cert := pfx(t, "pfx-pass")
	if err := c.UploadClientCertificate(ctx, created.ID, graph.PKCS12Certificate{PKCS12: p12, Password: "pfx-pass"}); err != nil {
		t.Fatal(err)
	}
	got, err = c.GetAPIConnector(ctx, created.ID)
	if err != nil || got.Basic != nil || len(got.CertificateThumbprints) != 1 {
		t.Fatalf("after upload: %+v %v", got, err)
	}
	if want := thumbprint(cert); got.CertificateThumbprints[0] != want {
		t.Fatalf("thumbprint %s, want %s", got.CertificateThumbprints[0], want)
	}
	if err := c.UploadClientCertificate(ctx, created.ID, graph.PKCS12Certificate{PKCS12: p12, Password: "wrong"}); err == nil {
		t.Fatal("certificate with a wrong password accepted")
	}
	if err := c.DeleteAPIConnector(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAPIConnector(ctx, created.ID); !graph.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	if err := c.DeleteAPIConnector(ctx, created.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestAPIConnectorWithCertificate(t *testing.T) {
	srv, c := setup(t, nil)
	p12, cert := pfx(t, "pfx-pass")
	created, err := c.CreateAPIConnector(context.Background(), graph.APIConnector{DisplayName: "mtls", TargetURL: "https://api.example.com",
		Certificate: &graph.PKCS12Certificate{PKCS12: p12, Password: "pfx-pass"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(created.CertificateThumbprints, []string{thumbprint(cert)}) || created.Certificate != nil {
		t.Fatalf("created: %+v", created)
	}
	if s := srv.APIConnectors(); s[0].Certificate == nil || s[0].Certificate.Password != "pfx-pass" {
		t.Fatalf("stored: %+v", s[0])
	}
}

func thumbprint(c *x509.Certificate) string {
	return strings.ToUpper(sha1Hex(c.Raw))
}

func TestUserFlowAttachment(t *testing.T) {
	srv, c := setup(t, nil)
	ctx := context.Background()
	srv.AddUserFlow(graph.UserFlowB2X, "B2X_1_signup")
	srv.AddUserFlow(graph.UserFlowB2C, "B2C_1_signin")
	conn, err := c.CreateAPIConnector(ctx, graph.APIConnector{DisplayName: "c", TargetURL: "https://api.example.com",
		Basic: &graph.BasicAuthentication{Username: "u", Password: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		kind       graph.UserFlowKind
		flow, step string
	}{{graph.UserFlowB2X, "B2X_1_signup", "postAttributeCollection"}, {graph.UserFlowB2C, "B2C_1_signin", "preTokenIssuance"}} {
		if id, err := c.UserFlowAPIConnector(ctx, tc.kind, tc.flow, tc.step); err != nil || id != "" {
			t.Fatalf("%s before: %q %v", tc.kind, id, err)
		}
		if err := c.SetUserFlowAPIConnector(ctx, tc.kind, tc.flow, tc.step, conn.ID); err != nil {
			t.Fatal(err)
		}
		if id, err := c.UserFlowAPIConnector(ctx, tc.kind, tc.flow, tc.step); err != nil || id != conn.ID {
			t.Fatalf("%s attached: %q %v", tc.kind, id, err)
		}
		if got := srv.UserFlowConnector(tc.kind, tc.flow, tc.step); got != conn.ID {
			t.Fatalf("stand-in: %q", got)
		}
		if err := c.ClearUserFlowAPIConnector(ctx, tc.kind, tc.flow, tc.step); err != nil {
			t.Fatal(err)
		}
		if id, err := c.UserFlowAPIConnector(ctx, tc.kind, tc.flow, tc.step); err != nil || id != "" {
			t.Fatalf("%s detached: %q %v", tc.kind, id, err)
		}
	}
	if err := c.SetUserFlowAPIConnector(ctx, graph.UserFlowB2X, "B2X_1_signup", "preTokenIssuance", conn.ID); err == nil {
		t.Fatal("preTokenIssuance accepted on a b2x flow")
	}
	if err := c.SetUserFlowAPIConnector(ctx, graph.UserFlowB2X, "B2X_1_missing", "postAttributeCollection", conn.ID); !graph.IsNotFound(err) {
		t.Fatalf("missing flow: %v", err)
	}
	if _, err := c.UserFlowAPIConnector(ctx, "b2q", "f", "postAttributeCollection"); err == nil {
		t.Fatal("unknown kind accepted")
	}
	if _, err := c.UserFlowAPIConnector(ctx, graph.UserFlowB2X, "B2X_1_signup", "x/../y"); err == nil {
		t.Fatal("bad step accepted")
	}
}

func TestCustomExtensionCRUDAndValidation(t *testing.T) {
	srv, c := setup(t, nil)
	ctx := context.Background()
	const appID = "3c4f9b2a-1d2e-4f5a-8b6c-7d8e9f0a1b2c"
	srv.AddApplication(appID, "api://claims.example.com/"+appID)
	ext := graph.CustomExtension{ODataType: graph.TypeOnTokenIssuanceStartCustomExtension, DisplayName: "claims", Description: "d",
		TargetURL: "https://claims.example.com/token", ResourceID: "api://claims.example.com/" + appID,
		TimeoutMilliseconds: 2000, MaximumRetries: 1, ClaimsForToken: []string{"dateOfBirth", "customRoles"}}
	created, err := c.CreateCustomExtension(ctx, ext)
	if err != nil {
		t.Fatal(err)
	}
	want := ext
	want.ID = created.ID
	if created.ID == "" || !equalExt(created, want) {
		t.Fatalf("created %+v", created)
	}
	got, err := c.GetCustomExtension(ctx, created.ID)
	if err != nil || !equalExt(got, want) {
		t.Fatalf("get %+v %v", got, err)
	}
	v, err := c.ValidateAuthenticationConfiguration(ctx, created.ID)
	if err != nil || len(v.Errors) != 0 {
		t.Fatalf("validation %+v %v", v, err)
	}
	want.TargetURL = "https://other.example.com/token"
	want.ClaimsForToken = []string{"dateOfBirth"}
	if err := c.UpdateCustomExtension(ctx, created.ID, want); err != nil {
		t.Fatal(err)
	}
	if s := srv.CustomExtensions(); len(s) != 1 || !equalExt(s[0], want) {
		t.Fatalf("stored %+v", s)
	}
	v, err = c.ValidateAuthenticationConfiguration(ctx, created.ID)
	if err != nil || len(v.Errors) != 1 || v.Errors[0].Code != "DomainNameDoesNotMatch" {
		t.Fatalf("validation after host change: %+v %v", v, err)
	}
	srv.SetCustomExtensionTargetURL(created.ID, "http://claims.example.com/token")
	want.TargetURL = "http://claims.example.com/token"
	if err := c.UpdateCustomExtension(ctx, created.ID, want); err != nil {
		t.Fatal(err)
	}
	v, _ = c.ValidateAuthenticationConfiguration(ctx, created.ID)
	if len(v.Errors) != 1 || v.Errors[0].Code != "TargetUrlNotHttps" {
		t.Fatalf("validation of http: %+v", v)
	}
	if err := c.DeleteCustomExtension(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteCustomExtension(ctx, created.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCustomExtension(ctx, created.ID); !graph.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	bad, err := c.CreateCustomExtension(ctx, graph.CustomExtension{ODataType: graph.TypeOnTokenIssuanceStartCustomExtension, DisplayName: "x",
		TargetURL: "https://claims.example.com/token", ResourceID: "api://claims.example.com/00000000-0000-0000-0000-000000000000"})
	if err != nil {
		t.Fatal(err)
	}
	v, _ = c.ValidateAuthenticationConfiguration(ctx, bad.ID)
	if len(v.Errors) != 1 || v.Errors[0].Code != "ServicePrincipalNotFound" {
		t.Fatalf("unknown app: %+v", v)
	}
}

func equalExt(a, b graph.CustomExtension) bool {
	return a.ID == b.ID && a.ODataType == b.ODataType && a.DisplayName == b.DisplayName && a.Description == b.Description &&
		a.TargetURL == b.TargetURL && a.ResourceID == b.ResourceID && a.TimeoutMilliseconds == b.TimeoutMilliseconds &&
		a.MaximumRetries == b.MaximumRetries && slices.Equal(a.ClaimsForToken, b.ClaimsForToken)
}

func TestEventListenerCRUD(t *testing.T) {
	srv, c := setup(t, nil)
	ctx := context.Background()
	ext, err := c.CreateCustomExtension(ctx, graph.CustomExtension{ODataType: graph.TypeOnTokenIssuanceStartCustomExtension, DisplayName: "x",
		TargetURL: "https://claims.example.com/token", ResourceID: "api://claims.example.com/a"})
	if err != nil {
		t.Fatal(err)
	}
	l := graph.EventListener{ODataType: "#microsoft.graph.onTokenIssuanceStartListener",
		HandlerODataType: "#microsoft.graph.onTokenIssuanceStartCustomExtensionHandler", ExtensionID: ext.ID, AppIDs: []string{"app-1"}}
	created, err := c.CreateEventListener(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	l.ID = created.ID
	if created.ID == "" || !equalListener(created, l) {
		t.Fatalf("created %+v", created)
	}
	if got, err := c.GetEventListener(ctx, l.ID); err != nil || !equalListener(got, l) {
		t.Fatalf("get %+v %v", got, err)
	}
	l.AppIDs = []string{"app-1", "app-2"}
	if err := c.UpdateEventListener(ctx, l.ID, l); err != nil {
		t.Fatal(err)
	}
	if s := srv.EventListeners(); len(s) != 1 || !equalListener(s[0], l) {
		t.Fatalf("stored %+v", s)
	}
	if _, err := c.CreateEventListener(ctx, graph.EventListener{ODataType: l.ODataType, HandlerODataType: l.HandlerODataType, ExtensionID: "missing"}); err == nil {
		t.Fatal("listener with a missing extension accepted")
	}
	if err := c.DeleteEventListener(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetEventListener(ctx, l.ID); !graph.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	if err := c.DeleteEventListener(ctx, l.ID); err != nil {
		t.Fatal(err)
	}
}

func equalListener(a, b graph.EventListener) bool {
	return a.ID == b.ID && a.ODataType == b.ODataType && a.HandlerODataType == b.HandlerODataType && a.ExtensionID == b.ExtensionID && slices.Equal(a.AppIDs, b.AppIDs)
}

func TestApplicationByAppID(t *testing.T) {
	srv, c := setup(t, nil)
	objID := srv.AddApplication("it's-an-app", "api://x.example.com/it's-an-app")
	a, err := c.ApplicationByAppID(context.Background(), "it's-an-app")
	if err != nil || a.ID != objID || a.AppID != "it's-an-app" || !slices.Equal(a.IdentifierURIs, []string{"api://x.example.com/it's-an-app"}) {
		t.Fatalf("%+v %v", a, err)
	}
	if _, err := c.ApplicationByAppID(context.Background(), "nope"); !graph.IsNotFound(err) {
		t.Fatalf("missing: %v", err)
	}
}

func count(srv *graphtest.Server, method, prefix string) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Method == method && strings.HasPrefix(r.Path, prefix) {
			n++
		}
	}
	return n
}

func TestThrottlingHonoursRetryAfter(t *testing.T) {
	srv, c := setup(t, nil)
	srv.AddApplication("a")
	srv.Throttle(1, time.Second)
	start := time.Now()
	if _, err := c.ApplicationByAppID(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("retried after %s, before Retry-After", d)
	}
	if n := count(srv, "GET", "/v1.0/applications"); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
}

func TestPermanentThrottlingReturnsRetryAfter(t *testing.T) {
	srv, c := setup(t, &policy.RetryOptions{MaxRetries: 2, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 2 * time.Second})
	srv.Throttle(1000, time.Second)
	start := time.Now()
	_, err := c.ApplicationByAppID(context.Background(), "a")
	if d, ok := graph.RetryAfter(err); !ok || d != time.Second || !graph.IsTransient(err) {
		t.Fatalf("RetryAfter(%v) = %s %v", err, d, ok)
	}
	if n := count(srv, "GET", "/v1.0/applications"); n != 3 {
		t.Fatalf("%d requests, want 1 + MaxRetries", n)
	}
	if d := time.Since(start); d < 2*time.Second || d > 10*time.Second {
		t.Fatalf("took %s", d)
	}
	// A Retry-After beyond MaxRetryDelay is returned at once to the caller.
	srv2, c2 := setup(t, nil)
	srv2.Throttle(1000, 40*time.Second)
	start = time.Now()
	_, err = c2.ApplicationByAppID(context.Background(), "a")
	if d, ok := graph.RetryAfter(err); !ok || d != 40*time.Second || time.Since(start) > 5*time.Second {
		t.Fatalf("RetryAfter(%v) = %s %v after %s", err, d, ok, time.Since(start))
	}
	var ge *graph.Error
	if !errors.As(err, &ge) || ge.StatusCode != 429 || ge.Code != "TooManyRequests" || ge.Path != "/applications(appId='a')" {
		t.Fatalf("%#v", ge)
	}
}

func TestTransient5xxRetried(t *testing.T) {
	srv, c := setup(t, fastRetry())
	srv.AddApplication("a")
	srv.FailNext(2, 503)
	if _, err := c.ApplicationByAppID(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	srv.FailNext(100, 500)
	_, err := c.ApplicationByAppID(context.Background(), "a")
	if !graph.IsTransient(err) || graph.IsNotFound(err) {
		t.Fatalf("persistent 500: %v", err)
	}
	if _, ok := graph.RetryAfter(err); ok {
		t.Fatal("RetryAfter without Retry-After")
	}
}

func TestNotFoundAfterCreate(t *testing.T) {
	srv, c := setup(t, nil)
	ctx := context.Background()
	srv.NotFoundAfterCreate(1)
	conn, err := c.CreateAPIConnector(ctx, graph.APIConnector{DisplayName: "c", TargetURL: "https://api.example.com",
		Basic: &graph.BasicAuthentication{Username: "u", Password: "p"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAPIConnector(ctx, conn.ID); !graph.IsNotFound(err) || graph.IsTransient(err) {
		t.Fatalf("first read: %v", err)
	}
	if _, err := c.GetAPIConnector(ctx, conn.ID); err != nil {
		t.Fatalf("second read: %v", err)
	}
}

func TestErrorsNeverContainPasswords(t *testing.T) {
	srv, c := setup(t, fastRetry())
	ctx := context.Background()
	const pw = "Sup3r-Secret-Value"
	_, err := c.CreateAPIConnector(ctx, graph.APIConnector{DisplayName: "c", TargetURL: "not a url",
		Basic: &graph.BasicAuthentication{Username: "u", Password: pw}})
	var ge *graph.Error
	if !errors.As(err, &ge) || ge.StatusCode != 400 || !strings.HasPrefix(err.Error(), "graph: POST /identity/apiConnectors: 400 BadRequest: ") {
		t.Fatalf("%v", err)
	}
	srv.FailNext(100, 503)
	_, err2 := c.CreateAPIConnector(ctx, graph.APIConnector{DisplayName: "c", TargetURL: "https://x.example.com",
		Basic: &graph.BasicAuthentication{Username: "u", Password: pw}})
	p12, _ := pfx(t, pw)
	err3 := c.UploadClientCertificate(ctx, "id", graph.PKCS12Certificate{PKCS12: p12, Password: pw})
	for _, e := range []error{err, err2, err3} {
		if e == nil || strings.Contains(e.Error(), pw) || strings.Contains(e.Error(), "MII") {
			t.Fatalf("error %q", e)
		}
	}
}

func TestUnauthenticatedGraphRequest(t *testing.T) {
	srv := graphtest.New(t)
	resp, err := srv.HTTPClient().Get(srv.URL() + "/v1.0/identity/apiConnectors/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestNetworkFailureIsTransient(t *testing.T) {
	srv := graphtest.New(t)
	dead := httptest.NewTLSServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	c, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: clientID, ClientSecret: "s"},
		graph.Options{Endpoints: graph.Endpoints{AuthorityHost: deadURL + "/", Graph: deadURL}, Transport: srv.HTTPClient(), Retry: fastRetry()})
	if err != nil {
		t.Fatal(err)
	}
	err = c.CheckToken(context.Background())
	if err == nil || !graph.IsTransient(err) {
		t.Fatalf("unreachable authority: %v (transient %v)", err, graph.IsTransient(err))
	}
}

func TestObserveSeesEveryAttempt(t *testing.T) {
	srv := graphtest.New(t)
	srv.AddApp("app", "secret")
	var seen []string
	var mu sync.Mutex
	c, err := graph.New(graph.Credentials{TenantID: srv.TenantID, ClientID: "app", ClientSecret: "secret"},
		graph.Options{Endpoints: srv.Endpoints(), Transport: srv.HTTPClient(), Retry: fastRetry(),
			Observe: func(method string, status int) {
				mu.Lock()
				defer mu.Unlock()
				seen = append(seen, fmt.Sprintf("%s %d", method, status))
			}})
	if err != nil {
		t.Fatal(err)
	}
	srv.AddApplication("a")
	srv.FailNext(1, 503)
	if _, err := c.ApplicationByAppID(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"GET 503", "GET 200"}; !slices.Equal(seen, want) {
		t.Errorf("observed %v, want %v (token requests are not Graph requests)", seen, want)
	}
}
