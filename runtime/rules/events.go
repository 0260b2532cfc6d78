package rules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/cel-go/common/types"
	"go.opentelemetry.io/otel/trace"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// CloudEventContentType is the structured-mode CloudEvents JSON media type.
const CloudEventContentType = "application/cloudevents+json"

// asyncWorkers deliver queued events in parallel so one slow sink does not stall all events.
const asyncWorkers = 4

// asyncAttemptTimeout bounds one delivery attempt of an async event.
const asyncAttemptTimeout = 5 * time.Second

// CloudEvent is a CloudEvents 1.0 event in structured JSON mode.
type CloudEvent struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	Data            any       `json:"data"`
}

// EventID is the id of the event name for a request: a SHA-256 over the connector, the step, the
// event and the canonical request body. Entra retries a request once after 20s; the retry gets
// the same id so sinks can de-duplicate.
func EventID(namespace, name, step, event string, canonical []byte) string {
	h := sha256.New()
	for _, part := range []string{namespace, name, step, event} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil))
}

// IdempotencyKey is the Idempotency-Key header of the call named call for a request: like EventID
// a SHA-256 over the connector, the step, the call and the canonical request body, so Entra's retry
// of the same sign-up presents the same key and the dependency can answer it without acting twice.
func IdempotencyKey(namespace, name, step, call string, canonical []byte) string {
	return EventID(namespace, name, step, SecretKindCall+"/"+call, canonical) // no event name has a '/'
}

// emitEvents builds the events whose when holds and delivers them: Sync ones now (a failure under
// failurePolicy Fail turns the answer into the fail-closed one), Async ones through the queue.
func (e *Engine) emitEvents(ctx context.Context, v *vars, req *entra.Request, d *entra.Decision) *entra.Decision {
	claims := make(map[string]any, len(d.Claims))
	for k, val := range d.Claims {
		claims[k] = val
	}
	for k, val := range d.ClaimValues {
		claims[k] = val
	}
	decision := map[string]any{"action": string(d.Action), "rule": d.Rule, "userMessage": d.UserMessage, "claims": claims}
	v.decision = types.NewStringInterfaceMap(types.DefaultTypeAdapter, decision)
	step := v.step

	for _, ev := range e.events {
		ce, err := e.buildEvent(ctx, ev, v, req, step, decision)
		if err == nil && ce == nil {
			continue // when is false
		}
		if err == nil && ev.delivery == v1alpha1.DeliveryAsync {
			e.queue.push(asyncEvent{ev: ev, ce: ce, parent: trace.SpanContextFromContext(ctx)})
			continue
		}
		if err == nil {
			start := time.Now()
			err = e.send(ctx, ev, ce)
			e.opts.Observer.EventSent(ev.spec.Name, time.Since(start), err)
		}
		if err == nil {
			continue
		}
		reason := fmt.Sprintf("event %s: %v", ev.spec.Name, err)
		if ev.delivery == v1alpha1.DeliverySync && ev.failurePolicy == v1alpha1.FailurePolicyFail {
			e.failures.log(ctx, slog.LevelWarn, "event failed, failing closed", ev.spec.Name, "connector", e.Name(), "event", ev.spec.Name, "err", err)
			return e.fail(reason)
		}
		e.failures.log(ctx, slog.LevelInfo, "event failed, ignored", ev.spec.Name, "connector", e.Name(), "event", ev.spec.Name, "err", err)
	}
	return d
}

// buildEvent returns nil, nil when the event's when is false.
func (e *Engine) buildEvent(ctx context.Context, ev *compiledEvent, v *vars, req *entra.Request, step string, decision map[string]any) (*CloudEvent, error) {
	send, err := e.evalBool(ctx, ev.when, v)
	if err != nil || !send {
		return nil, err
	}
	var data any
	if ev.data == nil {
		data = map[string]any{
			"step": step,
			"decision": map[string]any{
				"action": decision["action"], "rule": decision["rule"], "userMessage": decision["userMessage"],
			},
			"claims": decision["claims"],
		}
	} else {
		out, err := e.eval(ctx, ev.data, v)
		if err != nil {
			return nil, err
		}
		if data, err = toJSON(out); err != nil {
			return nil, fmt.Errorf("%s: %w", ev.data.path, err)
		}
	}
	return &CloudEvent{
		SpecVersion:     "1.0",
		ID:              EventID(e.namespace, e.name, step, ev.spec.Name, req.Canonical()),
		Source:          "apiconnector.dev/" + e.namespace + "/" + e.name,
		Type:            "dev.apiconnector." + ev.spec.Name,
		Time:            e.opts.Now().UTC(),
		DataContentType: "application/json",
		Data:            data,
	}, nil
}

// send makes one delivery attempt.
func (e *Engine) send(ctx context.Context, ev *compiledEvent, ce *CloudEvent) error {
	b, err := json.Marshal(ce)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	ctx = context.WithValue(ctx, targetKey{}, Target{Kind: SecretKindEvent, Name: ev.spec.Name})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.spec.Sink.URL, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", CloudEventContentType)
	if err := e.addSecretValues(req, SecretKindEvent, ev.spec.Name, ev.spec.Sink.SecretValues); err != nil {
		return err
	}
	if err := e.authorize(req, SecretKindEvent, ev.spec.Name, ev.spec.Sink.Auth); err != nil {
		return err
	}
	resp, err := e.opts.HTTPClient.Do(req)
	if err != nil {
		return e.transportError(err, ev.spec.Sink.SecretValues)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes)) // lets the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("sink answered status %d", resp.StatusCode)
	}
	return nil
}

type asyncEvent struct {
	ev *compiledEvent
	ce *CloudEvent
	// parent is the request's span: the deliveries' spans are its children.
	parent trace.SpanContext
}

// eventQueue delivers async events after the answer was sent, with bounded retries. Workers start
// on the first event, so an Engine compiled only for validation starts no goroutine.
type eventQueue struct {
	e       *Engine
	ch      chan asyncEvent
	mu      sync.RWMutex // guards closed against sends on a closed ch
	closed  bool
	start   sync.Once
	started atomic.Bool
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	dropped atomic.Uint64
}

func newEventQueue(e *Engine) *eventQueue {
	ctx, cancel := context.WithCancel(context.Background())
	return &eventQueue{e: e, ch: make(chan asyncEvent, e.opts.EventQueueSize), ctx: ctx, cancel: cancel}
}

func (q *eventQueue) push(a asyncEvent) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		q.drop(a)
		return
	}
	q.start.Do(func() {
		q.started.Store(true)
		for range asyncWorkers {
			q.wg.Add(1)
			go q.run()
		}
	})
	select {
	case q.ch <- a:
	default:
		q.drop(a)
	}
}

func (q *eventQueue) drop(a asyncEvent) {
	q.dropped.Add(1)
	q.e.opts.Observer.EventDropped(a.ev.spec.Name)
	q.e.failures.log(context.Background(), slog.LevelWarn, "event dropped", a.ev.spec.Name, "connector", q.e.Name(), "event", a.ev.spec.Name)
}

func (q *eventQueue) run() {
	defer q.wg.Done()
	for a := range q.ch {
		if q.ctx.Err() != nil {
			q.drop(a) // Close gave up waiting
			continue
		}
		q.deliver(a)
	}
}

// deliver tries an event up to EventAttempts times with doubling backoff.
func (q *eventQueue) deliver(a asyncEvent) {
	start := time.Now()
	backoff := q.e.opts.EventBackoff
	var err error
	parent := trace.ContextWithSpanContext(q.ctx, a.parent)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(parent, asyncAttemptTimeout)
		err = q.e.send(ctx, a.ev, a.ce)
		cancel()
		if err == nil || attempt >= q.e.opts.EventAttempts {
			break
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-q.ctx.Done():
			t.Stop()
		}
		if q.ctx.Err() != nil {
			break
		}
		backoff *= 2
	}
	q.e.opts.Observer.EventSent(a.ev.spec.Name, time.Since(start), err)
	if err != nil {
		q.e.failures.log(context.Background(), slog.LevelWarn, "event not delivered", a.ev.spec.Name, "connector", q.e.Name(), "event", a.ev.spec.Name, "err", err)
	}
}

// close stops accepting events and waits for the queue to drain until ctx ends, then abandons
// the rest (counted as dropped).
func (q *eventQueue) close(ctx context.Context) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	close(q.ch)
	q.mu.Unlock()
	if !q.started.Load() {
		q.cancel()
		return nil
	}
	done := make(chan struct{})
	go func() { q.wg.Wait(); close(done) }()
	select {
	case <-done:
		q.cancel()
		return nil
	case <-ctx.Done():
		q.cancel()
		<-done
		return fmt.Errorf("drain events of %s: %w", q.e.Name(), ctx.Err())
	}
}

// Close stops the Engine's async event delivery, waiting until queued events are delivered or
// ctx ends. Evaluate may still be called afterwards; its async events are dropped.
func (e *Engine) Close(ctx context.Context) error { return e.queue.close(ctx) }

// DroppedEvents counts async events dropped because the queue was full or closed.
func (e *Engine) DroppedEvents() uint64 { return e.queue.dropped.Load() }
