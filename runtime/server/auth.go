package server

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// Header names of the forwarded-certificate mode (the enum of ForwardedClientCertificate.Header).
const (
	HeaderNginxClientCert   = "ssl-client-cert"             // ingress-nginx: URL-escaped PEM
	HeaderTraefikClientCert = "X-Forwarded-Tls-Client-Cert" // Traefik: base64 DER, comma-separated chain
)

type authMode int

const (
	authBasic authMode = iota + 1
	authClientCert
	authBearer
)

// authConfig is the parsed spec.authentication.
type authConfig struct {
	mode          authMode
	forwardHeader string         // empty unless the forwarded mode is on
	trusted       []netip.Prefix // proxies allowed to set forwardHeader
	cert          certPolicy     // client certificate mode: constraints beyond ca.crt
	bearer        *bearerConfig  // bearer mode
	keys          *jwksCache     // bearer mode: the signing keys of bearer.configURL
}

// parseAuth parses spec.authentication. insecureLoopbackKeys is Options.InsecureLoopbackKeys.
func parseAuth(a v1alpha1.Authentication, insecureLoopbackKeys bool) (authConfig, error) {
	n := 0
	for _, set := range []bool{a.Basic != nil, a.ClientCertificate != nil, a.Bearer != nil} {
		if set {
			n++
		}
	}
	switch {
	case n > 1:
		return authConfig{}, errors.New("authentication: more than one of basic, clientCertificate and bearer is set")
	case a.Bearer != nil:
		b, err := parseBearer(a.Bearer, insecureLoopbackKeys)
		if err != nil {
			return authConfig{}, err
		}
		return authConfig{mode: authBearer, bearer: b}, nil
	case a.Basic != nil:
		return authConfig{mode: authBasic}, nil
	case a.ClientCertificate != nil:
		p, err := parseCertPolicy(a.ClientCertificate)
		if err != nil {
			return authConfig{}, err
		}
		cfg := authConfig{mode: authClientCert, cert: p}
		if f := a.ClientCertificate.Forwarded; f != nil {
			if f.Header != HeaderNginxClientCert && f.Header != HeaderTraefikClientCert {
				return authConfig{}, fmt.Errorf("authentication: unsupported forwarded header %q", f.Header)
			}
			if len(f.TrustedProxies) == 0 {
				return authConfig{}, errors.New("authentication: forwarded needs at least one trusted proxy")
			}
			for _, c := range f.TrustedProxies {
				p, err := netip.ParsePrefix(strings.TrimSpace(c))
				if err != nil {
					return authConfig{}, fmt.Errorf("authentication: trusted proxy: %w", err)
				}
				cfg.trusted = append(cfg.trusted, p.Masked())
			}
			cfg.forwardHeader = f.Header
		}
		return cfg, nil
	default:
		return authConfig{}, errors.New("authentication: none of basic, clientCertificate and bearer is set")
	}
}

// Reasons of apiconnector_auth_failures_total.
const (
	reasonNotConfigured  = "credentials_not_loaded"
	reasonMissing        = "missing"
	reasonMalformed      = "malformed"
	reasonInvalid        = "invalid_credentials"
	reasonNoCert         = "no_certificate"
	reasonUntrustedCert  = "untrusted_certificate"
	reasonBadForwarded   = "bad_forwarded_header"
	reasonUntrustedProxy = "untrusted_proxy"
)

// authenticate returns "" when the request is authenticated, or the failure reason. It never
// accepts a request when the credentials of the configured mode are not loaded. ctx carries the
// request's deadline, which bounds any wait (the bearer mode's signing-key fetch).
func authenticate(ctx context.Context, r *http.Request, cfg authConfig, creds *credentials, now time.Time) string {
	switch cfg.mode {
	case authBasic:
		if creds == nil || creds.basic == nil {
			return reasonNotConfigured
		}
		return checkBasic(r, creds.basic)
	case authClientCert:
		if creds == nil || creds.trust == nil {
			return reasonNotConfigured
		}
		return checkClientCert(r, cfg, creds.trust, now)
	case authBearer:
		if cfg.keys == nil {
			return reasonNotConfigured
		}
		return checkBearer(ctx, r, cfg.bearer, cfg.keys, now)
	default:
		return reasonNotConfigured
	}
}

// authorization returns the credentials of the request's Authorization header in scheme, or why
// there are none: the header is missing, or malformed (repeated, another scheme, empty).
func authorization(r *http.Request, scheme string) (credentials, reason string) {
	h := r.Header.Values("Authorization")
	if len(h) == 0 {
		return "", reasonMissing
	}
	if len(h) > 1 {
		return "", reasonMalformed
	}
	s, credentials, ok := strings.Cut(h[0], " ")
	credentials = strings.TrimSpace(credentials)
	if !ok || !strings.EqualFold(s, scheme) || credentials == "" {
		return "", reasonMalformed
	}
	return credentials, ""
}

func checkBasic(r *http.Request, b *basicCreds) string {
	encoded, reason := authorization(r, "Basic")
	if reason != "" {
		return reason
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return reasonMalformed
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return reasonMalformed
	}
	if !b.match(user, pass) {
		return reasonInvalid
	}
	return ""
}

func checkClientCert(r *http.Request, cfg authConfig, trust *trustBundle, now time.Time) string {
	var chain []*x509.Certificate
	if cfg.forwardHeader != "" {
		if values := r.Header.Values(cfg.forwardHeader); len(values) > 0 {
			if !fromTrustedProxy(r.RemoteAddr, cfg.trusted) {
				// Anyone can set a header; only the configured proxies are believed. The request is
				// refused rather than falling back to the TLS peer, since a spoofed header is a
				// sign of someone probing.
				return reasonUntrustedProxy
			}
			if len(values) > 1 {
				return reasonBadForwarded
			}
			c, err := parseForwardedCert(cfg.forwardHeader, values[0])
			if err != nil {
				return reasonBadForwarded
			}
			chain = c
		}
	}
	if chain == nil && r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	if len(chain) == 0 {
		return reasonNoCert
	}
	// A forwarded certificate meets the same constraints as one presented in the handshake. Note
	// that it proves nothing by itself (a certificate is public); the proxy checked the private
	// key, and only the network path keeps others from sending the header (docs/exposure.md).
	return checkTrust(chain, trust, cfg.cert, now)
}

func fromTrustedProxy(remoteAddr string, trusted []netip.Prefix) bool {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseForwardedCert decodes the client chain (leaf first) a proxy forwarded.
func parseForwardedCert(header, value string) ([]*x509.Certificate, error) {
	// Both proxies escape the value as a URI component (space is %20, '+' is %2B). PathUnescape,
	// unlike QueryUnescape, keeps a literal '+' (part of the base64 alphabet) instead of turning it
	// into a space.
	value = strings.TrimSpace(value)
	unescaped, err := url.PathUnescape(value)
	if err != nil {
		return nil, fmt.Errorf("unescape forwarded certificate: %w", err)
	}
	var ders [][]byte
	switch header {
	case HeaderNginxClientCert:
		ders = pemCertificates(unescaped)
		if len(ders) == 0 {
			// Form-style escaping (space as '+'), as some proxies configured by hand produce.
			if alt, err := url.QueryUnescape(value); err == nil {
				ders = pemCertificates(alt)
			}
		}
	case HeaderTraefikClientCert:
		for _, part := range strings.Split(unescaped, ",") {
			der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(part))
			if err != nil {
				return nil, fmt.Errorf("decode forwarded certificate: %w", err)
			}
			ders = append(ders, der)
		}
	default:
		return nil, fmt.Errorf("unsupported forwarded header %q", header)
	}
	if len(ders) == 0 {
		return nil, errors.New("no certificate in forwarded header")
	}
	chain := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse forwarded certificate: %w", err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

func pemCertificates(s string) [][]byte {
	var ders [][]byte
	for rest := []byte(s); ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return ders
		}
		if block.Type == "CERTIFICATE" {
			ders = append(ders, block.Bytes)
		}
	}
}
