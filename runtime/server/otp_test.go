package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// OnOtpSend end to end through the server with a bearer token: the documented request makes the
// rules engine post the code to an e-mail API on loopback and answers the documented
// continueWithDefaultBehavior; with the e-mail API down the answer is HTTP 500 so that Entra's
// behaviorOnError applies. Even with --log-claims the logs never hold the code or the address.
func TestOtpSendServe(t *testing.T) {
	p := newIDP(t)
	tok := sign(t, p.key, jose.RS256, p.kid, p.validClaims())
	var mu sync.Mutex
	var mails []string
	mailAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		mails = append(mails, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer mailAPI.Close()

	conn := bearerConnector(v1alpha1.StepOnOtpSend, p.issuer())
	conn.Spec.Calls = []v1alpha1.Call{{Name: "mail", URL: mailAPI.URL + "/send", Method: http.MethodPost,
		Body: "{'to': otp.identifier, 'text': 'Your code is ' + otp.oneTimeCode}"}}
	forEngine := conn.DeepCopy() // the engine ignores authentication; the test IdP is on http
	forEngine.Spec.Authentication.Bearer.Issuer = ""
	eng, err := rules.Compile(forEngine, rules.Options{EgressAllow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close(context.Background())
	var logs syncBuffer
	ts := start(t, newServer(t, conn, eng, Options{SecretsDir: t.TempDir(), LogClaims: true, Logger: jsonLogger(&logs)}))
	post := func() response {
		return do(t, ts.client, http.MethodPost, ts.url+"/x", "application/json", readGolden(t, "request-emailotpsend.json"), map[string]string{"Authorization": "Bearer " + tok})
	}

	r := post()
	got, _ := entra.Canonicalize([]byte(r.body))
	want, _ := entra.Canonicalize([]byte(readGolden(t, "response-otpsend-continue.json")))
	if r.code != http.StatusOK || string(got) != string(want) {
		t.Errorf("got %d %s\nwant 200 %s", r.code, got, want)
	}
	mu.Lock()
	if len(mails) != 1 || !strings.Contains(mails[0], `"to":"someone@example.com"`) || !strings.Contains(mails[0], "Your code is 12345678") {
		t.Errorf("the e-mail API received %q", mails)
	}
	mu.Unlock()

	mailAPI.Close()
	if r := post(); r.code != entra.ExtensionFailureStatus || !strings.Contains(r.body, "could not send the code") {
		t.Errorf("e-mail API down: got %d %s", r.code, r.body)
	}
	if l := logs.String(); strings.Contains(l, "12345678") || strings.Contains(l, "someone@example.com") || !strings.Contains(l, `"claims":`) {
		t.Errorf("logs:\n%s", l)
	}
}
