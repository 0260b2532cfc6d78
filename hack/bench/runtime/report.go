package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Targets of the runtime, judged against the bare handler of the same run.
const (
	minRPS      = 20000    // 100× Entra's ceiling of 200 requests per second per tenant
	minRPSRatio = 0.6      // of the bare handler's throughput
	maxP99Ratio = 1.5      // of the bare handler's p99 at the fixed rate
	maxRSS      = 40 << 20 // bytes, under load
)

// Names of the servers in the table.
const (
	nameRuntime = "apiconnector-runtime"
	nameBare    = "bare net/http"
	nameNode    = "Node.js http"
)

// measurement is one server's figures over all rounds.
type measurement struct {
	name       string
	skipped    string // why it was not measured; the rest is zero then
	throughput float64
	cpuPerReq  time.Duration // server CPU time per request in the throughput phase
	p99        time.Duration
	samples    int   // latencies behind p99
	rss        int64 // highest resident set size sampled under load, bytes
	errors     int64
	firstErr   error
}

// verdict is one target of the runtime: throughput, p99, RSS, errors.
type verdict struct {
	target string
	met    bool
}

// judge checks the runtime's figures against the targets; bare is the bare handler of the same run.
func judge(rt, bare measurement) []verdict {
	return []verdict{
		{fmt.Sprintf("≥ %s req/s and ≥ %.1f× bare", fmtInt(minRPS), minRPSRatio),
			rt.throughput >= minRPS && bare.throughput > 0 && rt.throughput >= minRPSRatio*bare.throughput},
		{fmt.Sprintf("≤ %.1f× bare", maxP99Ratio),
			rt.p99 > 0 && bare.p99 > 0 && float64(rt.p99) <= maxP99Ratio*float64(bare.p99)},
		{fmt.Sprintf("< %d MiB", maxRSS>>20), rt.rss > 0 && rt.rss < maxRSS},
		{"0", rt.errors == 0 && rt.samples > 0},
	}
}

// runInfo is the header of the results file.
type runInfo struct {
	command string
	date    time.Time
	commit  string
	machine string
	method  string
	rate    float64 // of the latency phase, requests per second
}

// render is the results file: a short header and one table, the runtime's targets in its last row.
func render(info runInfo, ms []measurement, vs []verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Runtime benchmark\n\n")
	fmt.Fprintf(&b, "`%s` on %s, commit %s; %s.\n\n", info.command, info.date.UTC().Format("2006-01-02 15:04 UTC"), info.commit, info.machine)
	if info.method != "" {
		fmt.Fprintf(&b, "%s\n\n", info.method)
	}
	fmt.Fprintf(&b, "| server | throughput | CPU per request | p99 at %s req/s | RSS under load | errors |\n|---|---|---|---|---|---|\n", fmtInt(info.rate))
	var rt, bare, node *measurement
	for i := range ms {
		switch ms[i].name {
		case nameRuntime:
			rt = &ms[i]
		case nameBare:
			bare = &ms[i]
		case nameNode:
			node = &ms[i]
		}
	}
	for _, m := range ms {
		if m.skipped != "" {
			fmt.Fprintf(&b, "| %s | skipped: %s | | | | |\n", m.name, m.skipped)
			continue
		}
		tp := fmtInt(m.throughput) + " req/s"
		p99 := fmtDur(m.p99)
		if m.name == nameRuntime {
			tp += ratios(m.throughput, bare, node, func(o *measurement) float64 { return o.throughput })
			p99 += ratios(float64(m.p99), bare, node, func(o *measurement) float64 { return float64(o.p99) })
		}
		fmt.Fprintf(&b, "| %s | %s | %d µs | %s | %.1f MiB | %d |\n", m.name, tp, m.cpuPerReq.Microseconds(), p99, float64(m.rss)/(1<<20), m.errors)
	}
	if rt != nil && rt.skipped == "" && len(vs) > 0 {
		b.WriteString("| target (runtime) |")
		for i, v := range vs {
			fmt.Fprintf(&b, " %s: %s |", v.target, metWord(v.met))
			if i == 0 {
				b.WriteString(" |") // CPU per request has no target
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ratios is " (0.93× bare, 2.40× Node.js)" for the others that were measured.
func ratios(v float64, bare, node *measurement, of func(*measurement) float64) string {
	var parts []string
	for _, o := range []struct {
		m    *measurement
		name string
	}{{bare, "bare"}, {node, "Node.js"}} {
		if o.m != nil && o.m.skipped == "" && of(o.m) > 0 {
			parts = append(parts, fmt.Sprintf("%.2f× %s", v/of(o.m), o.name))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func metWord(met bool) string {
	if met {
		return "**met**"
	}
	return "**missed**"
}

// fmtInt rounds v and groups its digits by three with spaces: 35 210.
func fmtInt(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtDur is a latency in milliseconds with two decimals (µs below 0.1 ms would look precise
// where loopback is not).
func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
