package controllers

import (
	"context"
	"sync"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Operator metrics, next to controller-runtime's on the manager's metrics endpoint. The connector
// gauges are read from the manager's cache at each scrape, so they never keep a series for a
// connector or a condition that is gone; every replica of the manager reports them (the
// readiness histogram only the leader, which reconciles).
var (
	connectorsDesc = prometheus.NewDesc("apiconnector_connectors",
		"Connectors by step and condition (type, status).", []string{"step", "condition", "status"}, nil)
	connectorConditionDesc = prometheus.NewDesc("apiconnector_connector_condition",
		"1 for each condition of each connector, with its status and reason; Ready is Unknown until the operator has judged the connector.",
		[]string{"namespace", "connector", "step", "condition", "status", "reason"}, nil)
	stalledDesc = prometheus.NewDesc("apiconnector_connectors_stalled",
		"Connectors whose Stalled condition is True, by reason.", []string{"reason"}, nil)
	stepBudgetDesc = prometheus.NewDesc("apiconnector_step_budget_seconds",
		"The longest Entra ID waits for an answer at each step (20 s for API connectors, at most 2 s for custom authentication extensions); the latency alerts compare with it.",
		[]string{"step"}, nil)
)

// scrapeTimeout bounds one listing of the connectors from the cache.
const scrapeTimeout = 5 * time.Second

// operatorMetrics are the reconciler's own metrics.
type operatorMetrics struct {
	reader client.Reader
	// readyDuration is observed when a connector turns Ready for a generation it was not Ready for.
	readyDuration prometheus.Histogram
	// graphRequests counts the requests sent to Microsoft Graph (spec.entra), by method and status.
	graphRequests *prometheus.CounterVec

	mu      sync.Mutex
	pending map[types.NamespacedName]generationWatch
}

// generationWatch is when the operator first saw a connector's generation and whether its
// Ready=True for that generation has been observed.
type generationWatch struct {
	generation int64
	since      time.Time
	done       bool
}

func newOperatorMetrics(reader client.Reader) *operatorMetrics {
	return &operatorMetrics{
		reader: reader,
		graphRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiconnector_graph_requests_total",
			Help: "Requests sent to Microsoft Graph to register connectors in Entra (each retry counts), by method and HTTP status (0: no answer); 429 is throttling.",
		}, []string{"method", "code"}),
		readyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "apiconnector_connector_ready_duration_seconds",
			Help: "Time from the operator first seeing a connector's generation (created or its spec changed) to its Ready condition turning True for it.",
			// A settled change takes a reconcile; a rollout waits for new pods (seconds to
			// minutes); a certificate waits for cert-manager.
			Buckets: []float64{0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800},
		}),
		pending: map[types.NamespacedName]generationWatch{},
	}
}

// RegisterMetrics registers the operator's metrics on reg (the manager's: ctrlmetrics.Registry).
func (r *Reconciler) RegisterMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{r.metrics.readyDuration, r.metrics.graphRequests} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return reg.Register(r.metrics)
}

// Describe implements prometheus.Collector.
func (m *operatorMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{connectorsDesc, connectorConditionDesc, stalledDesc, stepBudgetDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector from the cached connectors.
func (m *operatorMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, s := range apiv1.Steps {
		ch <- prometheus.MustNewConstMetric(stepBudgetDesc, prometheus.GaugeValue, s.EntraWait().Seconds(), string(s))
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	var list apiv1.APIConnectorList
	if err := m.reader.List(ctx, &list); err != nil {
		ch <- prometheus.NewInvalidMetric(connectorsDesc, err)
		return
	}
	type key struct{ step, condition, status string }
	counts := map[key]int{}
	stalled := map[string]int{}
	for i := range list.Items {
		c := &list.Items[i]
		step := string(c.Spec.Step)
		conds := c.Status.Conditions
		if meta.FindStatusCondition(conds, ConditionReady) == nil {
			conds = append(conds[:len(conds):len(conds)], metav1.Condition{Type: ConditionReady, Status: metav1.ConditionUnknown})
		}
		for _, cond := range conds {
			counts[key{step, cond.Type, string(cond.Status)}]++
			ch <- prometheus.MustNewConstMetric(connectorConditionDesc, prometheus.GaugeValue, 1,
				c.Namespace, c.Name, step, cond.Type, string(cond.Status), cond.Reason)
			if cond.Type == ConditionStalled && cond.Status == metav1.ConditionTrue {
				stalled[cond.Reason]++
			}
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(connectorsDesc, prometheus.GaugeValue, float64(n), k.step, k.condition, k.status)
	}
	for reason, n := range stalled {
		ch <- prometheus.MustNewConstMetric(stalledDesc, prometheus.GaugeValue, float64(n), reason)
	}
}

// observeReady is called after each reconcile with the status before and after it, and observes
// how long the connector's generation took to become Ready. A generation that was already Ready
// when first seen (the operator restarted) is not observed.
func (m *operatorMetrics) observeReady(key types.NamespacedName, before, after *apiv1.APIConnector, now time.Time) {
	gen := after.Generation
	m.mu.Lock()
	defer m.mu.Unlock()
	w, ok := m.pending[key]
	if !ok || w.generation != gen {
		w = generationWatch{generation: gen, since: now, done: readyFor(before, gen)}
	}
	if !w.done && readyFor(after, gen) {
		m.readyDuration.Observe(now.Sub(w.since).Seconds())
		w.done = true
	}
	m.pending[key] = w
}

func (m *operatorMetrics) forget(key types.NamespacedName) {
	m.mu.Lock()
	delete(m.pending, key)
	m.mu.Unlock()
}

// readyFor says whether the status says Ready=True for generation gen.
func readyFor(c *apiv1.APIConnector, gen int64) bool {
	return c.Status.ObservedGeneration == gen && conditionIs(c, ConditionReady, metav1.ConditionTrue)
}
