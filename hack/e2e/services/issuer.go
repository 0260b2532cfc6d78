package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// --- issuer ---

// issuer stands in for the Microsoft Entra token service of custom authentication extensions: it
// publishes OpenID configurations and a JWKS the way login.microsoftonline.com does, and signs
// (RS256, with the published key's kid) whatever claims the e2e client asks for, so the client can
// send valid tokens and deliberately wrong ones (audience, expiry, authorized party, issuer).
//
//	GET /{tenant}/v2.0/.well-known/openid-configuration  issuer https://login.microsoftonline.com/{tenant}/v2.0
//	GET /{tenant}/.well-known/openid-configuration       issuer https://sts.windows.net/{tenant}/ (v1.0 tokens)
//	GET /{tenant}/discovery/v2.0/keys, /{tenant}/discovery/keys  the JWKS (one RSA key, made at start)
//	POST /admin/tokens  {claims} -> {"token": "<compact JWS>"}  (Bearer admin token)
//
// jwks_uri names the host the configuration was asked on, with the scheme it was asked with, so the
// runtime fetches the keys from the same in-cluster Service (https through its Service name).
type issuer struct {
	token  string // admin token
	key    *rsa.PrivateKey
	kid    string
	signer jose.Signer
}

func newIssuer(adminToken string) (*issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	thumb, err := (&jose.JSONWebKey{Key: &key.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return nil, err
	}
	return &issuer{token: adminToken, key: key, kid: kid, signer: signer}, nil
}

func (is *issuer) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		tenant := strings.ToLower(r.PathValue("tenant"))
		is.configuration(w, r, "https://login.microsoftonline.com/"+tenant+"/v2.0", "/"+tenant+"/discovery/v2.0/keys")
	})
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		tenant := strings.ToLower(r.PathValue("tenant"))
		is.configuration(w, r, "https://sts.windows.net/"+tenant+"/", "/"+tenant+"/discovery/keys")
	})
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", is.keys)
	mux.HandleFunc("GET /{tenant}/discovery/keys", is.keys)
	mux.HandleFunc("POST /admin/tokens", func(w http.ResponseWriter, r *http.Request) {
		if is.token == "" || !bearerOK(r, is.token) {
			writeJSON(w, 401, map[string]string{"error": "unauthorized"})
			return
		}
		// The claims are signed exactly as sent (numbers kept as written).
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.UseNumber()
		var claims map[string]any
		if err := dec.Decode(&claims); err != nil || claims == nil {
			writeJSON(w, 400, map[string]string{"error": "a JSON object of claims is required"})
			return
		}
		tok, err := is.sign(claims)
		if err != nil {
			writeJSON(w, 500, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, 200, map[string]string{"token": tok})
	})
}

// configuration answers an OpenID configuration with Entra's issuer and the JWKS at keysPath on
// the host and scheme the request came with.
func (is *issuer) configuration(w http.ResponseWriter, r *http.Request, iss, keysPath string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	writeJSON(w, 200, map[string]any{
		"issuer":                                iss,
		"jwks_uri":                              scheme + "://" + r.Host + keysPath,
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (is *issuer) keys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: string(jose.RS256), Use: "sig"},
	}})
}

// sign makes a compact JWS (header alg RS256, typ JWT, kid) of the claims.
func (is *issuer) sign(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := is.signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
