package main

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/apiconnector/operator/controllers/children"
)

// Targets of issue 6.
const (
	targetThroughputRatio = 0.80
	targetHalfLoadP99     = 2 * time.Millisecond
	targetRSS             = 64 << 20
)

type reportOut struct {
	text string
	met  bool
}

func report(o *options, vs []*variant) reportOut {
	var b strings.Builder
	base, subj, call, noRules := vs[0], vs[1], vs[2], vs[3]
	arrangement := "each server its own process"
	switch {
	case o.inProcess:
		arrangement = "all servers in the generator's process (profiling mode; not comparable to the pinned figures)"
	case o.pin:
		arrangement = fmt.Sprintf("each server its own process pinned to CPU %s, the generator (and the call stub) pinned to CPU %s (taskset)", o.serverCPUs, o.genCPUs)
	}
	if !o.inProcess {
		who := "every server"
		if generatorGODEBUG() {
			who = "the generator and every server"
		}
		arrangement += fmt.Sprintf(", %s with the runtime pod's `GODEBUG=%s`", who, children.RuntimeGODEBUG)
	}
	fmt.Fprintf(&b, "Measured %s on %d CPUs (%s/%s, Linux %s), %s, commit %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), o.numCPU, runtime.GOOS, runtime.GOARCH, kernel(),
		runtime.Version(), gitDescribe(o.root))
	fmt.Fprintf(&b, "Command: `%s` (from the repository root; `make bench` runs it).\n\n", commandLine())
	fmt.Fprintf(&b, "Arrangement: %s; loopback HTTP/1.1 keep-alive, one connection per concurrent request, a %d-byte PostAttributeCollection body (`hack/bench/testdata/request.json`). The machine is shared with other work: compare ratios within one run, not absolute figures across runs.\n\n", arrangement, len(o.requestBody))
	for _, v := range vs {
		fmt.Fprintf(&b, "- **%s**: %s. Answer: `%s`\n", v.name, v.desc, v.answer)
	}

	fmt.Fprintf(&b, "\n### Closed loop: fixed concurrency, %d requests per level (call variant: at most %d per connection)\n\n", o.n, o.callPerConn)
	fmt.Fprintf(&b, "Each level runs in %d rounds in which the servers take turns (the order reversed every other round); a row is its server's rounds together.\n\n", o.rounds)
	b.WriteString("| server | concurrency | requests | errors | req/s | p50 | p90 | p99 | max | req/s vs baseline | server CPU per request | server context switches per request | server CPU use | generator CPU use |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for i := range o.levels {
		for _, v := range vs {
			r := v.levels[i]
			ratio := fmt.Sprintf("%.0f %%", 100*r.rps()/base.levels[i].rps())
			if v == base {
				ratio = "100 %"
			}
			fmt.Fprintf(&b, "| %s | %d | %d%s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", v.name, r.conc, r.requests, timedOut(r), r.errors,
				r.rps(), fmtDur(r.p50), fmtDur(r.p90), fmtDur(r.p99), fmtDur(r.max), ratio, cpuPerReq(r), switchesPerReq(r), cpuUse(r), genUse(r))
		}
	}

	b.WriteString("\n### Half load: open loop at 50 % of the server's own maximum req/s\n\n")
	fmt.Fprintf(&b, "%d connections, %s in %d rounds like the levels above; requests are released at their due times by a periodic timerfd, and latency counts from when a request was due (a server falling behind is charged the queueing).\n\n", o.halfConns, o.halfTime, o.rounds)
	b.WriteString("| server | offered req/s | requests | errors | achieved req/s | p50 | p90 | p99 | max | p50 from send | p99 from send | server CPU per request | server context switches per request | server CPU use | generator CPU use | server waited for its CPU | generator waited for its CPU |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, v := range vs {
		r := v.half
		fmt.Fprintf(&b, "| %s | %.0f | %d%s | %d | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", v.name, r.rate, r.requests, timedOut(r), r.errors,
			r.rps(), fmtDur(r.p50), fmtDur(r.p90), fmtDur(r.p99), fmtDur(r.max), fmtDur(r.sendP50), fmtDur(r.sendP99), cpuPerReq(r), switchesPerReq(r), cpuUse(r), genUse(r),
			fmtWait(r.serverWait), fmtWait(r.genWait))
	}
	b.WriteString("\np99 of each round, lowest to highest (the p99 above is that of all rounds' requests together), and in parentheses how long the server's threads and the generator's were ready to run but waited for their CPU in that round (`/proc/<pid>/task/*/schedstat`: other tasks held it, or their own other threads):\n\n")
	for _, v := range vs {
		fmt.Fprintf(&b, "- %s: %s\n", v.name, fmtRoundWaits(v.half.rounds))
	}

	if o.trace {
		fmt.Fprintf(&b, "\n### Execution traces (-trace): one more half-load round each, not in the figures above\n\n")
		fmt.Fprintf(&b, "A goroutine's wait is from being woken (mostly: its connection became readable) until it ran. A GC window lasts from a cycle's mark phase until its background sweeper parks; on one CPU the sweeper keeps Go's scheduler from polling the network until then (golang/go#56060).\n\n")
		b.WriteString("| server | traced | p99 of the round | GC cycles | time in GC windows | wakeups | waits over 1 ms | of them in a GC window | longest wait |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, v := range vs {
			if s := v.stalls; s != nil {
				fmt.Fprintf(&b, "| %s | %s | %s | %d | %.1f %% | %d | %d | %d (%.0f %%) | %s |\n", v.name, fmtDur(s.traced), fmtDur(v.traced.p99), s.cycles,
					100*s.inGC.Seconds()/s.traced.Seconds(), s.wakeups, s.long, s.longInGC, 100*float64(s.longInGC)/float64(max(s.long, 1)), fmtDur(s.worst))
			}
		}
	}

	if !o.inProcess {
		b.WriteString("\n### Memory (from /proc/<pid>/status after all phases)\n\n")
		b.WriteString("| server | peak RSS (VmHWM) | RSS at the end |\n|---|--:|--:|\n")
		for _, v := range vs {
			fmt.Fprintf(&b, "| %s | %.1f MiB | %.1f MiB |\n", v.name, mib(v.hwm), mib(v.rss))
		}
	}

	// Targets.
	met := true
	row := func(name, measured string, ok bool) {
		mark := "met"
		if !ok {
			mark, met = "**missed**", false
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, measured, mark)
	}
	b.WriteString("\n### Targets (runtime without calls)\n\n| target | measured | |\n|---|---|---|\n")
	ratio := subj.maxRPS() / base.maxRPS()
	row("throughput at saturation ≥ 80 % of the baseline",
		fmt.Sprintf("%.1f %% (%.0f vs %.0f req/s, best level of each)", 100*ratio, subj.maxRPS(), base.maxRPS()), ratio >= targetThroughputRatio)
	row("p99 < 2 ms at half of the maximum load",
		fmt.Sprintf("%s at %.0f req/s, %s from the send (baseline: %s, %s from the send, at %.0f req/s)", fmtDur(subj.half.p99), subj.half.rate,
			fmtDur(subj.half.sendP99), fmtDur(base.half.p99), fmtDur(base.half.sendP99), base.half.rate), subj.half.p99 < targetHalfLoadP99)
	errs := 0
	for _, v := range vs {
		for _, r := range append(v.levels, v.half) {
			errs += r.errors
		}
	}
	row("zero errors", fmt.Sprintf("%d errors in all phases of all servers", errs), errs == 0)
	if !o.inProcess {
		row("RSS < 64 MiB", fmt.Sprintf("peak %.1f MiB (with the call: %.1f MiB)", mib(subj.hwm), mib(call.hwm)), subj.hwm < targetRSS && call.hwm < targetRSS)
	}
	// The p99 bound is near what this machine gives any Go HTTP server at half load; how the
	// bare baseline and the runtime without rules fare against it in the same run says whether a
	// miss is the runtime's or the machine's.
	var bound []string
	for _, v := range vs {
		if v == call {
			continue
		}
		under := 0
		for _, r := range v.half.rounds {
			if r.p99 < targetHalfLoadP99 {
				under++
			}
		}
		bound = append(bound, fmt.Sprintf("%s %s (%d of %d rounds)", v.name, fmtDur(v.half.p99), under, len(v.half.rounds)))
	}
	fmt.Fprintf(&b, "\nThe p99 bound for every server of this run (in parentheses: rounds whose own p99 is under it): %s.\n", strings.Join(bound, ", "))
	if bc, sc := cpuPerReqAt(base), cpuPerReqAt(subj); bc > 0 && sc > 0 {
		fmt.Fprintf(&b, "\nCPU per request at the highest concurrency: baseline %.0f µs, runtime %.0f µs, so one CPU serves %.0f %% of the baseline's requests with the runtime (throughput ratio as if both were CPU-bound; it is steadier than the measured ratio on a shared machine).\n",
			bc, sc, 100*bc/sc)
	}
	if nc, sc := cpuPerReqAt(noRules), cpuPerReqAt(subj); nc > 0 && sc > 0 {
		fmt.Fprintf(&b, "\nEvaluating the 10 rules and 3 claims costs %.0f µs per request (runtime %.0f µs, the same without rules and claims %.0f µs, at the highest concurrency); without them the runtime reaches %.0f %% of the baseline's req/s (best level of each).\n",
			sc-nc, sc, nc, 100*noRules.maxRPS()/base.maxRPS())
	}
	for _, v := range vs {
		if v.before {
			fmt.Fprintf(&b, "\nBefore/after in this run: runtime-before %.0f req/s at best, %.0f µs CPU per request; runtime %.0f req/s, %.0f µs.\n",
				v.maxRPS(), cpuPerReqAt(v), subj.maxRPS(), cpuPerReqAt(subj))
		}
	}
	callOver := call.half.p50 - o.stubDelay
	fmt.Fprintf(&b, "\nThe call variant's latency includes the stub's %s; at half load its p50 is %s above it and its p99 %s.\n",
		o.stubDelay, fmtDur(max(callOver, 0)), fmtDur(call.half.p99))
	return reportOut{text: b.String(), met: met}
}

// cpuPerReqAt is the server's CPU µs per request at the highest concurrency level.
func cpuPerReqAt(v *variant) float64 {
	r := v.levels[len(v.levels)-1]
	if r.serverCPU <= 0 || r.requests == 0 {
		return 0
	}
	return float64(r.serverCPU.Microseconds()) / float64(r.requests)
}

func timedOut(r *result) string {
	if r.timedOut {
		return " (time bound)"
	}
	return ""
}

func cpuPerReq(r *result) string {
	if r.serverCPU <= 0 || r.requests == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f µs", float64(r.serverCPU.Microseconds())/float64(r.requests))
}

// switchesPerReq is how often the server's threads were switched out per request: at
// saturation a request rarely puts the server to sleep; at half load most do, and waking it
// costs CPU (hack/bench/results/runtime.md, "Where the half-load CPU goes").
func switchesPerReq(r *result) string {
	if r.serverSwitches < 0 || r.requests == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(r.serverSwitches)/float64(r.requests))
}

func cpuUse(r *result) string {
	if r.serverCPU <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*r.serverCPU.Seconds()/r.elapsed.Seconds())
}

func genUse(r *result) string {
	if r.genCPU <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f %%", 100*r.genCPU.Seconds()/r.elapsed.Seconds())
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// startInProcessBaseline serves the baseline in this process (profiling mode).
func startInProcessBaseline() (*serverProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(baselineHandler), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &serverProc{name: "baseline", addr: ln.Addr().String(), stop: func() error {
		return srv.Shutdown(context.Background())
	}}, nil
}

// fmtRounds lists the rounds' p99 sorted, so the spread between rounds shows at a glance.
func fmtRounds(rounds []*result) string {
	return strings.Join(byP99(rounds, func(r *result) string { return fmtDur(r.p99) }), " ")
}

// fmtRoundWaits lists the rounds' p99 sorted, each with how long the server's and the
// generator's threads waited for a CPU in that round.
func fmtRoundWaits(rounds []*result) string {
	return strings.Join(byP99(rounds, func(r *result) string {
		return fmt.Sprintf("%s (%s / %s)", fmtDur(r.p99), fmtWait(r.serverWait), fmtWait(r.genWait))
	}), ", ")
}

// byP99 formats the rounds in the order of their p99, lowest first.
func byP99(rounds []*result, format func(*result) string) []string {
	s := slices.Clone(rounds)
	slices.SortStableFunc(s, func(a, b *result) int { return cmp.Compare(a.p99, b.p99) })
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = format(r)
	}
	return parts
}

// fmtWait writes a run-queue wait in milliseconds, or "–" when unknown.
func fmtWait(d time.Duration) string {
	if d < 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
