package server

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/apiconnector/operator/runtime/secretfile"
)

// Names of the credential files in the secrets directory (the keys of the connector's Secret).
const (
	UsernameFile = "username"
	PasswordFile = "password"
	CAFile       = "ca.crt"
	// RegisteredDir holds, in the secrets directory, the Basic credential registered in Entra
	// (username and password, projected from the operator's <connector>-entra-basic Secret). While
	// a rotated credential is being registered, Entra may still send the old one: both pairs are
	// accepted. The directory is absent for a connector that is not registered in Entra.
	RegisteredDir = "registered"
)

// basicCreds holds only hashes: comparing fixed-size digests in constant time hides the length of
// the stored secrets, which comparing the raw bytes with subtle.ConstantTimeCompare would not.
// pairs holds the connector's own credential and, when present, the one registered in Entra.
type basicCreds struct {
	pairs []basicPair
}

type basicPair struct {
	user, pass [sha256.Size]byte
}

func (b *basicCreds) match(user, pass string) bool {
	u := sha256.Sum256([]byte(user))
	p := sha256.Sum256([]byte(pass))
	// Every comparison always runs, so timing does not tell which part or which pair was wrong.
	ok := 0
	for _, pair := range b.pairs {
		ok |= subtle.ConstantTimeCompare(u[:], pair.user[:]) & subtle.ConstantTimeCompare(p[:], pair.pass[:])
	}
	return ok == 1
}

// trustBundle is the parsed ca.crt: CAs and pinned client certificates, several at once so a
// client certificate can be rolled over.
type trustBundle struct {
	certs  []*x509.Certificate
	pool   *x509.CertPool
	public []string // subjects of the well-known public CAs in the bundle
}

// credentials are one snapshot of the secrets directory. A nil part did not load from the current
// files; its error says why (file names and parse errors, never values).
type credentials struct {
	basic    *basicCreds
	trust    *trustBundle
	basicErr error
	trustErr error
}

// loadCredentials reads the secrets directory. Nothing is carried over from an earlier snapshot:
// a Secret that was emptied, deleted or made invalid revokes what it held.
func loadCredentials(dir string) *credentials {
	c := &credentials{}
	c.basic, c.basicErr = loadBasic(dir)
	c.trust, c.trustErr = loadTrust(dir)
	return c
}

// notReady says why the credentials of the configured method cannot authenticate anyone, or "".
func (c *credentials) notReady(cfg authConfig) string {
	switch cfg.mode {
	case authBasic:
		if c == nil || c.basic == nil {
			return reasonText("basic credentials not loaded", c, func(c *credentials) error { return c.basicErr })
		}
	case authClientCert:
		if c == nil || c.trust == nil {
			return reasonText("client certificate trust bundle not loaded", c, func(c *credentials) error { return c.trustErr })
		}
		if len(c.trust.public) > 0 && cfg.cert.fingerprints == nil {
			return fmt.Sprintf("%s holds the well-known public CA %q: set allowedFingerprints", CAFile, c.trust.public[0])
		}
	}
	// Bearer mode needs no local credentials. Its signing keys are fetched on demand from the
	// identity provider; readiness does not depend on them, since an outage there would
	// otherwise take every replica out of service at once.
	return ""
}

func reasonText(what string, c *credentials, err func(*credentials) error) string {
	if c == nil || err(c) == nil {
		return what
	}
	return what + ": " + err(c).Error()
}

// readSecretFile reads one credential file, without its trailing newline (secretfile.Trim).
func readSecretFile(dir, name string) ([]byte, error) {
	return secretfile.Read(filepath.Join(dir, name))
}

// loadBasic reads the connector's credential and, when its files exist, the registered one
// (RegisteredDir). A registered pair that is present but incomplete or invalid fails the whole
// load, as the connector's own pair does: half a credential is a fault, not a reason to serve.
func loadBasic(dir string) (*basicCreds, error) {
	main, err := loadBasicPair(dir)
	if err != nil {
		return nil, fmt.Errorf("basic credentials: %w", err)
	}
	b := &basicCreds{pairs: []basicPair{*main}}
	regDir := filepath.Join(dir, RegisteredDir)
	if !anyExists(filepath.Join(regDir, UsernameFile), filepath.Join(regDir, PasswordFile)) {
		return b, nil
	}
	reg, err := loadBasicPair(regDir)
	if err != nil {
		return nil, fmt.Errorf("basic credentials registered in Entra (%s/): %w", RegisteredDir, err)
	}
	b.pairs = append(b.pairs, *reg)
	return b, nil
}

// anyExists says whether any of paths exists (an error other than "not found" counts as existing,
// so that the read that follows reports it).
func anyExists(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

func loadBasicPair(dir string) (*basicPair, error) {
	user, err := readSecretFile(dir, UsernameFile)
	if err != nil {
		return nil, err
	}
	pass, err := readSecretFile(dir, PasswordFile)
	if err != nil {
		return nil, err
	}
	if len(user) == 0 || len(pass) == 0 {
		// An empty password would make "user:" a valid credential; refuse to run like that.
		return nil, errors.New("username and password must not be empty")
	}
	if bytes.IndexByte(user, ':') >= 0 {
		return nil, errors.New("username must not contain ':'")
	}
	return &basicPair{user: sha256.Sum256(user), pass: sha256.Sum256(pass)}, nil
}

func loadTrust(dir string) (*trustBundle, error) {
	data, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("client certificate trust: %w", err)
	}
	t, err := parseTrust(data, time.Now())
	if err != nil {
		return nil, fmt.Errorf("client certificate trust %s: %w", CAFile, err)
	}
	return t, nil
}

func parseTrust(data []byte, now time.Time) (*trustBundle, error) {
	t := &trustBundle{pool: x509.NewCertPool()}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(t.certs)+1, err)
		}
		t.certs = append(t.certs, c)
		t.pool.AddCert(c)
	}
	if len(t.certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE blocks")
	}
	for _, c := range t.certs {
		if isPublicCA(c, t.certs) {
			t.public = append(t.public, c.Subject.String())
		}
	}
	return t, nil
}

// verify accepts a client chain (leaf first) when the leaf is pinned in the bundle or chains to a
// certificate in it, for usage (x509.ExtKeyUsageAny waives the check). The connector's constraints
// (certPolicy) are checked separately.
func (t *trustBundle) verify(chain []*x509.Certificate, now time.Time, usage x509.ExtKeyUsage) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	leaf := chain[0]
	for _, c := range t.certs {
		if bytes.Equal(c.Raw, leaf.Raw) {
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return errors.New("pinned certificate is expired or not yet valid")
			}
			return nil
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         t.pool,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}
