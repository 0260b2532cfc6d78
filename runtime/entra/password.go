package entra

import (
	"bytes"
	"cmp"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Just-in-time password migration (OnPasswordSubmit, preview): Entra sends the password the user
// typed in encryptedPasswordContext, a compact JWE encrypted to a public key registered on the
// extension's app registration, and expects one of four actions back with the nonce of that
// context echoed (how-to-migrate-passwords-just-in-time; see testdata/golden/extensions/README.md).

// Answers of OnPasswordSubmit. A rule decides MigratePassword, UpdatePassword or Retry; Block is
// ActionShowBlockPage; Continue (no rule matched, failurePolicy Ignore) is sent as Retry, never as
// a migration.
const (
	// ActionMigratePassword: the legacy system verified the password; Entra stores it.
	ActionMigratePassword Action = "MigratePassword"
	// ActionUpdatePassword: the password is right but must be changed (weak or expired).
	ActionUpdatePassword Action = "UpdatePassword"
	// ActionRetry: the password is wrong; the user may try again.
	ActionRetry Action = "Retry"
)

// Algorithms accepted for encryptedPasswordContext. Microsoft's page says only "RSA JWE"; Entra
// encrypts tokens with RSA-OAEP or RSA-OAEP-256, and Microsoft's migration kit tests its key pair
// with OAEP-SHA256. RSA1_5 (padding oracles) and every other key algorithm are refused.
var (
	passwordKeyAlgorithms     = []jose.KeyAlgorithm{jose.RSA_OAEP_256, jose.RSA_OAEP}
	passwordContentEncryption = []jose.ContentEncryption{
		jose.A128GCM, jose.A192GCM, jose.A256GCM, jose.A128CBC_HS256, jose.A192CBC_HS384, jose.A256CBC_HS512,
	}
)

// maxPasswordContext bounds the JWE accepted; the documented context holds three short claims.
const maxPasswordContext = 16 << 10

// PasswordContextError says why encryptedPasswordContext could not be used. Reason is a metric
// label: malformed (not a compact JWE of the accepted algorithms), no_key (no decryption key
// configured or loadable), decrypt (no configured key decrypts it, or it was tampered with),
// payload (the decrypted content is not the documented claims), replay (its nonce was seen
// before). It never carries a value of the context.
type PasswordContextError struct {
	Reason string
	Err    error
}

func (e *PasswordContextError) Error() string { return "password context: " + e.Err.Error() }
func (e *PasswordContextError) Unwrap() error { return e.Err }

func pcErr(reason, format string, args ...any) *PasswordContextError {
	return &PasswordContextError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// DecryptPasswordContext decrypts a compact JWE encryptedPasswordContext with the first of keys
// that opens it (two keys are accepted during a rollover) and reads its claims: username and
// user-password become Sensitive{"username", "password"}, nonce is returned apart. The decrypted
// content is the claims as a JSON object, or wrapped in an unsecured JWT (alg none) as Microsoft's
// sample code decodes it. Errors are *PasswordContextError.
func DecryptPasswordContext(compact string, keys []*rsa.PrivateKey) (Sensitive, string, error) {
	if len(keys) == 0 {
		return nil, "", pcErr("no_key", "no decryption key is configured")
	}
	if len(compact) > maxPasswordContext || strings.Count(compact, ".") != 4 {
		return nil, "", pcErr("malformed", "not a compact JWE")
	}
	obj, err := jose.ParseEncryptedCompact(compact, passwordKeyAlgorithms, passwordContentEncryption)
	if err != nil {
		return nil, "", pcErr("malformed", "not a compact JWE with RSA-OAEP-256 or RSA-OAEP")
	}
	var plain []byte
	for _, k := range keys {
		if plain, err = obj.Decrypt(k); err == nil {
			break
		}
	}
	if err != nil {
		return nil, "", pcErr("decrypt", "none of the %d configured keys decrypts it, or it was altered", len(keys))
	}
	claims, err := passwordClaims(plain)
	if err != nil {
		return nil, "", err
	}
	return Sensitive{"username": claims.Username, "password": claims.Password}, claims.Nonce, nil
}

type passwordClaimSet struct {
	Username string `json:"username"`
	Password string `json:"user-password"`
	Nonce    string `json:"nonce"`
}

func passwordClaims(plain []byte) (*passwordClaimSet, error) {
	plain = bytes.TrimSpace(plain)
	if len(plain) > 0 && plain[0] != '{' {
		// An unsecured JWT: base64url(header).base64url(claims). with header alg none.
		parts := strings.Split(string(plain), ".")
		if len(parts) != 3 || parts[2] != "" {
			return nil, pcErr("payload", "the decrypted content is neither JSON nor an unsecured JWT")
		}
		var hdr struct {
			Alg string `json:"alg"`
		}
		h, err := base64.RawURLEncoding.DecodeString(parts[0])
		if err != nil || json.Unmarshal(h, &hdr) != nil || hdr.Alg != "none" {
			return nil, pcErr("payload", "the decrypted content is a JWT but not an unsecured one (alg none)")
		}
		if plain, err = base64.RawURLEncoding.DecodeString(parts[1]); err != nil {
			return nil, pcErr("payload", "the decrypted JWT's claims are not base64url")
		}
	}
	var c passwordClaimSet
	if err := json.Unmarshal(plain, &c); err != nil {
		return nil, pcErr("payload", "the decrypted claims are not a JSON object of strings")
	}
	switch {
	case c.Nonce == "":
		return nil, pcErr("payload", "the decrypted claims have no nonce")
	case c.Password == "":
		return nil, pcErr("payload", "the decrypted claims have no user-password")
	}
	return &c, nil
}

// BlockTitle is the title of the Block answer at OnPasswordSubmit; its message is the rule's.
// Microsoft's sample code sends both a title and a message with Block (and this same title).
const BlockTitle = "Sign-in blocked"

// encodePasswordSubmit renders the answer of OnPasswordSubmit, always HTTP 200:
//
//	MigratePassword, UpdatePassword, Retry   the action of that name
//	Continue                                 Retry: an unverified password is never migrated
//	anything else (ShowBlockPage, nil...)    Block{title, message}
//
// with data.nonce = Decision.Nonce when known.
func encodePasswordSubmit(ev extensionEvent, d *Decision) (int, []byte) {
	if d == nil {
		d = &Decision{Action: ActionShowBlockPage}
	}
	name := PasswordSubmitAnswer(d.Action)
	action := map[string]any{"@odata.type": ev.actionPrefix + name}
	if name == "Block" {
		action["title"] = BlockTitle
		action["message"] = cmp.Or(d.UserMessage, DefaultFailureMessage)
	}
	data := map[string]any{"@odata.type": ev.responseType, "actions": []any{action}}
	if d.Nonce != "" {
		data["nonce"] = d.Nonce
	}
	b, _ := json.Marshal(map[string]any{"data": data}) // strings only: cannot fail
	return http.StatusOK, b
}

// PasswordSubmitAnswer is the name of the OnPasswordSubmit action a decision is sent as
// (MigratePassword, UpdatePassword, Retry or Block; see encodePasswordSubmit).
func PasswordSubmitAnswer(a Action) string {
	switch a {
	case ActionMigratePassword, ActionUpdatePassword, ActionRetry:
		return string(a)
	case ActionContinue:
		return string(ActionRetry)
	}
	return "Block"
}

// ParseRSAPrivateKey reads a PEM RSA private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE
// KEY"), as exported from Azure Key Vault or openssl. Errors never quote the key.
func ParseRSAPrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	k, err := parseRSAPrivateKey(pemBytes)
	if err != nil {
		return nil, pcErr("no_key", "%v", err)
	}
	return k, nil
}

var errNotRSAKey = errors.New("not a PEM RSA private key (PKCS#8 PRIVATE KEY or PKCS#1 RSA PRIVATE KEY)")

func parseRSAPrivateKey(pemBytes []byte) (*rsa.PrivateKey, error) {
	for rest := pemBytes; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errNotRSAKey
		}
		switch b.Type {
		case "RSA PRIVATE KEY":
			if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
				return k, nil
			}
			return nil, errNotRSAKey
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if rk, ok := k.(*rsa.PrivateKey); ok && err == nil {
				return rk, nil
			}
			return nil, errNotRSAKey
		}
		// Another block (a certificate next to the key, as in a PKCS#12 export): go on.
	}
}
