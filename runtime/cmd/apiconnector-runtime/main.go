// Command apiconnector-runtime serves an Entra ID API connector from an APIConnector file, and
// tests and evaluates connectors locally. See docs/runtime.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/internal/version"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
	"github.com/apiconnector/operator/runtime/rulestest"
	"github.com/apiconnector/operator/runtime/server"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `apiconnector-runtime serves an Entra ID API connector declared as an APIConnector.

Usage:
  apiconnector-runtime serve --connector FILE --secrets-dir DIR [flags]
  apiconnector-runtime test --cases FILE MANIFEST...
  apiconnector-runtime eval --connector FILE --claims FILE
  apiconnector-runtime version
  apiconnector-runtime help [COMMAND]

Run "apiconnector-runtime help COMMAND" for a command's flags.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return serve(ctx, rest, stdout, stderr)
	case "test":
		return test(rest, stdout, stderr)
	case "eval":
		return eval(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.Get())
		return exitOK
	case "help", "-h", "--help":
		if len(rest) == 1 {
			if fs := flagSet(rest[0], stdout); fs != nil {
				fs.SetOutput(stdout)
				fs.Usage()
				return exitOK
			}
		}
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
}

// flagSet returns an empty flag set of a command for help output; the commands build their own.
func flagSet(cmd string, w io.Writer) *flag.FlagSet {
	switch cmd {
	case "serve":
		fs, _ := serveFlags(w)
		return fs
	case "test":
		fs, _ := testFlags(w)
		return fs
	case "eval":
		fs, _ := evalFlags(w)
		return fs
	}
	return nil
}

// --- serve ---

type serveConfig struct {
	connector, secretsDir, outboundSecretsDir string
	listen, opsListen                         string
	tlsCert, tlsKey                           string
	logClaims                                 bool
	logLevel                                  string
	maxBody                                   int64
	egressAllow                               []netip.Prefix
	drainTimeout, shutdownDelay, pollInterval time.Duration
	maxConnections                            int
	readHeaderTimeout                         time.Duration
}

func serveFlags(w io.Writer) (*flag.FlagSet, *serveConfig) {
	c := &serveConfig{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.StringVar(&c.connector, "connector", "", "APIConnector file to serve (required); reloaded when it changes")
	fs.StringVar(&c.secretsDir, "secrets-dir", "", "directory with username and password (basic) or ca.crt (client certificate) (required)")
	fs.StringVar(&c.outboundSecretsDir, "outbound-secrets-dir", "", "directory with outbound credentials at calls/<name>/ and events/<name>/, and the Secret keys of secretHeaders and secretQueryParams at secret-keys/<Secret>/<key>")
	fs.StringVar(&c.listen, "listen", ":8080", "connector endpoint address")
	fs.StringVar(&c.opsListen, "ops-listen", ":9090", "address of /healthz, /readyz and /metrics")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "TLS certificate file; with --tls-key the endpoint terminates TLS itself")
	fs.StringVar(&c.tlsKey, "tls-key", "", "TLS private key file")
	fs.BoolVar(&c.logClaims, "log-claims", false, "log request and returned claims (personal data; for debugging only)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.Int64Var(&c.maxBody, "max-body", server.DefaultMaxBody, "largest accepted request body in bytes")
	fs.Func("egress-allow-cidr", "address range calls and events may reach although the egress guard refuses it (loopback, link-local, the API server); repeat or separate with commas", func(v string) error {
		for _, s := range strings.Split(v, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return err
			}
			c.egressAllow = append(c.egressAllow, p)
		}
		return nil
	})
	fs.DurationVar(&c.drainTimeout, "drain-timeout", server.DefaultDrainTimeout, "how long in-flight requests may finish on shutdown")
	fs.DurationVar(&c.shutdownDelay, "shutdown-delay", 2*time.Second, "how long to keep serving after readiness turns false on SIGTERM")
	fs.DurationVar(&c.pollInterval, "poll-interval", server.DefaultPollInterval, "how often watched files are checked for changes")
	fs.IntVar(&c.maxConnections, "max-connections", server.DefaultMaxConnections, "most connections the connector endpoint holds open at once; more wait in the accept queue")
	fs.DurationVar(&c.readHeaderTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "time a connection has for the TLS handshake and the request headers")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: apiconnector-runtime serve --connector FILE --secrets-dir DIR [flags]")
		fs.PrintDefaults()
	}
	return fs, c
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, c := serveFlags(stderr)
	if code, done := parse(fs, args); done {
		return code
	}
	if c.connector == "" || c.secretsDir == "" || fs.NArg() > 0 || (c.tlsCert == "") != (c.tlsKey == "") || c.maxBody <= 0 ||
		c.maxConnections <= 0 || c.readHeaderTimeout <= 0 {
		fmt.Fprintln(stderr, "serve: --connector and --secrets-dir are required, --tls-cert and --tls-key go together, --max-body, --max-connections and --read-header-timeout must be positive")
		fs.Usage()
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		fmt.Fprintf(stderr, "serve: --log-level: %v\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: level}))
	if err := serveMain(ctx, c, log); err != nil {
		log.Error("exiting", "error", err.Error())
		return exitFailure
	}
	return exitOK
}

func serveMain(ctx context.Context, c *serveConfig, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), version.Collector())
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		return err
	}
	opts := rules.Options{Observer: server.EngineObserver{Metrics: metrics}, Logger: log, ErrorDetail: c.logClaims, EgressAllow: c.egressAllow}
	if c.outboundSecretsDir != "" {
		opts.Secrets, opts.SecretKeys = rules.DirSecrets(c.outboundSecretsDir), rules.DirSecretKeys(c.outboundSecretsDir)
	}
	load := loader(opts, true)
	ev, conn, err := load(c.connector)
	if err != nil {
		return err
	}
	s, err := server.New(conn, ev, server.Options{
		ConnectorPath: c.connector, Load: load, SecretsDir: c.secretsDir,
		TLSCertFile: c.tlsCert, TLSKeyFile: c.tlsKey, MaxBody: c.maxBody,
		PollInterval: c.pollInterval, DrainTimeout: c.drainTimeout, ShutdownDelay: c.shutdownDelay,
		MaxConnections: c.maxConnections, ReadHeaderTimeout: c.readHeaderTimeout,
		Logger: log, LogClaims: c.logClaims, Registry: reg, Metrics: metrics,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.listen, err)
	}
	opsLn, err := net.Listen("tcp", c.opsListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("ops listen %s: %w", c.opsListen, err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	serveErr := s.Serve(ctx, ln, opsLn)
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(serveErr, s.Close(closeCtx))
}

// loader reads a connector file and compiles it with the rules engine. The file holds exactly one
// APIConnector; lists with a configMapRef are resolved from ConfigMaps in the same file (the
// controller renders them into values, a file written by hand may carry the ConfigMap instead).
// With warm it also opens the connections of the calls and sinks (serve); one evaluation (eval)
// would only be slowed down by that.
func loader(opts rules.Options, warm bool) server.LoadFunc {
	return func(path string) (entra.Evaluator, *v1alpha1.APIConnector, error) {
		b, err := connfile.LoadFiles(path)
		if err != nil {
			return nil, nil, err
		}
		if len(b.Connectors) != 1 {
			return nil, nil, fmt.Errorf("%s: want exactly one APIConnector, found %d", path, len(b.Connectors))
		}
		conn := b.Connectors[0]
		opts.ResolveList = b.ListResolver(conn.Namespace)
		eng, err := rules.Compile(conn, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if warm {
			// Connections to the dependencies before the first request; bounded, so a dead
			// one delays the start (readiness) or the reload by WarmTimeout at most.
			ctx, cancel := context.WithTimeout(context.Background(), rules.WarmTimeout)
			eng.Warm(ctx)
			cancel()
		}
		return eng, conn, nil
	}
}

// --- test ---

func testFlags(w io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(w)
	cases := fs.String("cases", "", "test-case file (required)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: apiconnector-runtime test --cases FILE MANIFEST...\n\nRuns the cases against the APIConnectors (and ConfigMaps) in the manifests. Exit 1 when a case fails.")
		fs.PrintDefaults()
	}
	return fs, cases
}

func test(args []string, stdout, stderr io.Writer) int {
	fs, cases := testFlags(stderr)
	if code, done := parse(fs, args); done {
		return code
	}
	if *cases == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "test: --cases and at least one manifest are required")
		fs.Usage()
		return exitUsage
	}
	results, err := rulestest.RunFile(fs.Args(), *cases)
	if err != nil {
		fmt.Fprintf(stderr, "test: %v\n", err)
		return exitFailure
	}
	if err := rulestest.PrintTable(stdout, results); err != nil {
		fmt.Fprintf(stderr, "test: %v\n", err)
		return exitFailure
	}
	if !rulestest.Passed(results) {
		return exitFailure
	}
	return exitOK
}

// --- eval ---

type evalConfig struct{ connector, claims, outboundSecretsDir string }

func evalFlags(w io.Writer) (*flag.FlagSet, *evalConfig) {
	c := &evalConfig{}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.StringVar(&c.connector, "connector", "", "APIConnector file (required)")
	fs.StringVar(&c.claims, "claims", "", "request body as Entra would send it, a JSON object (required; - reads stdin); the extension envelope at On... steps")
	fs.StringVar(&c.outboundSecretsDir, "outbound-secrets-dir", "", "directory with outbound credentials at calls/<name>/ and events/<name>/, and the Secret keys of secretHeaders and secretQueryParams at secret-keys/<Secret>/<key>")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: apiconnector-runtime eval --connector FILE --claims FILE\n\nPrints the HTTP status and body Entra would receive. Calls and events are really sent.")
		fs.PrintDefaults()
	}
	return fs, c
}

func eval(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs, c := evalFlags(stderr)
	if code, done := parse(fs, args); done {
		return code
	}
	if c.connector == "" || c.claims == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "eval: --connector and --claims are required")
		fs.Usage()
		return exitUsage
	}
	var body []byte
	var err error
	if c.claims == "-" {
		body, err = io.ReadAll(os.Stdin)
	} else {
		body, err = os.ReadFile(c.claims)
	}
	if err != nil {
		fmt.Fprintf(stderr, "eval: %v\n", err)
		return exitFailure
	}
	opts := rules.Options{Logger: slog.New(slog.NewTextHandler(stderr, nil)), ErrorDetail: true}
	if c.outboundSecretsDir != "" {
		opts.Secrets, opts.SecretKeys = rules.DirSecrets(c.outboundSecretsDir), rules.DirSecretKeys(c.outboundSecretsDir)
	}
	ev, conn, err := loader(opts, false)(c.connector)
	if err != nil {
		fmt.Fprintf(stderr, "eval: %v\n", err)
		return exitFailure
	}
	status, out, d := evaluate(ctx, conn, ev, body, stderr)
	fmt.Fprintf(stdout, "HTTP %d\n%s\n", status, out)
	if d != nil && (d.Rule != "" || d.Failure != "") {
		fmt.Fprintf(stderr, "rule=%q failure=%q\n", d.Rule, d.Failure)
	}
	if eng, ok := ev.(*rules.Engine); ok {
		closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := eng.Close(closeCtx); err != nil {
			fmt.Fprintf(stderr, "eval: %v\n", err)
		}
	}
	return exitOK
}

// evaluate answers body the way the server would, minus authentication and HTTP checks.
func evaluate(ctx context.Context, conn *v1alpha1.APIConnector, ev entra.Evaluator, body []byte, stderr io.Writer) (int, []byte, *entra.Decision) {
	req, err := server.Decode(conn.Spec.Step, body)
	if err != nil {
		fmt.Fprintf(stderr, "eval: the server would refuse this body: %v\n", err)
		return 400, server.BadRequestBody(conn.Spec.Step, 400), nil
	}
	timeout := conn.Spec.Step.DefaultTimeout()
	if conn.Spec.Timeout != nil && conn.Spec.Timeout.Duration > 0 {
		timeout = conn.Spec.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d, err := ev.Evaluate(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "eval: evaluation failed, the failure policy answers: %v\n", err)
	}
	d = server.Finalize(conn, d, err)
	status, out := server.Encode(conn.Spec.Step, d)
	return status, out, d
}

// parse parses flags; done reports that the command should end with code (help or a usage error).
func parse(fs *flag.FlagSet, args []string) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, true
		}
		return exitUsage, true
	}
	return 0, false
}
