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
  apiconnector-runtime test --cases FILE [--coverage] MANIFEST...
  apiconnector-runtime lint MANIFEST...
  apiconnector-runtime eval --connector FILE --claims FILE [--stub NAME=SPEC]...
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
	case "lint":
		return lint(rest, stdout, stderr)
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
	case "lint":
		return lintFlags(w)
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
	fs.StringVar(&c.secretsDir, "secrets-dir", "", "directory with username and password (basic; also registered/username and registered/password, accepted too) or ca.crt (client certificate) (required)")
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
	tp, err := newTracerProvider(ctx, c.connector, log)
	if err != nil {
		return err
	}
	if tp != nil { // only then: a nil *sdktrace.TracerProvider would make a non-nil interface
		opts.TracerProvider = tp
		defer func() {
			// After the evaluator's Close, so the spans of the last async events go out too.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tp.Shutdown(ctx); err != nil {
				log.Warn("tracing: spans not flushed", "error", err.Error())
			}
		}()
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
		SecretKeys: opts.SecretKeys, TracerProvider: opts.TracerProvider,
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

type testConfig struct {
	cases       string
	coverage    bool
	minCoverage float64
}

func testFlags(w io.Writer) (*flag.FlagSet, *testConfig) {
	c := &testConfig{}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.StringVar(&c.cases, "cases", "", "test-case file (required)")
	fs.BoolVar(&c.coverage, "coverage", false, "list every rule and claim with the cases that matched it (rules) or returned it (claims), and those no case did")
	fs.Float64Var(&c.minCoverage, "min-coverage", 0, "fail when fewer than this percentage (0-100) of the rules and claims are exercised by a case")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: apiconnector-runtime test --cases FILE [--coverage] [--min-coverage N] MANIFEST...\n\nRuns the cases against the APIConnectors (and ConfigMaps) in the manifests. Exit 1 when a case fails, a connector does not compile or the coverage is below --min-coverage.")
		fs.PrintDefaults()
	}
	return fs, c
}

func test(args []string, stdout, stderr io.Writer) int {
	fs, c := testFlags(stderr)
	if code, done := parse(fs, args); done {
		return code
	}
	if c.cases == "" || fs.NArg() == 0 || c.minCoverage < 0 || c.minCoverage > 100 {
		fmt.Fprintln(stderr, "test: --cases and at least one manifest are required; --min-coverage is a percentage from 0 to 100")
		fs.Usage()
		return exitUsage
	}
	b, f, err := rulestest.Load(fs.Args(), c.cases)
	if err != nil {
		fmt.Fprintf(stderr, "test: %v\n", err)
		return exitFailure
	}
	results := rulestest.Run(b, f)
	if err := rulestest.PrintTable(stdout, results); err != nil {
		fmt.Fprintf(stderr, "test: %v\n", err)
		return exitFailure
	}
	code := exitOK
	if !rulestest.Passed(results) {
		code = exitFailure
	}
	if c.coverage || c.minCoverage > 0 {
		items := rulestest.Coverage(b, results)
		if c.coverage {
			fmt.Fprintln(stdout)
			if err := rulestest.PrintCoverage(stdout, items); err != nil {
				fmt.Fprintf(stderr, "test: %v\n", err)
				return exitFailure
			}
		}
		if pct := rulestest.CoveragePercent(items); pct < c.minCoverage {
			fmt.Fprintf(stderr, "test: coverage %.1f%% is below --min-coverage %g%% (see --coverage for the rules and claims no case exercises)\n", pct, c.minCoverage)
			code = exitFailure
		}
	}
	return code
}

// --- lint ---

func lintFlags(w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: apiconnector-runtime lint MANIFEST...

Compiles every APIConnector of the manifests as the operator does (lists with a configMapRef
resolved from ConfigMaps in the manifests) and prints every problem with its file, document,
connector, field path and rule. Documents of other kinds are skipped. Exit 1 on any problem.`)
		fs.PrintDefaults()
	}
	return fs
}

func lint(args []string, stdout, stderr io.Writer) int {
	fs := lintFlags(stderr)
	if code, done := parse(fs, args); done {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "lint: at least one manifest is required")
		fs.Usage()
		return exitUsage
	}
	b, errs := connfile.LoadAll(fs.Args()...)
	problems, warnings := b.Compile()
	for _, w := range warnings {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	for _, err := range errs {
		fmt.Fprintln(stdout, err)
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	n := len(errs) + len(problems)
	switch {
	case n > 0:
		fmt.Fprintf(stderr, "lint: %d problem(s) in %d file(s)\n", n, fs.NArg())
		return exitFailure
	case len(b.Connectors) == 0:
		fmt.Fprintf(stderr, "lint: no APIConnector in %s\n", strings.Join(fs.Args(), ", "))
		return exitFailure
	}
	fmt.Fprintf(stdout, "lint: %d APIConnector(s) in %d file(s) compile, %d warning(s)\n", len(b.Connectors), fs.NArg(), len(warnings))
	return exitOK
}

// --- eval ---

type evalConfig struct {
	connector, claims, outboundSecretsDir, stubFile string
	stubs                                           map[string]rulestest.CallStub
	offline                                         bool
}

func evalFlags(w io.Writer) (*flag.FlagSet, *evalConfig) {
	c := &evalConfig{}
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	fs.SetOutput(w)
	fs.StringVar(&c.connector, "connector", "", "APIConnector file (required)")
	fs.StringVar(&c.claims, "claims", "", "request body as Entra would send it, a JSON object (required; - reads stdin); the extension envelope at On... steps")
	fs.StringVar(&c.outboundSecretsDir, "outbound-secrets-dir", "", "directory with outbound credentials at calls/<name>/ and events/<name>/, and the Secret keys of secretHeaders and secretQueryParams at secret-keys/<Secret>/<key>")
	c.stubs = map[string]rulestest.CallStub{}
	fs.Func("stub", "answer a call from a stub instead of the network: NAME=STATUS[:BODY] (BODY JSON), NAME=timeout or NAME=error[:MESSAGE]; repeat for several calls; implies --offline", func(v string) error {
		name, stub, err := rulestest.ParseStub(v)
		if err == nil {
			c.stubs[name] = stub
		}
		return err
	})
	fs.StringVar(&c.stubFile, "stub-file", "", "YAML or JSON file mapping call names to stubs, as a test case's calls field; implies --offline (--stub wins for the same call)")
	fs.BoolVar(&c.offline, "offline", false, "send nothing: calls are answered by the stubs (a call without one fails like an unreachable service) and events are listed instead of sent")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: apiconnector-runtime eval --connector FILE --claims FILE [--stub NAME=SPEC]... [--stub-file FILE] [--offline]\n\nPrints the HTTP status and body Entra would receive. Calls and events are really sent, unless stubs or --offline are given.")
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
	if c.stubFile != "" {
		fromFile, err := rulestest.LoadStubs(c.stubFile)
		if err != nil {
			fmt.Fprintf(stderr, "eval: %v\n", err)
			return exitFailure
		}
		for name, stub := range fromFile {
			if _, set := c.stubs[name]; !set {
				c.stubs[name] = stub
			}
		}
	}
	if c.offline || len(c.stubs) > 0 {
		return evalOffline(ctx, c, body, stdout, stderr)
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
	printDecision(stderr, d)
	if eng, ok := ev.(*rules.Engine); ok {
		closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := eng.Close(closeCtx); err != nil {
			fmt.Fprintf(stderr, "eval: %v\n", err)
		}
	}
	return exitOK
}

// evalOffline is eval with calls answered by stubs and events captured: nothing is sent.
func evalOffline(ctx context.Context, c *evalConfig, body []byte, stdout, stderr io.Writer) int {
	b, err := connfile.LoadFiles(c.connector)
	if err == nil && len(b.Connectors) != 1 {
		err = fmt.Errorf("%s: want exactly one APIConnector, found %d", c.connector, len(b.Connectors))
	}
	if err != nil {
		fmt.Fprintf(stderr, "eval: %v\n", err)
		return exitFailure
	}
	conn := b.Connectors[0]
	if problems, _ := b.Compile(); len(problems) > 0 {
		fmt.Fprintf(stderr, "eval: %v\n", rulestest.ProblemsError(problems))
		return exitFailure
	}
	var outcome *rulestest.Outcome
	ev := evaluatorFunc(func(_ context.Context, req *entra.Request) (*entra.Decision, error) {
		var err error
		outcome, err = rulestest.EvalRequest(conn, b.ListResolver(conn.Namespace), req, c.stubs)
		if err != nil {
			return nil, err
		}
		return outcome.Decision, nil
	})
	status, out, d := evaluate(ctx, conn, ev, body, stderr)
	fmt.Fprintf(stdout, "HTTP %d\n%s\n", status, out)
	printDecision(stderr, d)
	if outcome != nil {
		for _, call := range outcome.Calls {
			if _, stubbed := c.stubs[call.Name]; stubbed {
				fmt.Fprintf(stderr, "call %s: %s %s (stubbed)\n", call.Name, call.Method, call.URL)
			}
		}
		for _, name := range outcome.Unstubbed {
			fmt.Fprintf(stderr, "call %s had no stub and failed like an unreachable service; give one with --stub %s=200:{...}\n", name, name)
		}
		for _, ev := range outcome.Events {
			fmt.Fprintf(stderr, "event %s: not sent (offline)\n", ev.Name)
		}
	}
	return exitOK
}

type evaluatorFunc func(context.Context, *entra.Request) (*entra.Decision, error)

func (f evaluatorFunc) Evaluate(ctx context.Context, req *entra.Request) (*entra.Decision, error) {
	return f(ctx, req)
}

// printDecision reports the deciding rule, the failure and what audited rules found, to stderr.
func printDecision(w io.Writer, d *entra.Decision) {
	if d == nil {
		return
	}
	if d.Rule != "" || d.Failure != "" {
		fmt.Fprintf(w, "rule=%q failure=%q\n", d.Rule, d.Failure)
	}
	for _, a := range d.Audits {
		fmt.Fprintf(w, "audit: rule %s would answer %s\n", a.Rule, a.Outcome)
	}
	if a := d.Audited; a != nil {
		fmt.Fprintf(w, "audit: the connector is in Audit; in Enforce it would answer %s (rule=%q failure=%q)\n", a.Action, a.Rule, a.Failure)
	}
}

// evaluate answers body the way the server would, minus authentication and HTTP checks.
func evaluate(ctx context.Context, conn *v1alpha1.APIConnector, ev entra.Evaluator, body []byte, stderr io.Writer) (int, []byte, *entra.Decision) {
	req, err := server.Decode(conn.Spec.Step, body)
	if err != nil {
		fmt.Fprintf(stderr, "eval: the server would refuse this body: %v\n", err)
		return 400, server.BadRequestBody(conn.Spec.Step, 400), nil
	}
	if x := req.Extension; x != nil && x.EncryptedPasswordContext != "" {
		// eval has no decryption keys: answering without the credentials would mislead.
		fmt.Fprintln(stderr, "eval: OnPasswordSubmit contexts are not decrypted here; test such connectors with test cases that give credentials. The failure policy answers.")
		d := server.Finalize(conn, nil, errors.New("password context not decrypted"))
		status, out := server.Encode(conn.Spec.Step, d)
		return status, out, d
	}
	timeout := conn.Spec.Step.DefaultTimeout()
	if conn.Spec.Timeout != nil && conn.Spec.Timeout.Duration > 0 {
		timeout = conn.Spec.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	trail := &rules.CallTrail{}
	d, err := ev.Evaluate(rules.WithCallTrail(ctx, trail), req)
	for _, r := range trail.Records() {
		outcome := fmt.Sprintf("status %d", r.Status)
		if r.Error != "" {
			outcome = r.Error
		}
		fmt.Fprintf(stderr, "call %s: %s in %.1f ms\n", r.Name, outcome, r.DurationMS)
	}
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
