package server

import "time"

// Evaluations run on goroutines of their own (see Server.evaluate). A new goroutine per request
// starts with a small stack, and the CEL interpreter grows it to 16 KiB or more, copying it at
// each doubling: about a tenth of a request's CPU time in BenchmarkServeConnector. These workers
// outlive one evaluation, so a grown stack is reused. A worker that is busy (or stuck in an
// evaluator that ignores its context) is never waited for: when no worker is idle a new one
// starts, so this never queues; workers idle for evalWorkerIdle exit.
var evalTasks = make(chan func())

const evalWorkerIdle = 30 * time.Second

// goEval runs f on an idle worker or on a new one. f must not panic (evaluate recovers itself).
func goEval(f func()) {
	select {
	case evalTasks <- f:
	default:
		go evalWorker(f)
	}
}

func evalWorker(f func()) {
	idle := time.NewTimer(evalWorkerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // do not keep the finished request reachable while idle
		idle.Reset(evalWorkerIdle)
		select {
		case f = <-evalTasks:
		case <-idle.C:
			return
		}
	}
}
