package server

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func dialHost(t *testing.T, url string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one response from c within wait; nil means none came.
func readResponse(t *testing.T, c net.Conn, br *bufio.Reader, wait time.Duration) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

const connectorRequest = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

// With the cap at N, the N+1th connection is not served until one of the N closes.
func TestConnectionCap(t *testing.T) {
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{
		SecretsDir: basicSecrets(t, testUser, testPass), MaxConnections: 2}))
	held := []net.Conn{dialHost(t, ts.url), dialHost(t, ts.url)}
	for _, c := range held { // both are served and stay open (keep-alive)
		if _, err := io.WriteString(c, connectorRequest); err != nil {
			t.Fatal(err)
		}
		if res := readResponse(t, c, bufio.NewReader(c), 5*time.Second); res == nil || res.StatusCode != 401 {
			t.Fatalf("held connection not served: %v", res)
		}
	}
	third := dialHost(t, ts.url) // completes in the kernel's accept queue
	if _, err := io.WriteString(third, connectorRequest); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(third)
	if res := readResponse(t, third, br, 500*time.Millisecond); res != nil {
		t.Fatalf("connection 3 served while 2 were open: %d", res.StatusCode)
	}
	held[0].Close()
	if res := readResponse(t, third, br, 5*time.Second); res == nil || res.StatusCode != 401 {
		t.Fatalf("connection 3 not served after one closed: %v", res)
	}
}

// A connection that sends no request is closed after ReadHeaderTimeout.
func TestReadHeaderTimeout(t *testing.T) {
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{
		SecretsDir: basicSecrets(t, testUser, testPass), ReadHeaderTimeout: 200 * time.Millisecond}))
	c := dialHost(t, ts.url)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\n") // headers never finished
	assertClosedWithin(t, c, 3*time.Second)
}

// The ops listener closes idle keep-alive connections.
func TestOpsIdleTimeout(t *testing.T) {
	defer func(d time.Duration) { opsIdleTimeout = d }(opsIdleTimeout)
	opsIdleTimeout = 200 * time.Millisecond
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: basicSecrets(t, testUser, testPass)}))
	c := dialHost(t, ts.ops)
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	if res := readResponse(t, c, br, 5*time.Second); res == nil || res.StatusCode != 200 {
		t.Fatalf("/healthz: %v", res)
	}
	assertClosedWithinReader(t, c, br, 3*time.Second)
}

func assertClosedWithin(t *testing.T, c net.Conn, wait time.Duration) {
	t.Helper()
	assertClosedWithinReader(t, c, bufio.NewReader(c), wait)
}

func assertClosedWithinReader(t *testing.T, c net.Conn, br *bufio.Reader, wait time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %s", wait)
	}
}
