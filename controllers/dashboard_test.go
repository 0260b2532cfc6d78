package controllers

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/apiconnector/operator/internal/version"
	"github.com/apiconnector/operator/runtime/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/yaml"
)

const monitoringDir = "../config/components/monitoring"

// recorder is a Registerer that keeps what is registered on it, to list the metric names a
// registry can export even before a series exists.
type recorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registerer.Register(c)
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedNames are the series names the runtime's registry (as its main builds it) and the
// operator's (its own metrics and controller-runtime's, which the suite's manager has filled)
// can export, histogram and summary series included.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	add := func(n string) {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			names[n+suffix] = true
		}
	}
	rec := &recorder{Registerer: prometheus.NewRegistry()}
	if _, err := server.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	ops := &recorder{Registerer: prometheus.NewRegistry()}
	if err := (&Reconciler{metrics: newOperatorMetrics(k8s)}).RegisterMetrics(ops); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(append(rec.collectors, ops.collectors...), version.Collector()) {
		ch := make(chan *prometheus.Desc, 64)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				add(m[1])
			}
		}
	}
	// The work queue's series exist while it holds items; controller-runtime names them so.
	for _, key := range []string{ctrlmetrics.DepthKey, ctrlmetrics.AddsKey, ctrlmetrics.QueueLatencyKey, ctrlmetrics.WorkDurationKey,
		ctrlmetrics.UnfinishedWorkKey, ctrlmetrics.LongestRunningProcessorKey, ctrlmetrics.RetriesKey} {
		add(ctrlmetrics.WorkQueueSubsystem + "_" + key)
	}
	// controller-runtime fills its reconcile series when the suite's controller starts.
	eventually(t, timeout, func() error {
		families, err := ctrlmetrics.Registry.Gather()
		if err != nil {
			return err
		}
		for _, f := range families {
			add(f.GetName())
		}
		if !names["controller_runtime_reconcile_errors_total"] {
			return fmt.Errorf("the manager's controller has not reported yet")
		}
		return nil
	})
	return names
}

// grafanaVariables are replaced by something PromQL parses.
var grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m")

// labelValues is a dashboard variable's query: label_values(<series selector>, label).
var labelValues = regexp.MustCompile(`^label_values\((.*), *\w+\)$`)

// Every expression of the dashboard and the alerts parses, and every metric it reads is one the
// runtime or the operator exports (or cert-manager's certificate expiry): no dead panel, no alert
// that can never fire because a metric was renamed.
func TestDashboardAndAlertsReadExportedMetrics(t *testing.T) {
	exported := exportedNames(t)
	promql := parser.NewParser(parser.Options{})
	for _, want := range []string{"apiconnector_requests_total", "apiconnector_connector_condition", "controller_runtime_reconcile_errors_total", "workqueue_depth"} {
		if !exported[want] {
			t.Fatalf("the registries do not list %s: the test would not see a rename", want)
		}
	}
	// Read from other components; named here on purpose.
	external := map[string]bool{"certmanager_certificate_expiration_timestamp_seconds": true}

	exprs := map[string]string{}
	b, err := os.ReadFile(filepath.Join(monitoringDir, "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	panels := 0
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			exprs["dashboard panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
			panels++
		}
	}
	if panels < 20 {
		t.Fatalf("read %d panel queries from the dashboard, want them all", panels)
	}
	for _, v := range dash.Templating.List {
		q, ok := v.Query.(map[string]any)
		if !ok {
			continue
		}
		m := labelValues.FindStringSubmatch(q["query"].(string))
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q["query"])
			continue
		}
		exprs["dashboard variable "+v.Name] = m[1]
	}
	rb, err := os.ReadFile(filepath.Join(monitoringDir, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `json:"alert"`
					Expr  string `json:"expr"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(rb, &rule); err != nil {
		t.Fatal(err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}

	for where, e := range exprs {
		expr, err := promql.ParseExpr(grafanaVariables.Replace(e))
		if err != nil {
			t.Errorf("%s: %v\n%s", where, err, e)
			continue
		}
		seen := 0
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			seen++
			if !exported[vs.Name] && !external[vs.Name] {
				t.Errorf("%s reads %s, which neither the runtime nor the operator exports", where, vs.Name)
			}
			return nil
		})
		if seen == 0 {
			t.Errorf("%s reads no metric: %s", where, e)
		}
	}
}
