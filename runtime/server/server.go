// Package server serves one Entra ID API connector: the connector endpoint Entra calls (auth,
// decoding, evaluation within a deadline, failure policy, the wire answer) and a separate ops
// endpoint (health, readiness, metrics). It reloads the connector file, the credential files and
// the TLS certificate when they change, without a restart.
package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// Defaults of Options.
const (
	DefaultMaxBody      = 64 << 10
	DefaultPollInterval = 2 * time.Second
	DefaultDrainTimeout = 25 * time.Second
)

// LoadFunc loads and compiles a connector file. The command wires the connector loader and the
// rules engine into it; the server only needs the result, so it does not depend on either.
type LoadFunc func(path string) (entra.Evaluator, *v1alpha1.APIConnector, error)

// Options configure a Server. Zero values take the documented defaults.
type Options struct {
	// ConnectorPath is the connector file, polled for changes and reloaded with Load. Empty (or a
	// nil Load) disables hot reload.
	ConnectorPath string
	Load          LoadFunc

	// SecretsDir holds username and password (basic) or ca.crt (client certificate). Without the
	// files of the configured method every request is refused and the server is not ready. In
	// basic mode, registered/username and registered/password, when present, are a second pair
	// that is accepted too (the credential registered in Entra, during a rotation).
	SecretsDir string

	// TLSCertFile and TLSKeyFile make the connector listener terminate TLS itself. Both or neither.
	TLSCertFile, TLSKeyFile string

	// MaxBody is the largest accepted request body in bytes (default 64 KiB).
	MaxBody int64
	// PollInterval is how often the connector, credential and certificate files are checked
	// (default 2s).
	PollInterval time.Duration
	// DrainTimeout bounds how long Serve waits for in-flight requests on shutdown (default 25s).
	DrainTimeout time.Duration
	// ShutdownDelay keeps accepting requests this long after readiness turns false, so load
	// balancers stop sending before the listener closes (default 0).
	ShutdownDelay time.Duration

	// Logger receives JSON-able structured logs (default: discard).
	Logger *slog.Logger
	// LogClaims logs request and returned claims. Off by default: claims are personal data.
	LogClaims bool

	// Registry receives the metrics and is served on /metrics (default: a new registry).
	Registry *prometheus.Registry
	// Metrics, when set, must be registered on Registry already (see NewMetrics); it lets the
	// command hand Metrics.ObserveCall to the rules engine before the server exists.
	Metrics *Metrics

	// MaxConnections caps the connector listener's open connections (default
	// DefaultMaxConnections); further clients wait in the kernel's accept queue. ReadHeaderTimeout
	// bounds the TLS handshake and the request headers (default DefaultReadHeaderTimeout).
	MaxConnections    int
	ReadHeaderTimeout time.Duration

	// SecretKeys reads a Secret key mounted into the pod (the keys of spec.passwordDecryption),
	// on every use so a rotated key applies without a restart. Without it, OnPasswordSubmit
	// requests fail under the failure policy (reason no_key).
	SecretKeys func(v1alpha1.SecretKeySelector) ([]byte, error)

	// TracerProvider, when set, makes every connector request a server span (see tracing.go),
	// the child of the caller's W3C traceparent if it sent one. Nil: no spans.
	TracerProvider trace.TracerProvider

	// InsecureLoopbackKeys lets bearer mode fetch its OpenID configuration and signing keys over
	// plain http from a loopback address. For tests only; otherwise both must be https.
	InsecureLoopbackKeys bool
}

// config is one loaded connector; it is swapped whole on reload so a request sees one version.
type config struct {
	conn           *v1alpha1.APIConnector
	name           string // namespace/name, for the log
	ev             entra.Evaluator
	step           v1alpha1.Step
	auth           authConfig
	timeout        time.Duration // the budget: the answer is written within it
	work           time.Duration // the part of the budget for reading, evaluating and calls
	policy         v1alpha1.FailurePolicy
	failureMessage string
}

// Server serves one connector. Create it with New.
type Server struct {
	opts     Options
	log      *slog.Logger
	metrics  *Metrics
	registry *prometheus.Registry
	tracer   trace.Tracer // nil: tracing is off

	cfg      atomic.Pointer[config]
	creds    atomic.Pointer[credentials]
	cert     atomic.Pointer[tls.Certificate]
	draining atomic.Bool

	// nonces are the password-context nonces seen recently, to refuse a replayed context.
	nonces nonceCache
	// keys are the parsed password decryption keys.
	keys keyCache

	reloadMu sync.Mutex // serialises reloads of the same kind triggered by watchers and tests
	// fingerprints of what was loaded at New, so the watchers start from there
	connFP, credFP, certFP [sha256.Size]byte
}

// New creates a server for an already loaded connector and its evaluator. It reads the credential
// files and TLS certificate once; missing credentials are not an error (the server starts
// unready and refuses every request until they appear), an invalid connector or TLS pair is.
func New(conn *v1alpha1.APIConnector, ev entra.Evaluator, opts Options) (*Server, error) {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return nil, errors.New("server: TLS needs both a certificate and a key file")
	}
	s := &Server{opts: opts, log: opts.Logger, registry: opts.Registry, metrics: opts.Metrics}
	if opts.TracerProvider != nil {
		s.tracer = opts.TracerProvider.Tracer(tracerName)
	}
	if s.metrics == nil {
		m, err := NewMetrics(opts.Registry)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	cfg, err := s.newConfig(conn, ev, nil)
	if err != nil {
		return nil, err
	}
	s.cfg.Store(cfg)
	if opts.ConnectorPath != "" {
		s.connFP = fingerprint(opts.ConnectorPath)
	}
	s.credFP = fingerprint(s.credPaths()...)
	s.ReloadCredentials()
	if opts.TLSCertFile != "" {
		s.certFP = fingerprint(opts.TLSCertFile, opts.TLSKeyFile)
		if err := s.ReloadTLSCertificate(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newConfig checks a loaded connector. prev is the configuration it replaces (nil at start): its
// signing-key cache is kept when the OpenID configuration did not change.
func (s *Server) newConfig(conn *v1alpha1.APIConnector, ev entra.Evaluator, prev *config) (*config, error) {
	if conn == nil || ev == nil {
		return nil, errors.New("server: connector and evaluator are required")
	}
	spec := conn.Spec
	if !spec.Step.Valid() {
		return nil, fmt.Errorf("server: unsupported step %q", spec.Step)
	}
	auth, err := parseAuth(spec.Authentication, s.opts.InsecureLoopbackKeys)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if (auth.mode == authBearer) != spec.Step.IsExtension() {
		return nil, fmt.Errorf("server: step %s does not support this authentication method: custom authentication extension steps use bearer, legacy steps basic or clientCertificate", spec.Step)
	}
	if auth.mode == authBearer {
		if prev != nil && prev.auth.keys != nil && prev.auth.keys.configURL == auth.bearer.configURL {
			auth.keys = prev.auth.keys
		} else {
			auth.keys = newJWKSCache(auth.bearer, s.log)
			auth.keys.prefetch()
		}
	}
	cfg := &config{
		conn: conn, name: conn.Namespace + "/" + conn.Name, ev: ev, step: spec.Step, auth: auth, timeout: spec.Step.DefaultTimeout(),
		policy: spec.AnswerPolicy(), failureMessage: spec.FailureMessage,
	}
	if spec.Timeout != nil && spec.Timeout.Duration > 0 {
		cfg.timeout = spec.Timeout.Duration
	}
	cfg.timeout, cfg.work = spec.Step.Budget(cfg.timeout), spec.Step.WorkTimeout(cfg.timeout)
	if cfg.failureMessage == "" {
		cfg.failureMessage = v1alpha1.DefaultFailureMessage
	}
	return cfg, nil
}

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Connector returns the connector currently served.
func (s *Server) Connector() *v1alpha1.APIConnector { return s.cfg.Load().conn }

// Drain turns readiness false; Serve calls it on shutdown. Requests are still answered.
func (s *Server) Drain() { s.draining.Store(true) }

// Ready says whether the server should receive traffic, and if not, why.
func (s *Server) Ready() (bool, string) {
	if s.draining.Load() {
		return false, "draining"
	}
	cfg, creds := s.cfg.Load(), s.creds.Load()
	if why := creds.notReady(cfg.auth); why != "" {
		return false, why
	}
	switch {
	case s.opts.TLSCertFile != "" && s.cert.Load() == nil:
		return false, "TLS certificate not loaded"
	}
	return true, ""
}

func (s *Server) credPaths() []string {
	d := s.opts.SecretsDir
	return []string{filepath.Join(d, UsernameFile), filepath.Join(d, PasswordFile), filepath.Join(d, CAFile),
		filepath.Join(d, RegisteredDir, UsernameFile), filepath.Join(d, RegisteredDir, PasswordFile)}
}

// ReloadConnector loads the connector file again. A file that fails to load or compile is refused:
// the previous connector keeps serving and readiness is unchanged.
func (s *Server) ReloadConnector() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.opts.Load == nil || s.opts.ConnectorPath == "" {
		return errors.New("reload: no connector file or loader configured")
	}
	ev, conn, err := s.opts.Load(s.opts.ConnectorPath)
	var cfg *config
	if err == nil {
		cfg, err = s.newConfig(conn, ev, s.cfg.Load())
	}
	s.metrics.reload("connector", err)
	if err != nil {
		s.log.Error("connector reload refused; the previous connector keeps serving",
			"path", s.opts.ConnectorPath, "error", err.Error())
		return fmt.Errorf("reload connector %s: %w", s.opts.ConnectorPath, err)
	}
	old := s.cfg.Swap(cfg)
	go s.retire(old)
	s.log.Info("connector reloaded", "path", s.opts.ConnectorPath, "step", string(cfg.step),
		"name", conn.Name, "namespace", conn.Namespace, "generation", conn.Generation)
	return nil
}

// closer is implemented by evaluators holding resources, such as the rules engine's async event
// queue.
type closer interface {
	Close(ctx context.Context) error
}

// retire closes a replaced evaluator once requests that started with it are past their deadline,
// so its queued events are still delivered.
func (s *Server) retire(old *config) {
	c, ok := old.ev.(closer)
	if !ok || old.ev == s.cfg.Load().ev {
		return
	}
	time.Sleep(old.timeout + time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		s.log.Warn("closing the replaced evaluator", "error", err.Error())
	}
}

// Close releases the current evaluator (delivering its queued events until ctx ends). Call it
// after Serve returned.
func (s *Server) Close(ctx context.Context) error {
	if c, ok := s.cfg.Load().ev.(closer); ok {
		return c.Close(ctx)
	}
	return nil
}

// ReloadCredentials reads the secrets directory again. It fails closed, as at start: a part
// (basic or trust bundle) that no longer loads, because the Secret was emptied, deleted or made
// invalid, stops authenticating anyone; the kubelet swaps Secret volumes atomically, so there is
// no half-written state to ride out. Only the configured method's result is logged and counted.
func (s *Server) ReloadCredentials() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	next := loadCredentials(s.opts.SecretsDir)
	s.creds.Store(next)

	err := next.basicErr
	switch s.cfg.Load().auth.mode {
	case authClientCert:
		err = next.trustErr
	case authBearer:
		err = nil // no local credentials
	}
	if why := next.notReady(s.cfg.Load().auth); err == nil && why != "" {
		err = errors.New(why) // loaded, but refused (a public CA without pins)
	}
	s.metrics.reload("credentials", err)
	if err != nil {
		s.log.Error("credentials not loaded; every request is refused", "dir", s.opts.SecretsDir, "error", err.Error())
		return err
	}
	s.log.Info("credentials loaded", "dir", s.opts.SecretsDir)
	return nil
}

// ReloadTLSCertificate reads the TLS key pair again; an invalid pair keeps the previous one.
func (s *Server) ReloadTLSCertificate() error {
	if s.opts.TLSCertFile == "" {
		return nil
	}
	c, err := tls.LoadX509KeyPair(s.opts.TLSCertFile, s.opts.TLSKeyFile)
	s.metrics.reload("tls", err)
	if err != nil {
		s.log.Error("TLS certificate not loaded", "cert", s.opts.TLSCertFile, "error", err.Error())
		return fmt.Errorf("load TLS key pair: %w", err)
	}
	s.cert.Store(&c)
	s.log.Info("TLS certificate loaded", "cert", s.opts.TLSCertFile)
	return nil
}

// TLSConfig is the connector listener's TLS configuration: TLS 1.2 or later with Go's default
// cipher suites (all ECDHE AES-GCM/ChaCha20, which covers Microsoft's list), the certificate
// re-read on rotation, and the client certificate requested but verified by the handler against
// the current trust bundle. Verifying in the handler rather than in the handshake lets the bundle
// rotate without new listeners and turns a bad certificate into a counted 401 instead of an
// opaque handshake failure.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := s.cert.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("no TLS certificate loaded")
		},
	}
}

// runWatchers polls the files until ctx is done.
func (s *Server) runWatchers(ctx context.Context) {
	var wg sync.WaitGroup
	every := s.opts.PollInterval
	if s.opts.ConnectorPath != "" && s.opts.Load != nil {
		wg.Go(func() {
			watch(ctx, every, s.connFP, []string{s.opts.ConnectorPath}, func() { _ = s.ReloadConnector() })
		})
	}
	wg.Go(func() {
		watch(ctx, every, s.credFP, s.credPaths(), func() { _ = s.ReloadCredentials() })
	})
	if s.opts.TLSCertFile != "" {
		wg.Go(func() {
			watch(ctx, every, s.certFP, []string{s.opts.TLSCertFile, s.opts.TLSKeyFile},
				func() { _ = s.ReloadTLSCertificate() })
		})
	}
	wg.Wait()
}
