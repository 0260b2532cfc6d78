package config_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The chart mounts the metrics certificate's Secret where the manager's metrics server (HTTPS,
// no certificate directory given, as main.go starts it) looks for one, and a scraper configured
// as the ServiceMonitor is (the Secret's ca.crt, the Service's DNS name) verifies it. The
// certificate signs itself, as cert-manager's self-signed Issuer makes it, with ca.crt the
// certificate itself.
func TestMetricsServerServesTheMountedCertificate(t *testing.T) {
	objs := renderChart(t, map[string]any{"metrics": map[string]any{"certificate": map[string]any{"certManager": map[string]any{"enabled": true}}}})
	var mount string
	for _, m := range container(objs)["volumeMounts"].([]any) {
		if m := m.(map[string]any); m["name"] == "metrics-cert" {
			mount = m["mountPath"].(string)
		}
	}
	// The container has no TMPDIR, so the metrics server's temporary directory is /tmp.
	rel, ok := strings.CutPrefix(mount, "/tmp/")
	if !ok {
		t.Fatalf("the metrics certificate is mounted at %q, outside the manager's temporary directory", mount)
	}
	serverName := objs["Certificate/apiconnector-metrics-cert"]["spec"].(map[string]any)["dnsNames"].([]any)[0].(string)

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	certPEM, keyPEM := selfSignedCert(t, serverName)
	dir := filepath.Join(tmp, rel)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	srv, err := metricsserver.NewServer(metricsserver.Options{BindAddress: addr, SecureServing: true}, nil, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if err := srv.Start(t.Context()); err != nil {
			t.Error(err)
		}
	}()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM) // ca.crt
	var conn *tls.Conn
	eventually(t, 10*time.Second, func() (err error) {
		conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: serverName})
		return err
	})
	defer conn.Close()
	got := conn.ConnectionState().PeerCertificates[0].Raw
	block, _ := pem.Decode(certPEM)
	if string(got) != string(block.Bytes) {
		t.Error("the metrics server does not serve the mounted certificate")
	}
}

// selfSignedCert is a serving certificate for dnsName that signs itself.
func selfSignedCert(t *testing.T, dnsName string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: dnsName},
		DNSNames:     []string{dnsName},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
