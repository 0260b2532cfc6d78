package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// Reasons of apiconnector_auth_failures_total for client certificates that ca.crt trusts but the
// connector's constraints refuse.
const (
	reasonCertNotAllowed = "certificate_not_allowed" // fingerprint or subject not listed
	reasonCertUsage      = "certificate_usage"       // no clientAuth extended key usage
	reasonPublicCA       = "public_ca_without_pin"   // ca.crt holds a public CA and no fingerprint is pinned
)

// certPolicy is the parsed constraints of clientCertificate: what a certificate ca.crt trusts must
// also satisfy. A CA issues certificates to others too (a public one to anyone), so trusting
// everything it signed is never what is meant.
type certPolicy struct {
	fingerprints map[[sha256.Size]byte]bool // nil: not constrained by fingerprint
	subjects     map[string]bool            // lower case; nil: not constrained by subject
	anyEKU       bool
}

func parseCertPolicy(cc *v1alpha1.ClientCertificateAuth) (certPolicy, error) {
	p := certPolicy{anyEKU: cc.AllowAnyExtKeyUsage}
	if len(cc.AllowedFingerprints) == 0 && len(cc.AllowedSubjects) == 0 {
		return certPolicy{}, errors.New("authentication: clientCertificate needs allowedFingerprints or allowedSubjects")
	}
	for _, f := range cc.AllowedFingerprints {
		fp, err := parseFingerprint(f)
		if err != nil {
			return certPolicy{}, fmt.Errorf("authentication: clientCertificate.allowedFingerprints: %w", err)
		}
		if p.fingerprints == nil {
			p.fingerprints = map[[sha256.Size]byte]bool{}
		}
		p.fingerprints[fp] = true
	}
	for _, s := range cc.AllowedSubjects {
		if s = strings.TrimSpace(s); s == "" {
			return certPolicy{}, errors.New("authentication: clientCertificate.allowedSubjects: empty subject")
		}
		if p.subjects == nil {
			p.subjects = map[string]bool{}
		}
		p.subjects[strings.ToLower(s)] = true
	}
	return p, nil
}

// parseFingerprint reads a SHA-256 fingerprint: 64 hex digits, optionally colon-separated pairs.
func parseFingerprint(s string) ([sha256.Size]byte, error) {
	var fp [sha256.Size]byte
	h := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return fp, fmt.Errorf("%q is not a SHA-256 fingerprint (64 hex digits)", s)
	}
	copy(fp[:], b)
	return fp, nil
}

// allows checks the leaf against the constraints; "" means allowed. Every constraint that is set
// must match.
func (p certPolicy) allows(leaf *x509.Certificate) string {
	if r := p.allowsIdentity(leaf); r != "" {
		return r
	}
	if !p.anyEKU && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		// Listed explicitly: a certificate without the extension would be valid for any purpose
		// under RFC 5280, and the point is to refuse certificates issued for something else.
		return reasonCertUsage
	}
	return ""
}

// allowsIdentity checks the fingerprint and subject constraints.
func (p certPolicy) allowsIdentity(leaf *x509.Certificate) string {
	if p.fingerprints != nil && !p.fingerprints[sha256.Sum256(leaf.Raw)] {
		return reasonCertNotAllowed
	}
	if p.subjects != nil && !p.subjects[strings.ToLower(leaf.Subject.CommonName)] &&
		!slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return p.subjects[strings.ToLower(n)] }) {
		return reasonCertNotAllowed
	}
	return ""
}

// checkTrust verifies a client chain (leaf first) against ca.crt and the policy; "" means accepted.
func checkTrust(chain []*x509.Certificate, trust *trustBundle, p certPolicy, now time.Time) string {
	if len(trust.public) > 0 && p.fingerprints == nil {
		return reasonPublicCA
	}
	usage := x509.ExtKeyUsageClientAuth
	if p.anyEKU {
		usage = x509.ExtKeyUsageAny
	}
	if err := trust.verify(chain, now, usage); err == nil {
		return p.allows(chain[0])
	}
	// Refused: say why. Untrusted, or trusted but not this connector's client, or trusted but
	// a certificate of the chain is not for client authentication.
	if usage == x509.ExtKeyUsageAny || trust.verify(chain, now, x509.ExtKeyUsageAny) != nil {
		return reasonUntrustedCert
	}
	if r := p.allowsIdentity(chain[0]); r != "" {
		return r
	}
	return reasonCertUsage
}

// publicCAs are the roots of the Mozilla (NSS) trust store, as golang.org/x/crypto/x509roots
// embeds them. The embedded list rather than x509.SystemCertPool: it is the same wherever the
// runtime runs (a host may carry private CAs among its system roots), and a CertPool cannot be
// listed.
var publicCAs = sync.OnceValue(func() *publicRoots {
	r := &publicRoots{ids: map[string]bool{}, bySubject: map[string][]*x509.Certificate{}}
	for root := range bundle.Roots() {
		c, err := x509.ParseCertificate(root.Certificate)
		if err != nil {
			continue
		}
		r.ids[certID(c)] = true
		r.bySubject[string(c.RawSubject)] = append(r.bySubject[string(c.RawSubject)], c)
	}
	return r
})

type publicRoots struct {
	ids       map[string]bool                // subject and public key of each root
	bySubject map[string][]*x509.Certificate // roots by their subject, to find an issuer
}

// certID identifies a CA by subject and key, so a re-issued or cross-signed copy of a root counts
// as that root.
func certID(c *x509.Certificate) string {
	return string(c.RawSubject) + "\x00" + string(c.RawSubjectPublicKeyInfo)
}

// isPublicCA reports whether c is a CA of the public web PKI: a root of the Mozilla store, or a CA
// signed by one directly or through the other certificates of the bundle. Validity periods do not
// matter (a public CA not yet or no longer valid is still public), so the chain is followed by
// issuer and signature rather than with x509.Verify.
func isPublicCA(c *x509.Certificate, bundle []*x509.Certificate) bool {
	return publicCAs().anchor(c, bundle)
}

// anchor reports whether c is one of r or a CA signed by one, directly or through bundle.
func (r *publicRoots) anchor(c *x509.Certificate, bundle []*x509.Certificate) bool {
	if !c.BasicConstraintsValid || !c.IsCA {
		return false // a leaf in ca.crt is a pin of exactly that certificate, not an anchor
	}
	for cur, hops := c, 0; cur != nil && hops <= len(bundle); hops++ {
		if r.ids[certID(cur)] {
			return true
		}
		for _, root := range r.bySubject[string(cur.RawIssuer)] {
			if cur.CheckSignatureFrom(root) == nil {
				return true
			}
		}
		next := cur
		cur = nil
		for _, o := range bundle {
			if o != next && bytes.Equal(o.RawSubject, next.RawIssuer) && next.CheckSignatureFrom(o) == nil {
				cur = o
				break
			}
		}
	}
	return false
}
