// Command controller measures the operator at scale against a real kube-apiserver and etcd
// (envtest): N connectors across namespaces, each with its Secret. It runs the real manager binary
// as a separate process, so its peak RSS and its API requests are its own, and reports the time
// until every connector has its children and status, the manager's peak RSS, the API requests it
// issued, and the reconciles per connector over a steady-state window (target 0).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/hack/localcp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

type options struct {
	n, namespaces, workers int
	qps                    int
	steady, timeout        time.Duration
	out                    string
}

type result struct {
	settle, drain   time.Duration
	rssMiB          float64
	requests        float64
	requestsByVerb  map[string]float64
	steadyReconcile float64
	reconcilesTotal float64
	deployments     int
}

func main() {
	var o options
	flag.IntVar(&o.n, "n", 1000, "connectors to create")
	flag.IntVar(&o.namespaces, "namespaces", 10, "namespaces to spread them over")
	flag.IntVar(&o.workers, "concurrency", 8, "the manager's --concurrency")
	flag.IntVar(&o.qps, "qps", 0, "the manager's --kube-api-qps (burst is twice that); 0 keeps the manager's defaults")
	flag.DurationVar(&o.steady, "steady", 60*time.Second, "steady-state window in which no reconcile is expected")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up settling after this long")
	flag.StringVar(&o.out, "out", "hack/bench/results/controller.md", "markdown report to write")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	// Every connector gets a ClusterIP Service; envtest's default /24 range holds only 254.
	cp, err := localcp.Start(".", "10.0.0.0/16")
	if err != nil {
		return err
	}
	defer cp.Stop()
	manager, err := cp.Build(".", ".", "manager")
	if err != nil {
		return err
	}
	c := cp.Client
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flags := []string{"--runtime-image=apiconnector-runtime:bench", "--concurrency=" + strconv.Itoa(o.workers), "--zap-log-level=error"}
	if o.qps > 0 {
		flags = append(flags, "--kube-api-qps="+strconv.Itoa(o.qps), "--kube-api-burst="+strconv.Itoa(2*o.qps))
	}
	mgr, err := cp.StartManager(ctx, manager, os.Stderr, flags...)
	if err != nil {
		return err
	}
	defer mgr.Stop()
	metricsAddr := mgr.MetricsAddr

	fmt.Fprintf(os.Stderr, "creating %d connectors in %d namespaces\n", o.n, o.namespaces)
	start := time.Now()
	if err := createAll(ctx, c, o); err != nil {
		return err
	}
	created := time.Since(start)

	var res result
	deadline := time.Now().Add(o.timeout)
	for {
		settled, err := countSettled(ctx, c)
		if err != nil {
			return err
		}
		if settled == o.n {
			res.settle = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d/%d connectors settled after %s", settled, o.n, o.timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
	var deps appsv1.DeploymentList
	if err := c.List(ctx, &deps); err != nil {
		return err
	}
	res.deployments = len(deps.Items)
	fmt.Fprintf(os.Stderr, "settled in %s (creating took %s); steady window %s\n", res.settle.Round(time.Millisecond), created.Round(time.Millisecond), o.steady)

	// Events of the children created while settling are still queued; steady state starts once
	// the work queue is empty.
	// An item being processed is no longer counted in the depth, so also wait for the reconcile
	// counter to stand still for two seconds.
	drainStart := time.Now()
	last, still := -1.0, time.Now()
	for {
		m, err := scrape(metricsAddr)
		if err != nil {
			return err
		}
		if m.reconciles != last {
			last, still = m.reconciles, time.Now()
		}
		if m.queueDepth == 0 && time.Since(still) >= 2*time.Second {
			break
		}
		if time.Since(drainStart) > o.timeout {
			return fmt.Errorf("work queue still holds %.0f items after %s", m.queueDepth, o.timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
	res.drain = time.Since(drainStart)
	before, err := scrape(metricsAddr)
	if err != nil {
		return err
	}
	time.Sleep(o.steady)
	after, err := scrape(metricsAddr)
	if err != nil {
		return err
	}
	res.steadyReconcile = after.reconciles - before.reconciles
	res.reconcilesTotal = before.reconciles
	res.requests = before.requests
	res.requestsByVerb = before.byVerb
	res.rssMiB, err = peakRSS(mgr.Cmd.Process.Pid)
	if err != nil {
		return err
	}
	report := render(o, res)
	fmt.Print(report)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(o.out, []byte(report), 0o644)
}

func createAll(ctx context.Context, c client.Client, o options) error {
	for i := 0; i < o.namespaces; i++ {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%02d", i)}}
		if err := c.Create(ctx, ns); err != nil {
			return err
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "entra-basic"},
			Data: map[string][]byte{"username": []byte("entra"), "password": []byte("bench")}}
		if err := c.Create(ctx, s); err != nil {
			return err
		}
	}
	work := make(chan int)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := c.Create(ctx, connector(i, o.namespaces)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < o.n; i++ {
		select {
		case work <- i:
		case err := <-errs:
			close(work)
			return err
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func connector(i, namespaces int) *apiv1.APIConnector {
	return &apiv1.APIConnector{
		ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("bench-%02d", i%namespaces), Name: fmt.Sprintf("connector-%04d", i)},
		Spec: apiv1.APIConnectorSpec{
			Step:           apiv1.StepPostAttributeCollection,
			Authentication: apiv1.Authentication{Basic: &apiv1.BasicAuth{SecretRef: apiv1.SecretReference{Name: "entra-basic"}}},
			Lists:          []apiv1.List{{Name: "blocked", Values: []string{"mailinator.com", "yopmail.com"}}},
			Rules: []apiv1.Rule{
				{Name: "disposable", When: "claims.email.split('@')[1] in lists.blocked", Block: &apiv1.Outcome{Message: "Use a real address."}},
				{Name: "postal-code", When: "has(claims.postalCode) && !claims.postalCode.matches('^[0-9]{5}$')", ValidationError: &apiv1.Outcome{Message: "Bad postal code."}},
			},
			Claims:   map[string]apiv1.Expression{"givenName": "claims.givenName.upperAscii()"},
			Exposure: apiv1.Exposure{Host: "signup.contoso.example"},
		},
	}
}

// countSettled counts connectors whose current generation has been reconciled into children.
func countSettled(ctx context.Context, c client.Client) (int, error) {
	var list apiv1.APIConnectorList
	if err := c.List(ctx, &list); err != nil {
		return 0, err
	}
	n := 0
	for _, conn := range list.Items {
		rv := meta.FindStatusCondition(conn.Status.Conditions, "RulesValid")
		if conn.Status.ObservedGeneration == conn.Generation && rv != nil && rv.Status == metav1.ConditionTrue &&
			conn.Status.ConfigHash != "" && len(conn.Status.Endpoints) == 1 {
			n++
		}
	}
	return n, nil
}

type metrics struct {
	reconciles float64
	queueDepth float64
	requests   float64
	byVerb     map[string]float64
}

// scrape reads the manager's Prometheus metrics: controller-runtime's reconcile counter and
// client-go's request counter.
func scrape(addr string) (metrics, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return metrics{}, err
	}
	defer resp.Body.Close()
	m := metrics{byVerb: map[string]float64{}}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, `controller_runtime_reconcile_total{controller="apiconnector"`):
			m.reconciles += value(line)
		case strings.HasPrefix(line, `workqueue_depth{controller="apiconnector"`), strings.HasPrefix(line, `workqueue_depth{name="apiconnector"`):
			m.queueDepth += value(line)
		case strings.HasPrefix(line, "rest_client_requests_total{"):
			v := value(line)
			m.requests += v
			if i := strings.Index(line, `method="`); i >= 0 {
				verb := line[i+8:]
				verb = verb[:strings.IndexByte(verb, '"')]
				m.byVerb[verb] += v
			}
		}
	}
	return m, sc.Err()
}

func value(line string) float64 {
	f := strings.Fields(line)
	v, _ := strconv.ParseFloat(f[len(f)-1], 64)
	return v
}

func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, err := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func render(o options, r result) string {
	var b strings.Builder
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	fmt.Fprintf(&b, "# Controller scale benchmark\n\n")
	fmt.Fprintf(&b, "`make bench-controller` (`go run ./hack/bench/controller -n %d -namespaces %d -steady %s`) on %s: %d cores, %s, %s.\n",
		o.n, o.namespaces, o.steady, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
	limits := "the default API client limits"
	if o.qps > 0 {
		limits = fmt.Sprintf("`--kube-api-qps=%d --kube-api-burst=%d`", o.qps, 2*o.qps)
	}
	fmt.Fprintf(&b, "Real kube-apiserver v1.37.2 + etcd v3.6.16 (envtest, no kube-controller-manager); the manager runs as its own process with `--concurrency=%d` and %s.\n\n", o.workers, limits)
	fmt.Fprintf(&b, "| measure | value | target | |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d connectors with all children and status | %.1f s | < 60 s | %s |\n", o.n, r.settle.Seconds(), mark(r.settle < time.Minute))
	fmt.Fprintf(&b, "| manager peak RSS | %.0f MiB | < 150 MiB | %s |\n", r.rssMiB, mark(r.rssMiB < 150))
	fmt.Fprintf(&b, "| reconciles per connector at steady state over %s | %.3f | 0 | %s |\n", o.steady, r.steadyReconcile/float64(o.n), mark(r.steadyReconcile == 0))
	fmt.Fprintf(&b, "| API requests issued by the manager until the queue drained | %.0f (%.1f per connector) | | |\n", r.requests, r.requests/float64(o.n))
	fmt.Fprintf(&b, "| reconciles until the work queue drained (%.1f s after settling) | %.0f (%.2f per connector) | | |\n", r.drain.Seconds(), r.reconcilesTotal, r.reconcilesTotal/float64(o.n))
	fmt.Fprintf(&b, "| Deployments created | %d | %d | %s |\n\n", r.deployments, o.n, mark(r.deployments == o.n))
	fmt.Fprintf(&b, "Requests by verb: ")
	var parts []string
	for _, v := range []string{"GET", "LIST", "WATCH", "POST", "PATCH", "PUT", "DELETE"} {
		if n := r.requestsByVerb[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", v, n))
		}
	}
	fmt.Fprintf(&b, "%s.\n", strings.Join(parts, ", "))
	return b.String()
}
