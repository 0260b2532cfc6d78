// Command registry serves an OCI distribution registry over plain HTTP on one address:
// go-containerregistry's pkg/registry (blobs and manifests in memory, the referrers API on). The
// e2e cluster (hack/cluster) pushes its release build there and containerd pulls from it, so the
// cluster installs the operator the way a user does, from images in a registry.
//
//	registry -addr 172.31.255.1:18500
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "", "host:port to listen on (required)")
	flag.Parse()
	if *addr == "" {
		fail(errors.New("-addr is required"))
	}
	l, err := listen(*addr)
	if err != nil {
		fail(err)
	}
	logger := log.New(os.Stderr, "registry: ", log.LstdFlags)
	logger.Printf("serving on http://%s", l.Addr())
	srv := &http.Server{Handler: handler(logger), ReadHeaderTimeout: 10 * time.Second}
	fail(srv.Serve(l))
}

// listen binds addr before anything is served: a taken port fails at once, naming the address.
func listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	return l, nil
}

// handler is the registry: the referrers API on, so the images' SBOMs can be listed.
func handler(logger *log.Logger) http.Handler {
	return registry.New(registry.WithReferrersSupport(true), registry.Logger(logger))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "registry:", err)
	os.Exit(1)
}
