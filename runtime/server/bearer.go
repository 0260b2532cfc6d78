package server

import (
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// Bearer token validation of custom authentication extensions. Entra obtains a token for the
// app registration representing the API (client credentials) and sends it as
// Authorization: Bearer. A token is accepted when
//   - it is a JWS signed with RS256 by a key of the tenant's JWKS (alg none, HMAC and everything
//     else are refused before any key is looked at);
//   - aud is the configured app id;
//   - iss is https://login.microsoftonline.com/<tenant>/v2.0 or https://<domain>.ciamlogin.com/<tenant>/v2.0
//     (v1 tokens: https://sts.windows.net/<tenant>/), or exactly the configured issuer;
//   - azp (v2) or appid (v1) is an allowed authorized party (default the Entra authentication
//     events service);
//   - exp is present and not past, and nbf and iat are not in the future, with BearerLeeway.

// BearerLeeway is the clock skew tolerated on exp, nbf and iat.
const BearerLeeway = time.Minute

// Key cache timing.
const (
	// jwksTTL is how long fetched keys are used before they are refreshed.
	jwksTTL = 12 * time.Hour
	// jwksMinRefresh rate-limits refreshes caused by an unknown key id, so tokens with made-up
	// key ids cannot make the runtime hammer the identity provider.
	jwksMinRefresh = 30 * time.Second
	// jwksFetchTimeout bounds one discovery + JWKS fetch.
	jwksFetchTimeout = 5 * time.Second
	// jwksMaxBytes bounds the documents read.
	jwksMaxBytes = 1 << 20
)

// Reasons of apiconnector_auth_failures_total in bearer mode.
const (
	reasonBadToken        = "invalid_token"
	reasonBadSignature    = "bad_signature"
	reasonUnknownKey      = "unknown_key"
	reasonKeysUnavailable = "keys_unavailable"
	reasonExpired         = "expired"
	reasonNotYetValid     = "not_yet_valid"
	reasonWrongAudience   = "wrong_audience"
	reasonWrongIssuer     = "wrong_issuer"
	reasonWrongAZP        = "wrong_azp"
)

// bearerConfig is the parsed authentication.bearer.
type bearerConfig struct {
	tenant    string // lower case
	audience  string
	issuer    string // exact issuer, or "" for the Entra defaults
	configURL string
	azp       map[string]bool
	// insecureLoopback lets the keys come over http from a loopback address (tests only).
	insecureLoopback bool
}

// checkKeysURL refuses URLs the signing keys must not come from: anything but https, except http
// to a loopback address when insecureLoopback is set. Over http anyone on the path could hand the
// runtime their own keys and sign tokens with them.
func checkKeysURL(raw string, insecureLoopback bool) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && insecureLoopback && v1alpha1.IsLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("%q: signing keys are only fetched over https", raw)
}

var ciamIssuerRE = regexp.MustCompile(`^https://[a-z0-9]([-a-z0-9]*[a-z0-9])?\.ciamlogin\.com/([0-9a-f-]{36})/v2\.0$`)

func parseBearer(b *v1alpha1.BearerAuth, insecureLoopback bool) (*bearerConfig, error) {
	if b.TenantID == "" || b.Audience == "" {
		return nil, errors.New("authentication: bearer needs tenantId and audience")
	}
	c := &bearerConfig{
		tenant:   strings.ToLower(b.TenantID),
		audience: b.Audience,
		issuer:   strings.TrimSuffix(b.Issuer, "/"),
		azp:      map[string]bool{},

		insecureLoopback: insecureLoopback,
	}
	c.configURL = b.DiscoveryURL()
	if err := checkKeysURL(c.configURL, insecureLoopback); err != nil {
		return nil, fmt.Errorf("authentication: bearer OpenID configuration: %w", err)
	}
	parties := b.AllowedAuthorizedParties
	if len(parties) == 0 {
		parties = []string{v1alpha1.EntraAuthenticationEventsAppID}
	}
	for _, p := range parties {
		c.azp[strings.ToLower(p)] = true
	}
	return c, nil
}

func (c *bearerConfig) issuerOK(iss, ver string) bool {
	if c.issuer != "" {
		return strings.TrimSuffix(iss, "/") == c.issuer
	}
	if iss == "https://login.microsoftonline.com/"+c.tenant+"/v2.0" {
		return true
	}
	if m := ciamIssuerRE.FindStringSubmatch(strings.ToLower(iss)); m != nil && m[2] == c.tenant && iss == strings.ToLower(iss) {
		return true
	}
	return ver == "1.0" && iss == "https://sts.windows.net/"+c.tenant+"/"
}

// entraClaims are the claims beyond the registered ones that are checked.
type entraClaims struct {
	AZP   string `json:"azp"`
	AppID string `json:"appid"`
	Ver   string `json:"ver"`
	TID   string `json:"tid"`
}

// checkBearer validates the request's bearer token; "" means authenticated. A key fetch it waits
// for is waited on only until ctx (the request's deadline) is done.
func checkBearer(ctx context.Context, r *http.Request, cfg *bearerConfig, keys *jwksCache, now time.Time) string {
	raw, reason := authorization(r, "Bearer")
	if reason != "" {
		return reason
	}
	// Only RS256: Entra signs with RSA keys, and naming the algorithm here is what stops alg
	// confusion (none, HS256 with the public key as secret).
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(tok.Headers) != 1 {
		return reasonBadToken
	}
	key, reason := keys.key(ctx, tok.Headers[0].KeyID, now)
	if reason != "" {
		return reason
	}
	var std jwt.Claims
	var extra entraClaims
	if err := tok.Claims(key, &std, &extra); err != nil {
		return reasonBadSignature
	}
	if std.Expiry == nil {
		return reasonBadToken // a token without exp would be valid forever
	}
	switch err := std.ValidateWithLeeway(jwt.Expected{Time: now}, BearerLeeway); {
	case errors.Is(err, jwt.ErrExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return reasonNotYetValid
	case err != nil:
		return reasonBadToken
	}
	if !std.Audience.Contains(cfg.audience) {
		return reasonWrongAudience
	}
	if !cfg.issuerOK(std.Issuer, extra.Ver) {
		return reasonWrongIssuer
	}
	party := extra.AZP
	if party == "" {
		party = extra.AppID
	}
	if !cfg.azp[strings.ToLower(party)] {
		return reasonWrongAZP
	}
	return ""
}

// jwksCache holds the signing keys of one OpenID configuration. Keys are fetched on first use
// (or by prefetch), refreshed after jwksTTL, and refreshed early when a token names an unknown key
// id (at most every jwksMinRefresh), so Microsoft's key rollover is picked up. A failed refresh
// keeps the keys it had. Concurrent requests share one fetch; a request waits for it only until
// its own deadline.
type jwksCache struct {
	configURL        string
	insecureLoopback bool // see bearerConfig
	client           *http.Client
	log              *slog.Logger

	mu          sync.Mutex
	keys        map[string]*jose.JSONWebKey // by kid; RSA signing keys only
	fetched     time.Time                   // last successful fetch
	lastAttempt time.Time
	inflight    chan struct{}
}

func newJWKSCache(b *bearerConfig, log *slog.Logger) *jwksCache {
	t := http.DefaultTransport.(*http.Transport).Clone()
	return &jwksCache{
		configURL:        b.configURL,
		insecureLoopback: b.insecureLoopback,
		client: &http.Client{
			Transport: t,
			Timeout:   jwksFetchTimeout,
			// Discovery documents are not redirected; refuse rather than follow somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log: log,
	}
}

// prefetch starts a fetch in the background so the first request does not pay for it.
func (c *jwksCache) prefetch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.startFetchLocked(time.Now())
}

// key returns the key with kid, fetching keys when there are none, they are older than jwksTTL,
// or kid is unknown and the last attempt is older than jwksMinRefresh.
func (c *jwksCache) key(ctx context.Context, kid string, now time.Time) (*jose.JSONWebKey, string) {
	if kid == "" {
		return nil, reasonBadToken // Entra's tokens always name their key
	}
	c.mu.Lock()
	k, known := c.keys[kid]
	stale := c.keys == nil || now.Sub(c.fetched) > jwksTTL
	canRefresh := c.inflight != nil || now.Sub(c.lastAttempt) >= jwksMinRefresh
	if known && !stale {
		c.mu.Unlock()
		return k, ""
	}
	if !canRefresh {
		c.mu.Unlock()
		if known { // stale but a refresh was just tried: keep using what we have
			return k, ""
		}
		if c.keys == nil {
			return nil, reasonKeysUnavailable
		}
		return nil, reasonUnknownKey
	}
	done := c.startFetchLocked(now)
	c.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		// The request's deadline comes first: answer now, the fetch goes on for later requests.
		if known {
			return k, ""
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.keys == nil {
			return nil, reasonKeysUnavailable
		}
		return nil, reasonUnknownKey
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[kid]; ok {
		return k, ""
	}
	if c.keys == nil {
		return nil, reasonKeysUnavailable
	}
	return nil, reasonUnknownKey
}

func (c *jwksCache) startFetchLocked(now time.Time) chan struct{} {
	if c.inflight != nil {
		return c.inflight
	}
	done := make(chan struct{})
	c.inflight = done
	c.lastAttempt = now
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
		defer cancel()
		keys, err := c.fetch(ctx)
		c.mu.Lock()
		if err == nil {
			c.keys, c.fetched = keys, time.Now()
		}
		c.inflight = nil
		c.mu.Unlock()
		close(done)
		if err != nil {
			c.log.Error("signing keys not loaded", "openid_configuration", c.configURL, "error", err.Error())
		} else {
			c.log.Info("signing keys loaded", "openid_configuration", c.configURL, "keys", len(keys))
		}
	}()
	return done
}

func (c *jwksCache) fetch(ctx context.Context) (map[string]*jose.JSONWebKey, error) {
	var discovery struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := c.getJSON(ctx, c.configURL, &discovery); err != nil {
		return nil, fmt.Errorf("openid configuration: %w", err)
	}
	if err := checkKeysURL(discovery.JWKSURI, c.insecureLoopback); err != nil {
		return nil, fmt.Errorf("openid configuration: jwks_uri: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := c.getJSON(ctx, discovery.JWKSURI, &set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	keys := map[string]*jose.JSONWebKey{}
	for i := range set.Keys {
		k := set.Keys[i]
		if k.KeyID == "" || !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if _, ok := k.Key.(*rsa.PublicKey); !ok { // RS256 only; Entra does not sign with EC keys
			continue
		}
		keys[k.KeyID] = &k
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no RSA signing keys")
	}
	return keys, nil
}

func (c *jwksCache) getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return err
	}
	if len(body) > jwksMaxBytes {
		return fmt.Errorf("GET %s: document larger than %d bytes", url, jwksMaxBytes)
	}
	return json.Unmarshal(body, v)
}
