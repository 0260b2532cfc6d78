//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Rollout benchmark (issue 6): the benchmark connector of hack/bench (10 rules, a 5 000-entry
// ConfigMap list, 3 claims) on the real cluster, called continuously through the ingress while
// a rule is added; it measures how long until the Deployment has rolled out and until every
// answer comes from the new rules, and counts failed requests. `make bench-rollout` runs it and
// writes hack/bench/results/rollout.md.
const (
	rolloutWorkers   = 4
	rolloutMaxPerW   = 50_000 // bound on requests per worker
	rolloutMessage   = "Rolled out: sign-up paused for this surname."
	rolloutSettle    = 300 // consecutive new answers that end the measurement
	rolloutTarget    = 30 * time.Second
	rolloutResults   = "hack/bench/results/rollout.md"
	rolloutConnector = "hack/bench/testdata/connector.yaml"
)

type rolloutSample struct {
	at      time.Time
	latency time.Duration
	kind    byte // 'o' old rules, 'n' new rule, 'f' failed
	detail  string
}

func TestRollout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := newSuite(t, ctx)
	root := repoRoot(t)

	var conn string
	for _, u := range decodeYAML(t, filepath.Join(root, rolloutConnector)) {
		if !s.namespaces[u.GetNamespace()] {
			s.createNamespace(u.GetNamespace(), map[string]string{"apic-e2e": "sample"})
			s.namespaces[u.GetNamespace()] = true
		}
		if u.GetKind() == "APIConnector" {
			s.adaptConnector(t, u)
			conn = u.GetName()
			s.connectors[conn] = u
		}
		s.apply(u)
	}
	s.waitCurrent(t, conn, 3*time.Minute)
	u := s.connectors[conn]
	t.Cleanup(func() {
		_ = s.c.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: u.GetNamespace()}})
	})

	raw, err := os.ReadFile(filepath.Join(root, "hack/bench/testdata/request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	pass := s.passwords[basicSecret(u)]
	classify := func(a answer, err error) (byte, string) {
		switch {
		case err != nil:
			return 'f', err.Error()
		case a.status == 200 && a.body["action"] == "Continue" && a.body["givenName"] == "John":
			return 'o', ""
		case a.status == 200 && a.body["action"] == "ShowBlockPage" && a.body["userMessage"] == rolloutMessage:
			return 'n', ""
		}
		return 'f', a.String()
	}
	// Ready is reported before Traefik has loaded the Ingress: wait until the connector answers.
	eventually(t, ctx, time.Minute, "connector routed and answering", func() error {
		if kind, detail := classify(s.call(s.entraClient(), conn, "entra", pass, claims)); kind != 'o' {
			return fmt.Errorf("answers %s, want Continue with the three claims", detail)
		}
		return nil
	})

	// Load: closed loop, each worker its own client (keep-alive connection through the ingress).
	var mu sync.Mutex
	var samples []rolloutSample
	newInARow := 0
	settled := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range rolloutWorkers {
		hc := s.entraClient()
		wg.Go(func() {
			for range rolloutMaxPerW {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				kind, detail := classify(s.call(hc, conn, "entra", pass, claims))
				end := time.Now()
				mu.Lock()
				samples = append(samples, rolloutSample{at: end, latency: end.Sub(start), kind: kind, detail: detail})
				if kind == 'n' {
					newInARow++
					if newInARow == rolloutSettle {
						close(settled)
					}
				} else {
					newInARow = 0
				}
				mu.Unlock()
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()
	time.Sleep(3 * time.Second) // steady state before the edit

	var before appsv1.Deployment
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: u.GetNamespace(), Name: conn}, &before); err != nil {
		t.Fatal(err)
	}
	edited := u.DeepCopy()
	spec := edited.Object["spec"].(map[string]any)
	spec["rules"] = append([]any{map[string]any{
		"name": "rollout-probe", "when": "claims.?surname.orValue('') == 'sMITH'",
		"block": map[string]any{"message": rolloutMessage},
	}}, spec["rules"].([]any)...)
	edit := time.Now()
	s.apply(edited)
	s.waitRolledOut(t, &before)
	rolledOut := time.Since(edit)
	select {
	case <-settled:
	case <-time.After(time.Minute):
		t.Errorf("no %d new answers in a row within a minute of the rollout", rolloutSettle)
	}
	stopLoad()

	// Every answer after the last one from the old rules came from the new rule.
	var lastOld time.Time
	var failed []rolloutSample
	var during, all []time.Duration
	counts := map[byte]int{}
	for _, smp := range samples {
		counts[smp.kind]++
		all = append(all, smp.latency)
		if smp.kind == 'o' && smp.at.After(lastOld) {
			lastOld = smp.at
		}
		if smp.kind == 'f' {
			failed = append(failed, smp)
		}
	}
	served := max(lastOld.Sub(edit), 0)
	for _, smp := range samples {
		if !smp.at.Before(edit) && !smp.at.After(edit.Add(served+time.Second)) {
			during = append(during, smp.latency)
		}
	}
	var replicas int32 = 1
	if before.Spec.Replicas != nil {
		replicas = *before.Spec.Replicas
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Rollout benchmark\n\n")
	fmt.Fprintf(&b, "Measured %s on %d CPUs, %s, by `make bench-rollout` (part of `make bench`; needs root: it starts the local cluster of [docs/e2e.md](../../../docs/e2e.md) and stops it afterwards). The whole file is rewritten by every run.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&b, "The benchmark connector of `hack/bench/testdata/connector.yaml` (10 rules, a 5 000-entry ConfigMap list, 3 claims; %d replicas) runs on the real single-node cluster. %d workers call it without pause through the ingress (HTTPS, Basic auth, one keep-alive connection each) with `hack/bench/testdata/request.json`; after 3 s a rule is put first that blocks that request. An answer is *old* (Continue with the three claims), *new* (ShowBlockPage with the new message) or failed (anything else, including connection errors). Measured from the edit (server-side apply of the connector):\n\n", replicas, rolloutWorkers)
	b.WriteString("| measure | value | target | |\n|---|---|---|---|\n")
	fmt.Fprintf(&b, "| Deployment rolled out (new pods available, old ones gone) | %s | | |\n", rolledOut.Round(10*time.Millisecond))
	fmt.Fprintf(&b, "| every answer from the new rules (last old answer after the edit) | %s | < %s | %s |\n", served.Round(10*time.Millisecond), rolloutTarget, mark(served < rolloutTarget))
	fmt.Fprintf(&b, "| failed requests | %d of %d | 0 | %s |\n", len(failed), len(samples), mark(len(failed) == 0))
	fmt.Fprintf(&b, "| answers: old / new | %d / %d | | |\n", counts['o'], counts['n'])
	fmt.Fprintf(&b, "| latency during the rollout: p50 / p99 / max | %s | | |\n", latencySummary(during))
	fmt.Fprintf(&b, "| latency over the whole run: p50 / p99 / max | %s | | |\n", latencySummary(all))
	if len(failed) > 0 {
		b.WriteString("\nFirst failures:\n\n")
		for _, f := range failed[:min(5, len(failed))] {
			fmt.Fprintf(&b, "- %s after the edit: %s\n", f.at.Sub(edit).Round(time.Millisecond), f.detail)
		}
	}
	if err := os.WriteFile(filepath.Join(root, rolloutResults), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s:\n%s", rolloutResults, b.String())
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed during the rollout", len(failed), len(samples))
	}
	if counts['n'] == 0 {
		t.Error("the new rule was never served")
	}
}

func latencySummary(d []time.Duration) string {
	if len(d) == 0 {
		return "–"
	}
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	r := func(x time.Duration) string { return x.Round(10 * time.Microsecond).String() }
	return fmt.Sprintf("%s / %s / %s", r(q(0.5)), r(q(0.99)), r(d[len(d)-1]))
}
