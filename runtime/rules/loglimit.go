package rules

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// DefaultFailureLogInterval is how often the same failure (message and call, event, rule or
// claim) of a connector is logged at most; metrics count every occurrence.
const DefaultFailureLogInterval = 10 * time.Second

// failureLog writes repeated failures at most once per interval and cause, so a dependency that
// is down does not turn every request into log lines. A record written after some were held
// back says how many in "suppressed".
type failureLog struct {
	logger   *slog.Logger
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	state map[[2]string]*failureLogState
}

type failureLogState struct {
	next       time.Time
	suppressed int
}

// log writes msg for cause (the call, event, rule or claim it is about) unless one was written
// less than an interval ago.
func (f *failureLog) log(ctx context.Context, level slog.Level, msg, cause string, args ...any) {
	now := f.now()
	f.mu.Lock()
	key := [2]string{msg, cause}
	st := f.state[key]
	if st == nil {
		if f.state == nil {
			f.state = map[[2]string]*failureLogState{}
		}
		st = &failureLogState{}
		f.state[key] = st
	}
	if now.Before(st.next) {
		st.suppressed++
		f.mu.Unlock()
		return
	}
	suppressed := st.suppressed
	st.next, st.suppressed = now.Add(f.interval), 0
	f.mu.Unlock()
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	f.logger.Log(ctx, level, msg, args...)
}
