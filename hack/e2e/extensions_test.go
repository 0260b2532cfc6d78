//go:build e2e

package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/controllers/children"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rulestest"
)

// Custom authentication extensions: bearer tokens minted by the in-cluster issuer (the e2e
// services' issuer role, which publishes Entra's OpenID configurations and JWKS), and the B2C
// token step with Basic credentials.

const (
	otpConnector    = "extension-email-otp"
	submitConnector = "shared-validation-extension"
	tokenConnector  = "b2c-token-enrichment"
	// otherApp is an app id that is neither a connector's audience nor Entra's.
	otherApp = "11112222-bbbb-3333-cccc-4444dddd5555"
)

func isBearer(u *unstructured.Unstructured) bool {
	_, ok, _ := unstructured.NestedMap(u.Object, "spec", "authentication", "bearer")
	return ok
}

func stepOf(u *unstructured.Unstructured) apiv1.Step {
	st, _, _ := unstructured.NestedString(u.Object, "spec", "step")
	return apiv1.Step(st)
}

// entraToken asks the issuer for the token Entra sends to the connector (v2.0: Entra's issuer for
// the connector's tenant, or the connector's issuer when it sets one; aud its audience; azp the
// authentication events service; valid for an hour). over replaces claims; a nil value removes one.
func (s *suite) entraToken(t *testing.T, connector string, over map[string]any) string {
	t.Helper()
	b := typed(t, s.connectors[connector]).Spec.Authentication.Bearer
	if b == nil {
		t.Fatalf("%s has no bearer authentication", connector)
	}
	tenant := strings.ToLower(b.TenantID)
	iss := "https://login.microsoftonline.com/" + tenant + "/v2.0"
	if b.Issuer != "" {
		iss = b.Issuer
	}
	azp := apiv1.EntraAuthenticationEventsAppID
	if len(b.AllowedAuthorizedParties) > 0 {
		azp = b.AllowedAuthorizedParties[0]
	}
	now := time.Now().Unix()
	claims := map[string]any{"iss": iss, "aud": b.Audience, "azp": azp, "ver": "2.0", "tid": tenant,
		"sub": "e2e-" + randomString()[:8], "iat": now - 60, "nbf": now - 60, "exp": now + 3600}
	for k, v := range over {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := s.admin("POST", "issuer", "/admin/tokens", claims, &out); err != nil || out.Token == "" {
		t.Fatalf("issuer: token for %s: %v", connector, err)
	}
	return out.Token
}

// v1Token is what a v1.0 token changes: Entra's v1 issuer and appid instead of azp.
func v1Token(tenant string) map[string]any {
	return map[string]any{"iss": "https://sts.windows.net/" + strings.ToLower(tenant) + "/", "ver": "1.0",
		"azp": nil, "appid": apiv1.EntraAuthenticationEventsAppID}
}

// wrongTokens are tokens the runtime must refuse, by what they change.
func wrongTokens(tenant string) map[string]map[string]any {
	now := time.Now().Unix()
	v1Other := v1Token(tenant)
	v1Other["appid"] = otherApp
	return map[string]map[string]any{
		"wrong audience":       {"aud": otherApp},
		"expired":              {"iat": now - 7200, "nbf": now - 7200, "exp": now - 600},
		"wrong azp":            {"azp": otherApp},
		"wrong appid (v1.0)":   v1Other,
		"other tenant's token": {"iss": "https://login.microsoftonline.com/ffff5f5f-aa6a-bb7b-cc8c-dddddd9d9d9d/v2.0"},
	}
}

// waitSigningKeys waits until every replica of the bearer connector accepts a valid token: the
// runtime has the issuer's signing keys. A replica's first fetch can fail while its pod's
// NetworkPolicy is being programmed, and it retries at most every 30 s. A valid token with an
// empty body is authenticated and then refused as a bad request (400); 401 means no keys yet.
// Several answers in a row, so every replica behind Traefik is asked.
func (s *suite) waitSigningKeys(t *testing.T, hc *http.Client, name string) {
	t.Helper()
	auth := "Bearer " + s.entraToken(t, name, nil)
	eventually(t, s.ctx, 2*time.Minute, name+" accepts the issuer's tokens", func() error {
		for i := 0; i < 6; i++ {
			a, err := s.send(hc, name, auth, []byte(`{}`))
			if err != nil {
				return err
			}
			if a.status != http.StatusBadRequest {
				return fmt.Errorf("a valid token with an empty body, answer %d: %s, want 400", i, a)
			}
		}
		return nil
	})
}

// bearerRefused checks that a bearer connector refuses requests without a valid token: none, not
// a JWT, Basic credentials, a token whose signature does not match, and the wrong tokens.
func (s *suite) bearerRefused(t *testing.T, hc *http.Client, name string) {
	t.Helper()
	valid := s.entraToken(t, name, nil)
	// The header and signature of a valid token around other claims: the signature fails.
	parts := strings.Split(valid, ".")
	forged := parts[0] + "." + strings.Split(s.entraToken(t, name, map[string]any{"aud": otherApp}), ".")[1] + "." + parts[2]
	auths := map[string]string{"no credentials": "", "not a JWT": "Bearer not-a-token", "Basic": basicAuth("entra", "a-password-of-16-chars"),
		"forged signature": "Bearer " + forged}
	tenant := typed(t, s.connectors[name]).Spec.Authentication.Bearer.TenantID
	for what, over := range wrongTokens(tenant) {
		auths[what] = "Bearer " + s.entraToken(t, name, over)
	}
	for what, auth := range auths {
		a, err := s.send(hc, name, auth, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusUnauthorized {
			t.Errorf("%s with %s: want 401, got %s", name, what, a)
		}
	}
}

// extensionCase sends a documented case to an extension connector as Entra does: the case's
// request envelope, or the one the rules test runner builds from its claims and context, with a
// valid token.
func (s *suite) extensionCase(t *testing.T, conn string, tc rulestest.Case) answer {
	t.Helper()
	env := tc.Request
	if env == nil {
		var err error
		if env, err = rulestest.BuildEnvelope(string(stepOf(s.connectors[conn])), tc.Claims, tc.Context); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := json.Marshal(env)
	a, err := s.send(s.entraClient(), conn, "Bearer "+s.entraToken(t, conn, nil), body)
	if err != nil {
		t.Fatalf("%s: %v", conn, err)
	}
	return a
}

// extensionAnswer is an extension response read back into the terms of a test case.
type extensionAnswer struct {
	action          entra.Action
	message         string
	claims          map[string]string // returned string values
	values          map[string]any    // returned values that are not strings
	attributeErrors map[string]string
}

// readExtensionAnswer reads the single action of a custom authentication extension response.
func readExtensionAnswer(a answer) (extensionAnswer, error) {
	out := extensionAnswer{claims: map[string]string{}, values: map[string]any{}, attributeErrors: map[string]string{}}
	if a.status != http.StatusOK {
		return out, fmt.Errorf("status %d", a.status)
	}
	data, _ := a.body["data"].(map[string]any)
	actions, _ := data["actions"].([]any)
	if len(actions) != 1 {
		return out, fmt.Errorf("%d actions, want 1", len(actions))
	}
	act, _ := actions[0].(map[string]any)
	typ, _ := act["@odata.type"].(string)
	var returned any
	switch typ[strings.LastIndex(typ, ".")+1:] {
	case "continueWithDefaultBehavior":
		out.action = entra.ActionContinue
	case "setPrefillValues":
		out.action, returned = entra.ActionContinue, act["inputs"]
	case "modifyAttributeValues":
		out.action, returned = entra.ActionContinue, act["attributes"]
	case "provideClaimsForToken":
		out.action, returned = entra.ActionContinue, act["claims"]
	case "showBlockPage":
		out.action = entra.ActionShowBlockPage
		out.message, _ = act["message"].(string)
	case "showValidationError":
		out.action = entra.ActionValidationError
		out.message, _ = act["message"].(string)
		errs, _ := act["attributeErrors"].(map[string]any)
		for k, v := range errs {
			out.attributeErrors[k] = fmt.Sprint(v)
		}
	default:
		return out, fmt.Errorf("unknown action %q", typ)
	}
	m, _ := returned.(map[string]any)
	for k, v := range m {
		if str, ok := v.(string); ok {
			out.claims[k] = str
		} else {
			out.values[k] = v
		}
	}
	return out, nil
}

// expectExtension checks an extension response against a case's expectation. At the steps that
// answer a failure with an HTTP error (OnTokenIssuanceStart, OnOtpSend) anything but Continue
// must be that status.
func expectExtension(t *testing.T, step apiv1.Step, a answer, want rulestest.Expect) {
	t.Helper()
	if step.FailsWithErrorStatus() && want.Action != entra.ActionContinue {
		if a.status != entra.ExtensionFailureStatus {
			t.Errorf("want HTTP %d (%s at %s), got %s", entra.ExtensionFailureStatus, want.Action, step, a)
		}
		return
	}
	got, err := readExtensionAnswer(a)
	if err != nil {
		t.Errorf("want %s: %v: %s", want.Action, err, a)
		return
	}
	action := want.Action
	if action == entra.ActionValidationError && step != apiv1.StepOnAttributeCollectionSubmit {
		action = entra.ActionShowBlockPage // only the submit event has a validation error answer
	}
	if got.action != action {
		t.Errorf("want %s, got %s", action, a)
	}
	if want.UserMessage != nil && got.message != *want.UserMessage {
		t.Errorf("want message %q, got %s", *want.UserMessage, a)
	}
	if want.Claims != nil && !maps.Equal(got.claims, want.Claims) {
		t.Errorf("want claims %v, got %s", want.Claims, a)
	}
	if want.ClaimValues != nil {
		w, _ := json.Marshal(want.ClaimValues)
		g, _ := json.Marshal(got.values)
		if string(w) != string(g) {
			t.Errorf("want claim values %s, got %s", w, a)
		}
	}
	if want.AttributeErrors != nil && !maps.Equal(got.attributeErrors, want.AttributeErrors) {
		t.Errorf("want attribute errors %v, got %s", want.AttributeErrors, a)
	}
}

// readGolden reads one of Microsoft's documented requests or responses (runtime/entra/testdata).
func readGolden(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "runtime", "entra", "testdata", "golden", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func canonical(t *testing.T, doc []byte) string {
	t.Helper()
	c, err := entra.Canonicalize(doc)
	if err != nil {
		t.Fatalf("%v: %s", err, doc)
	}
	return string(c)
}

// runtimeLogs returns the logs of the connector's runtime pods (kubectl, as the failure dump).
func (s *suite) runtimeLogs(t *testing.T, connector string) string {
	t.Helper()
	c := typed(t, s.connectors[connector])
	var sel []string
	for k, v := range children.SelectorLabels(c) {
		sel = append(sel, k+"="+v)
	}
	slices.Sort(sel)
	out, err := exec.CommandContext(s.ctx, "kubectl", "-n", c.Namespace, "logs", "--all-containers", "--prefix",
		"--tail=-1", "-l", strings.Join(sel, ",")).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl logs of %s: %v: %s", connector, err, out)
	}
	return string(out)
}

// sinkRecords returns the requests the sink recorded on path.
func (s *suite) sinkRecords(t *testing.T, path string) []record {
	t.Helper()
	var recs []record
	if err := s.admin("GET", "sink", "/admin/events", nil, &recs); err != nil {
		t.Fatal(err)
	}
	var out []record
	for _, r := range recs {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// extensionEmailOTP sends Microsoft's documented OnOtpSend request to extension-email-otp through
// the ingress with tokens from the issuer: the documented answer for a v2.0 and a v1.0 token,
// 401 for wrong ones. Each accepted request hands the code and the address to the e-mail API
// (the sink) over HTTPS with the API's token; refused ones call nothing, and the runtime's logs
// hold neither the code nor the address.
func (s *suite) extensionEmailOTP(t *testing.T) {
	conn := otpConnector
	if s.connectors[conn] == nil {
		t.Skip(conn + " sample not present")
	}
	request := readGolden(t, "extensions/request-emailotpsend.json")
	want := canonical(t, readGolden(t, "extensions/response-otpsend-continue.json"))
	tenant := typed(t, s.connectors[conn]).Spec.Authentication.Bearer.TenantID
	if err := s.admin("DELETE", "sink", "/admin/events", nil, nil); err != nil {
		t.Fatal(err)
	}
	hc := s.entraClient()
	for _, tc := range []struct {
		name string
		over map[string]any
	}{{"v2.0 token", nil}, {"v1.0 token", v1Token(tenant)}} {
		a, err := s.send(hc, conn, "Bearer "+s.entraToken(t, conn, tc.over), request)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusOK || a.body == nil || canonical(t, []byte(a.raw)) != want {
			t.Errorf("%s: got %s, want 200 %s", tc.name, a, want)
		}
	}
	for what, over := range wrongTokens(tenant) {
		a, err := s.send(hc, conn, "Bearer "+s.entraToken(t, conn, over), request)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != http.StatusUnauthorized {
			t.Errorf("%s: want 401, got %s", what, a)
		}
	}
	// The call is synchronous (failurePolicy Fail): the mails are at the sink by now.
	mails := s.sinkRecords(t, "/v3/mail/send")
	if len(mails) != 2 {
		t.Fatalf("the e-mail API got %d requests, want 2 (one per accepted request, none for refused tokens)", len(mails))
	}
	if err := overTLS(mails); err != nil {
		t.Error(err)
	}
	for _, m := range mails {
		if m.Headers["authorization"] != "Bearer "+mailT {
			t.Errorf("mail request without the API token from the Secret: %q", m.Headers["authorization"])
		}
		var body struct {
			Personalizations []struct {
				To   []struct{ Email string }
				Data map[string]any `json:"dynamic_template_data"`
			}
		}
		if err := json.Unmarshal(m.Body, &body); err != nil || len(body.Personalizations) != 1 || len(body.Personalizations[0].To) != 1 {
			t.Errorf("mail request body: %v: %s", err, m.Body)
			continue
		}
		p := body.Personalizations[0]
		if p.To[0].Email != "someone@example.com" || p.Data["code"] != "12345678" || p.Data["locale"] != "en-us" || p.Data["signUp"] != true {
			t.Errorf("mail request: to %v, template data %v; want someone@example.com, code 12345678, locale en-us, signUp", p.To, p.Data)
		}
	}
	logs := s.runtimeLogs(t, conn)
	if !strings.Contains(logs, "signing keys loaded") {
		t.Errorf("the runtime's logs do not say it loaded the issuer's signing keys:\n%s", logs)
	}
	for _, secret := range []string{"12345678", "someone@example.com"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the runtime's logs contain %q", secret)
		}
	}
}

// extensionAttributeSubmit posts Microsoft's documented OnAttributeCollectionSubmit request to
// shared-validation-extension through the ingress: with a valid token the documented
// continueWithDefaultBehavior response exactly (none of the sample's rules matches the documented
// attributes, and it returns no city), with a wrong-audience or an expired token 401.
func (s *suite) extensionAttributeSubmit(t *testing.T) {
	conn := submitConnector
	if s.connectors[conn] == nil {
		t.Skip(conn + " sample not present")
	}
	request := readGolden(t, "extensions/request-attributecollectionsubmit.json")
	want := canonical(t, readGolden(t, "extensions/response-submit-continue.json"))
	hc := s.entraClient()
	a, err := s.send(hc, conn, "Bearer "+s.entraToken(t, conn, nil), request)
	if err != nil {
		t.Fatal(err)
	}
	if a.status != http.StatusOK || a.body == nil || canonical(t, []byte(a.raw)) != want {
		t.Errorf("got %s, want 200 %s", a, want)
	}
	now := time.Now().Unix()
	for what, over := range map[string]map[string]any{
		"wrong audience": {"aud": otherApp},
		"expired":        {"iat": now - 7200, "nbf": now - 7200, "exp": now - 600},
	} {
		if a, err := s.send(hc, conn, "Bearer "+s.entraToken(t, conn, over), request); err != nil || a.status != http.StatusUnauthorized {
			t.Errorf("%s: want 401, got %v %s", what, err, a)
		}
	}
}

// b2cTokenEnrichment posts Azure AD B2C's two documented "Before sending the token" requests
// (steps PreTokenIssuance and PreTokenApplicationClaims) to b2c-token-enrichment through the
// ingress with Basic credentials. The first names the documented user (objectId), a member of
// the loyalty system the sink plays: Continue with tier and number. The second has no objectId:
// Continue without claims and no look-up.
func (s *suite) b2cTokenEnrichment(t *testing.T) {
	conn := tokenConnector
	if s.connectors[conn] == nil {
		t.Skip(conn + " sample not present")
	}
	if err := s.admin("DELETE", "sink", "/admin/events", nil, nil); err != nil {
		t.Fatal(err)
	}
	hc := s.entraClient()
	pass := s.passwords[basicSecret(s.connectors[conn])]
	for _, tc := range []struct {
		file   string
		claims map[string]string
	}{
		{"request-pretokenissuance.json", map[string]string{"extension_LoyaltyTier": "gold", "extension_LoyaltyNumber": "1234567"}},
		{"request-pretokenapplicationclaims.json", map[string]string{}},
	} {
		request := readGolden(t, tc.file)
		a, err := s.send(hc, conn, basicAuth("entra", pass), request)
		if err != nil {
			t.Fatal(err)
		}
		expectAction(t, a, "Continue", "", tc.claims)
		if a, err = s.send(hc, conn, basicAuth("entra", "wrong-password"), request); err != nil || a.status != http.StatusUnauthorized {
			t.Errorf("%s with a wrong password: want 401, got %v %s", tc.file, err, a)
		}
	}
	looks := s.sinkRecords(t, "/v1/members")
	if len(looks) != 1 {
		t.Fatalf("the loyalty system got %d look-ups, want 1 (only the request with an objectId)", len(looks))
	}
	if err := overTLS(looks); err != nil {
		t.Error(err)
	}
	// A GET call sends its body expression as query parameters.
	q, _ := url.ParseQuery(looks[0].Query)
	if looks[0].Headers["authorization"] != "Bearer "+loyaltyT || q.Get("objectId") != loyaltyMember || q.Get("app") != "231c70e8-8424-48ac-9b5d-5623b9e4ccf3" {
		t.Errorf("look-up: authorization %q, query %q; want the loyalty token, objectId %s and the request's client id",
			looks[0].Headers["authorization"], looks[0].Query, loyaltyMember)
	}
}

// rsaKeyPEM is a new RSA private key (PKCS#8 PEM), the key a password-decryption Secret holds.
func rsaKeyPEM(t *testing.T) string {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
