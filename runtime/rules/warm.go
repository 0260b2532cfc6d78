package rules

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// WarmTimeout bounds Engine.Warm: the runtime waits this long at most, at start and on reload,
// whatever the dependencies do.
const WarmTimeout = 2 * time.Second

// Warm opens a connection to the origin (scheme, host and port) of each call and event sink, so
// that the first sign-up after a start or a configuration change does not pay DNS, TCP and TLS
// handshakes: it sends each origin one `OPTIONS *` request (the request for the server's
// capabilities, which acts on nothing), whose answer, whatever its status, leaves the connection
// in the client's keep-alive pool. It returns when every origin has answered or failed, or when ctx
// ends. Failures are only logged at debug level: a dead dependency is the calls' business.
func (e *Engine) Warm(ctx context.Context) {
	origins := map[string]bool{}
	for _, c := range e.calls {
		origins[origin(c.spec.URL)] = true
	}
	for _, ev := range e.events {
		origins[origin(ev.spec.Sink.URL)] = true
	}
	delete(origins, "")
	var wg sync.WaitGroup
	for o := range origins {
		wg.Go(func() {
			start := time.Now()
			err := e.warm(ctx, o)
			e.opts.Logger.Debug("warm connection", "connector", e.Name(), "origin", o,
				"ms", time.Since(start).Milliseconds(), "err", err)
		})
	}
	wg.Wait()
}

func (e *Engine) warm(ctx context.Context, origin string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, origin, nil)
	if err != nil {
		return err
	}
	req.URL.Opaque = "*" // OPTIONS * HTTP/1.1
	resp, err := e.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // read to the end: the connection is reused
	return err
}

// origin is scheme://host[:port] of raw, or "" when it is not a URL.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
