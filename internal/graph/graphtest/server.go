// Package graphtest is an in-process stand-in for Microsoft Graph and the
// Microsoft identity platform token endpoint, for tests. It serves HTTPS on
// 127.0.0.1 and answers the requests azidentity makes (OpenID configuration,
// client credentials grant with a secret, a certificate assertion, or a
// federated assertion) and the Graph calls of package graph, with the status
// codes and bodies documented in Microsoft's Graph reference. State is in
// memory; faults (throttling, 5xx, eventual consistency) are injected
// deterministically.
package graphtest

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"

	"github.com/apiconnector/operator/internal/graph"
)

// Server is the stand-in. Its methods are safe for concurrent use.
type Server struct {
	// TenantID is the only tenant the token side knows.
	TenantID string

	srv *httptest.Server

	mu        sync.Mutex
	apps      map[string]*app
	tokens    map[string]time.Time
	requests  []Request
	state     state
	throttleN int
	throttleD time.Duration
	failN     int
	failCode  int
	notFoundN int
	pageSize  int
}

// Request is one request the stand-in received.
type Request struct{ Method, Path string }

type app struct {
	secret    string
	certs     []*x509.Certificate
	federated []federated
}

type federated struct {
	issuer, subject, audience string
	keys                      func(context.Context) (jose.JSONWebKeySet, error)
}

// Option configures a Server.
type Option func(*Server)

// WithTenantID sets the tenant ID instead of a random one.
func WithTenantID(id string) Option { return func(s *Server) { s.TenantID = id } }

// New starts a stand-in; it is closed when the test ends.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := Start(opts...)
	t.Cleanup(s.Close)
	return s
}

// Start starts a stand-in outside a test (a suite's TestMain); Close stops it.
func Start(opts ...Option) *Server {
	s := &Server{
		TenantID: uuid.NewString(),
		apps:     map[string]*app{},
		tokens:   map[string]time.Time{},
		state:    newState(),
		pageSize: defaultPageSize,
	}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Close stops the stand-in.
func (s *Server) Close() { s.srv.Close() }

// URL is the stand-in's base URL (https://127.0.0.1:port).
func (s *Server) URL() string { return s.srv.URL }

// Endpoints returns the authority host and Graph root, both served here.
func (s *Server) Endpoints() graph.Endpoints {
	return graph.Endpoints{AuthorityHost: s.srv.URL + "/", Graph: s.srv.URL}
}

// HTTPClient returns a client trusting the stand-in's certificate.
func (s *Server) HTTPClient() *http.Client { return s.srv.Client() }

// AddApp registers an application that authenticates with a client secret.
func (s *Server) AddApp(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.app(clientID).secret = secret
}

// AddAppCertificate registers a certificate credential of an application.
func (s *Server) AddAppCertificate(clientID string, cert *x509.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.app(clientID)
	a.certs = append(a.certs, cert)
}

// AddFederatedCredential registers a federated identity credential: a JWT
// issued by issuer for subject and audience, signed by one of keys, is
// accepted as the application's client assertion.
func (s *Server) AddFederatedCredential(clientID, issuer, subject, audience string, keys func(ctx context.Context) (jose.JSONWebKeySet, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.app(clientID)
	a.federated = append(a.federated, federated{issuer, subject, audience, keys})
}

func (s *Server) app(clientID string) *app {
	a := s.apps[clientID]
	if a == nil {
		a = &app{}
		s.apps[clientID] = a
	}
	return a
}

// Requests returns every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RevokeTokens invalidates every access token issued so far, as deleting an app registration or
// revoking its consent does: Graph then answers 401.
func (s *Server) RevokeTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Throttle makes the next n Graph requests answer 429 with Retry-After.
func (s *Server) Throttle(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttleN, s.throttleD = n, retryAfter
}

// FailNext makes the next n Graph requests answer status (e.g. 503) without
// Retry-After.
func (s *Server) FailNext(n int, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = n, status
}

// defaultPageSize is the number of objects in one page of a list answer.
const defaultPageSize = 100

// SetPageSize sets the number of objects in one page of a list answer; when
// there are more, the answer has an @odata.nextLink to the next page. n < 1
// restores the default, 100.
func (s *Server) SetPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n < 1 {
		n = defaultPageSize
	}
	s.pageSize = n
}

// NotFoundAfterCreate makes the next n GETs of an object created but not yet
// read answer 404, as Graph may right after a create (replication delay).
func (s *Server) NotFoundAfterCreate(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notFoundN = n
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path})
	s.mu.Unlock()
	tenantPrefix := "/" + s.TenantID + "/"
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1.0/"), strings.HasPrefix(r.URL.Path, "/beta/"):
		s.serveGraph(w, r)
	case strings.HasSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration"):
		if !strings.HasPrefix(r.URL.Path, tenantPrefix) {
			aadError(w, http.StatusBadRequest, "invalid_tenant", 90002, "Tenant '"+strings.Split(r.URL.Path, "/")[1]+"' not found.")
			return
		}
		s.openIDConfiguration(w)
	case strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token"):
		if !strings.HasPrefix(r.URL.Path, tenantPrefix) {
			aadError(w, http.StatusBadRequest, "invalid_request", 90002, "Tenant '"+strings.Split(r.URL.Path, "/")[1]+"' not found.")
			return
		}
		s.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) tokenEndpoint() string {
	return s.srv.URL + "/" + s.TenantID + "/oauth2/v2.0/token"
}

func (s *Server) openIDConfiguration(w http.ResponseWriter) {
	base := s.srv.URL + "/" + s.TenantID
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        s.tokenEndpoint(),
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"tenant_region_scope":                   "EU",
	})
}

// aadError writes the identity platform's error shape.
func aadError(w http.ResponseWriter, status int, code string, aadsts int, msg string) {
	writeJSON(w, status, map[string]any{
		"error":             code,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", aadsts, msg, uuid.NewString(), uuid.NewString(), time.Now().UTC().Format("2006-01-02 15:04:05Z")),
		"error_codes":       []int{aadsts},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          uuid.NewString(),
		"correlation_id":    uuid.NewString(),
		"error_uri":         "https://login.microsoftonline.com/error?code=" + fmt.Sprint(aadsts),
	})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		aadError(w, http.StatusMethodNotAllowed, "invalid_request", 900561, "The endpoint only accepts POST requests.")
		return
	}
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must be application/x-www-form-urlencoded.")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+gt+"'.")
		return
	}
	clientID := r.PostForm.Get("client_id")
	s.mu.Lock()
	a, ok := s.apps[clientID]
	s.mu.Unlock()
	if !ok {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, "Application with identifier '"+clientID+"' was not found in the directory '"+s.TenantID+"'.")
		return
	}
	wantScope := s.srv.URL + "/.default"
	if scope := r.PostForm.Get("scope"); !strings.Contains(" "+scope+" ", " "+wantScope+" ") {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope "+scope+" is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).")
		return
	}
	switch {
	case r.PostForm.Has("client_secret"):
		if a.secret == "" || r.PostForm.Get("client_secret") != a.secret {
			aadError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '"+clientID+"'.")
			return
		}
	case r.PostForm.Has("client_assertion"):
		if r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			aadError(w, http.StatusBadRequest, "invalid_request", 7000219, "'client_assertion_type' is missing or has an unsupported value.")
			return
		}
		if code, msg := s.checkAssertion(r.Context(), clientID, a, r.PostForm.Get("client_assertion")); code != 0 {
			aadError(w, http.StatusUnauthorized, "invalid_client", code, msg)
			return
		}
	default:
		aadError(w, http.StatusUnauthorized, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	s.mu.Lock()
	s.tokens[tok] = time.Now().Add(time.Hour)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
}

var assertionAlgs = []jose.SignatureAlgorithm{jose.PS256, jose.RS256, jose.ES256, jose.ES384, jose.RS384, jose.RS512, jose.PS384, jose.PS512}

// checkAssertion verifies a client assertion: a certificate-signed JWT
// (x5t#S256 or x5t header, iss = sub = client ID, aud = token endpoint) or a
// federated token (signature by the registered keys, iss, sub, aud). It
// returns an AADSTS code and message on failure.
func (s *Server) checkAssertion(ctx context.Context, clientID string, a *app, assertion string) (int, string) {
	tok, err := jwt.ParseSigned(assertion, assertionAlgs)
	if err != nil || len(tok.Headers) != 1 {
		return 50027, "JWT token is invalid or malformed."
	}
	h := tok.Headers[0]
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return 50027, "JWT token is invalid or malformed."
	}
	for _, c := range a.certs {
		if !thumbprintMatches(h, c) {
			continue
		}
		var claims jwt.Claims
		if err := tok.Claims(c.PublicKey, &claims); err != nil {
			return 7000274, "Key was found, but use of the key to verify the signature failed."
		}
		if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: clientID, Subject: clientID, AnyAudience: jwt.Audience{s.tokenEndpoint()}, Time: time.Now()}, time.Minute); err != nil {
			return 700024, "Client assertion is not within its valid time range or has a wrong issuer, subject or audience: " + err.Error()
		}
		if claims.Expiry == nil {
			return 700024, "Client assertion has no expiry."
		}
		return 0, ""
	}
	for _, f := range a.federated {
		if unverified.Issuer != f.issuer {
			continue
		}
		keys, err := f.keys(ctx)
		if err != nil {
			return 700211, "No matching federated identity record found for presented assertion issuer '" + unverified.Issuer + "' (keys: " + err.Error() + ")."
		}
		var claims jwt.Claims
		if err := tok.Claims(keys, &claims); err != nil {
			return 700027, "Client assertion failed signature validation."
		}
		if claims.Subject != f.subject || !claims.Audience.Contains(f.audience) {
			continue
		}
		if err := claims.ValidateWithLeeway(jwt.Expected{Time: time.Now()}, time.Minute); err != nil || claims.Expiry == nil {
			return 700024, "Client assertion is not within its valid time range."
		}
		return 0, ""
	}
	if len(a.certs) > 0 && unverified.Issuer == clientID {
		return 700027, "The certificate with identifier used to sign the client assertion is not registered on application."
	}
	return 70021, "No matching federated identity record found for presented assertion. Assertion Issuer: '" + unverified.Issuer + "'. Assertion Subject: '" + unverified.Subject + "'."
}

func thumbprintMatches(h jose.Header, c *x509.Certificate) bool {
	s256 := sha256.Sum256(c.Raw)
	s1 := sha1.Sum(c.Raw)
	for key, sum := range map[jose.HeaderKey][]byte{"x5t#S256": s256[:], "x5t": s1[:]} {
		v, ok := h.ExtraHeaders[key].(string)
		if !ok {
			continue
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding} {
			if b, err := enc.DecodeString(v); err == nil && hex.EncodeToString(b) == hex.EncodeToString(sum) {
				return true
			}
		}
	}
	return false
}

// authorized checks the bearer token of a Graph request.
func (s *Server) authorized(r *http.Request) (bool, string) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return false, "Access token is empty."
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return false, "Access token validation failure. Invalid audience."
	}
	s.mu.Lock()
	exp, ok := s.tokens[tok]
	s.mu.Unlock()
	if !ok {
		return false, "IDX14100: JWT is not well formed, there are no dots (.)."
	}
	if time.Now().After(exp) {
		return false, "Lifetime validation failed, the token is expired."
	}
	return true, ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// graphError writes Graph's error shape.
func graphError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":    code,
		"message": msg,
		"innerError": map[string]any{
			"date":              time.Now().UTC().Format("2006-01-02T15:04:05"),
			"request-id":        uuid.NewString(),
			"client-request-id": uuid.NewString(),
		},
	}})
}

var errNotFound = errors.New("not found")
