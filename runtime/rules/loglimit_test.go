package rules

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// The same failure is logged once per interval and cause; the next record says how many were
// held back, and another cause is logged at once.
func TestFailureLogLimitsRepeats(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(0, 0)
	f := &failureLog{logger: slog.New(slog.NewTextHandler(&buf, nil)), interval: 10 * time.Second, now: func() time.Time { return now }}
	for range 1000 {
		f.log(context.Background(), slog.LevelWarn, "event dropped", "audit")
	}
	f.log(context.Background(), slog.LevelWarn, "event dropped", "billing")
	now = now.Add(10 * time.Second)
	f.log(context.Background(), slog.LevelWarn, "event dropped", "audit")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 || strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[2], "suppressed=999") {
		t.Errorf("records:\n%s", buf.String())
	}
}
