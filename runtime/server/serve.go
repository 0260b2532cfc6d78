package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Serve serves the connector endpoint on ln (TLS when a certificate is configured) and the ops
// endpoint on opsLn, and polls the watched files, until ctx is done. Then it drains: readiness
// turns false, after ShutdownDelay the connector listener closes and in-flight requests get up to
// DrainTimeout to finish; the ops listener closes last so /readyz reports the drain meanwhile.
func (s *Server) Serve(ctx context.Context, ln, opsLn net.Listener) error {
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	conn := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
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
		WriteTimeout:      30 * time.Second,
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
		"tls", useTLS, "step", string(s.cfg.Load().step))

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
