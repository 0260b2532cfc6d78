package main

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// A taken port is refused at once, naming the address (hack/cluster shows it from the log).
func TestListenTakenPort(t *testing.T) {
	l, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = listen(l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "cannot listen on "+l.Addr().String()) {
		t.Fatalf("second listen on %s: %v, want cannot listen on it", l.Addr(), err)
	}
}

// The handler is a distribution registry with the referrers API (hack/images' push tests push
// and read back through the same package).
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(handler(log.New(io.Discard, "", 0)))
	defer srv.Close()
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/img:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"/v2/": http.StatusOK, "/v2/img/manifests/v1": http.StatusOK,
		"/v2/img/manifests/v2": http.StatusNotFound, "/v2/img/referrers/" + digest.String(): http.StatusOK} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
	}
}
