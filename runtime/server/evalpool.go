package server

import "time"

// Evaluations that are not entra.PromptEvaluators run on goroutines of their own (see
// Server.evaluate). A new goroutine per request
// starts with a small stack, and the CEL interpreter grows it to 16 KiB or more, copying it at
// each doubling: about a tenth of a request's CPU time in BenchmarkServeConnector. These workers
// outlive one evaluation, so a grown stack is reused. A worker that is busy (or stuck in an
// evaluator that ignores its context) is never waited for: when no worker is idle a new one
// starts, so this never queues; workers idle for evalWorkerIdle exit.
type evalPool struct {
	tasks chan func()
}

func newEvalPool() *evalPool { return &evalPool{tasks: make(chan func())} }

const evalWorkerIdle = 30 * time.Second

// run runs f on an idle worker or on a new one. f must not panic (evalRecovered recovers).
func (p *evalPool) run(f func()) {
	select {
	case p.tasks <- f:
	default:
		go p.worker(f)
	}
}

func (p *evalPool) worker(f func()) {
	idle := time.NewTimer(evalWorkerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // do not keep the finished request reachable while idle
		idle.Reset(evalWorkerIdle)
		select {
		case f = <-p.tasks:
		case <-idle.C:
			return
		}
	}
}
