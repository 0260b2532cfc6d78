package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// promptFunc is a fake entra.PromptEvaluator: the server runs it on the request's goroutine.
type promptFunc struct{ evalFunc }

func (promptFunc) StopsWithContext() {}

// evalFunc is the in-test fake Evaluator.
type evalFunc func(ctx context.Context, req *entra.Request) (*entra.Decision, error)

func (f evalFunc) Evaluate(ctx context.Context, req *entra.Request) (*entra.Decision, error) {
	return f(ctx, req)
}

// continueEval continues and returns the city upper-cased, plus email (which must never be sent).
var continueEval = evalFunc(func(_ context.Context, req *entra.Request) (*entra.Decision, error) {
	claims := map[string]string{"email": "leak@example.com"}
	if c, ok := req.Claims["city"].(string); ok {
		claims["city"] = strings.ToUpper(c)
	}
	return &entra.Decision{Action: entra.ActionContinue, Claims: claims}, nil
})

const (
	testUser = "entra"
	testPass = "s3cret:with:colons"
)

func basicConnector(step v1alpha1.Step) *v1alpha1.APIConnector {
	c := &v1alpha1.APIConnector{}
	c.Name, c.Namespace = "signup", "default"
	c.Spec.Step = step
	c.Spec.Authentication.Basic = &v1alpha1.BasicAuth{SecretRef: v1alpha1.SecretReference{Name: "creds"}}
	c.Spec.Exposure.Host = "signup.example.com"
	return c
}

// testClientSubjects are the subjects certConnector allows: the test clients Entra stands for.
var testClientSubjects = []string{"entra", "entra-signed", "entra-pinned", "entra-next", "expired"}

func certConnector(forwarded *v1alpha1.ForwardedClientCertificate) *v1alpha1.APIConnector {
	c := basicConnector(v1alpha1.StepPostAttributeCollection)
	c.Spec.Authentication.Basic = nil
	c.Spec.Authentication.ClientCertificate = &v1alpha1.ClientCertificateAuth{
		SecretRef: v1alpha1.SecretReference{Name: "ca"}, Forwarded: forwarded, AllowedSubjects: testClientSubjects}
	return c
}

func withPolicy(c *v1alpha1.APIConnector, p v1alpha1.FailurePolicy, timeout time.Duration) *v1alpha1.APIConnector {
	c.Spec.FailurePolicy = p
	c.Spec.FailureMessage = "Sorry, try later."
	if timeout > 0 {
		c.Spec.Timeout = &metav1.Duration{Duration: timeout}
	}
	return c
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	// Write then rename, like the kubelet's atomic swap, so a poller never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func basicSecrets(t testing.TB, user, pass string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, UsernameFile), user+"\n")
	writeFile(t, filepath.Join(dir, PasswordFile), pass)
	return dir
}

type testServer struct {
	*Server
	url, ops string
	client   *http.Client
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
	stopped  atomic.Bool // the test stopped the server itself and checks the error
}

// stop cancels Serve and waits for it to return; safe to call more than once.
func (ts *testServer) stop(t *testing.T) error {
	t.Helper()
	ts.stopped.Store(true)
	ts.stopOnce.Do(func() {
		ts.cancel()
		select {
		case ts.stopErr = <-ts.done:
		case <-time.After(30 * time.Second):
			ts.stopErr = errors.New("Serve did not return")
		}
	})
	return ts.stopErr
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func jsonLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start serves s on loopback listeners until the test ends.
func start(t *testing.T, s *Server) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, cancel: cancel, done: make(chan error, 1),
		url: "http://" + ln.Addr().String(), ops: "http://" + opsLn.Addr().String(), client: &http.Client{Timeout: 10 * time.Second}}
	if s.opts.TLSCertFile != "" {
		ts.url = "https://" + ln.Addr().String()
	}
	go func() { ts.done <- s.Serve(ctx, ln, opsLn) }()
	t.Cleanup(func() {
		byTest := ts.stopped.Load()
		if err := ts.stop(t); err != nil && !byTest {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

func newServer(t *testing.T, conn *v1alpha1.APIConnector, ev entra.Evaluator, opts Options) *Server {
	t.Helper()
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	opts.InsecureLoopbackKeys = true // the test identity providers serve http on loopback
	s, err := New(conn, ev, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type response struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, c *http.Client, method, url, contentType, body string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

func basicHeader(user, pass string) map[string]string {
	return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// post sends a JSON body with the test's basic credentials.
func (ts *testServer) post(t *testing.T, body string) response {
	t.Helper()
	return do(t, ts.client, http.MethodPost, ts.url+"/default/signup", "application/json", body, basicHeader(testUser, testPass))
}

func (ts *testServer) get(t *testing.T, path string) response {
	t.Helper()
	return do(t, ts.client, http.MethodGet, ts.ops+path, "", "", nil)
}

// eventually polls cond for up to 5s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --- certificates ---

type testCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func (c testCert) tls() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.cert.Raw}, PrivateKey: c.key, Leaf: c.cert}
}

func (c testCert) keyPEM(t *testing.T) string {
	der, err := x509.MarshalECPrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
}

var serial int64

// newCert issues a certificate; parent nil means self-signed.
func newCert(t *testing.T, cn string, isCA bool, parent *testCert, mutate ...func(*x509.Certificate)) testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              []string{cn},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	for _, m := range mutate {
		m(tmpl)
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// tlsClient trusts serverCA and presents clientCert (if any).
func tlsClient(serverCA testCert, clientCert *testCert) *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(serverCA.cert)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{clientCert.tls()}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

var errTest = errors.New("boom")
