package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// Defaults of the connector listener's limits (Options.MaxConnections, Options.ReadHeaderTimeout).
const (
	// DefaultMaxConnections caps open connections per replica. A connection costs about 40 KB
	// (TLS state, buffers, goroutine), so the cap keeps a flood of idle or half-open connections
	// at about 40 MB, within the default 128 MiB memory limit, while leaving far more than Entra
	// and an ingress controller's keep-alive pool use.
	DefaultMaxConnections = 1024
	// DefaultReadHeaderTimeout bounds the TLS handshake and the request headers. Entra and
	// ingress controllers send them at once; slow clients only hold connections.
	DefaultReadHeaderTimeout = 5 * time.Second
)

// Timeouts of the ops listener (health, readiness, metrics), variables so tests can shorten them.
var (
	opsReadTimeout = 10 * time.Second
	opsIdleTimeout = 60 * time.Second
)

// Serve serves the connector endpoint on ln (TLS when a certificate is configured) and the ops
// endpoint on opsLn, and polls the watched files, until ctx is done. Then it drains: readiness
// turns false, after ShutdownDelay the connector listener closes and in-flight requests get up to
// DrainTimeout to finish; the ops listener closes last so /readyz reports the drain meanwhile.
//
// The connector listener accepts at most Options.MaxConnections connections at once.
func (s *Server) Serve(ctx context.Context, ln, opsLn net.Listener) error {
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	maxConns, readHeader := s.opts.MaxConnections, s.opts.ReadHeaderTimeout
	if maxConns <= 0 {
		maxConns = DefaultMaxConnections
	}
	if readHeader <= 0 {
		readHeader = DefaultReadHeaderTimeout
	}
	ln = netutil.LimitListener(ln, maxConns)
	conn := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: readHeader,
		// Longer than the largest connector deadline (15s) so an answer is never cut off.
		ReadTimeout:    30 * time.Second,
		WriteTimeout:   30 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10, // room for a forwarded certificate chain
		ErrorLog:       errLog,
	}
	ops := &http.Server{
		Handler:           s.OpsHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       opsReadTimeout,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       opsIdleTimeout,
		ErrorLog:          errLog,
	}
	useTLS := s.opts.TLSCertFile != ""
	if useTLS {
		conn.TLSConfig = s.TLSConfig()
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { s.runWatchers(watchCtx); close(watchDone) }()
	defer func() { stopWatch(); <-watchDone }()

	errc := make(chan error, 2)
	go func() {
		var err error
		if useTLS {
			err = conn.ServeTLS(ln, "", "")
		} else {
			err = conn.Serve(ln)
		}
		errc <- fmt.Errorf("connector listener: %w", err)
	}()
	go func() { errc <- fmt.Errorf("ops listener: %w", ops.Serve(opsLn)) }()
	s.log.Info("serving", "listen", ln.Addr().String(), "ops_listen", opsLn.Addr().String(),
		"tls", useTLS, "step", string(s.cfg.Load().step), "max_connections", maxConns)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		s.log.Error("listener failed; shutting down", "error", serveErr.Error())
	}

	s.Drain()
	s.log.Info("draining", "shutdown_delay", s.opts.ShutdownDelay.String(), "drain_timeout", s.opts.DrainTimeout.String())
	if serveErr == nil && s.opts.ShutdownDelay > 0 {
		time.Sleep(s.opts.ShutdownDelay)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
	defer cancel()
	if err := conn.Shutdown(drainCtx); err != nil {
		conn.Close()
		serveErr = errors.Join(serveErr, fmt.Errorf("drain: %w", err))
	}
	opsCtx, cancelOps := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelOps()
	if err := ops.Shutdown(opsCtx); err != nil {
		ops.Close()
	}
	s.log.Info("stopped")
	return serveErr
}
