package rules

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/cel-go/common/types"
	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Bounds of a connector's response cache (Options.CacheMaxEntries, Options.CacheMaxBytes).
const (
	DefaultCacheMaxEntries = 10_000
	DefaultCacheMaxBytes   = 32 << 20
)

// Cache results as the Observer reports them.
const (
	CacheHit     = "hit"     // a fresh answer was used
	CacheMiss    = "miss"    // the call was sent
	CacheStale   = "stale"   // the call failed and an expired answer within staleIfError was used
	CacheEvicted = "evicted" // an answer was dropped to stay within the bounds
)

// cacheEntry is a kept answer. size counts the response body and the key.
type cacheEntry struct {
	call              string
	resp              callResponse
	size              int
	fresh, staleUntil time.Time
}

// responseCache is a connector's cache of call answers: least recently used first out, bounded in
// entries and bytes. Keys are SHA-256 hashes, so claim values used as keys are not kept as such.
type responseCache struct {
	mu       sync.Mutex
	lru      *simplelru.LRU[[sha256.Size]byte, *cacheEntry]
	bytes    int
	maxBytes int
	removing bool // an entry is being replaced or has expired: not an eviction
}

func newResponseCache(maxEntries, maxBytes int, evicted func(call string)) *responseCache {
	c := &responseCache{maxBytes: maxBytes}
	c.lru, _ = simplelru.NewLRU(maxEntries, func(_ [sha256.Size]byte, v *cacheEntry) {
		c.bytes -= v.size
		if !c.removing {
			evicted(v.call)
		}
	}) // the error is for a size below 1; Options.withDefaults rules that out
	return c
}

// get returns the entry for key, fresh or within its staleIfError; an older one is dropped.
func (c *responseCache) get(key [sha256.Size]byte, now time.Time) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.lru.Get(key)
	if !ok {
		return nil
	}
	if now.After(e.staleUntil) {
		c.remove(key)
		return nil
	}
	return e
}

func (c *responseCache) put(key [sha256.Size]byte, e *cacheEntry) {
	if e.size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.remove(key)
	c.lru.Add(key, e) // evicts the oldest entry when full
	c.bytes += e.size
	for c.bytes > c.maxBytes {
		c.lru.RemoveOldest()
	}
}

func (c *responseCache) remove(key [sha256.Size]byte) {
	c.removing = true
	c.lru.Remove(key)
	c.removing = false
}

// cachedCall answers the call from the cache when it holds a fresh answer, else sends it and keeps
// a successful (2xx, JSON) answer. When the dependency fails and an expired answer is still within
// staleIfError, that answer is used.
func (e *Engine) cachedCall(ctx context.Context, c *compiledCall, key *[sha256.Size]byte, payload any, idempotencyKey string) (callResponse, error) {
	if key == nil {
		return e.sendCall(ctx, c, payload, idempotencyKey)
	}
	now := time.Now()
	kept := e.cache.get(*key, now)
	if kept != nil && now.Before(kept.fresh) {
		e.opts.Observer.CacheResult(c.spec.Name, CacheHit)
		return kept.resp, nil
	}
	e.opts.Observer.CacheResult(c.spec.Name, CacheMiss)
	r, err := e.sendCall(ctx, c, payload, idempotencyKey)
	if err == nil {
		now = time.Now()
		e.cache.put(*key, &cacheEntry{call: c.spec.Name, resp: r, size: r.size + len(key),
			fresh: now.Add(c.cache.ttl), staleUntil: now.Add(c.cache.ttl + c.cache.staleIfError)})
		return r, nil
	}
	if kept != nil && dependencyFailed(err) {
		e.opts.Observer.CacheResult(c.spec.Name, CacheStale)
		e.failures.log(ctx, slog.LevelInfo, "call failed, answered from the cache (staleIfError)", c.spec.Name,
			"connector", e.Name(), "call", c.spec.Name, "err", err)
		return kept.resp, nil
	}
	return r, err
}

// cacheKey hashes the call's name and its key: the key expression's value, or the rendered
// request (method, URL and payload).
func (e *Engine) cacheKey(ctx context.Context, c *compiledCall, v *vars, payload any) ([sha256.Size]byte, error) {
	h := sha256.New()
	h.Write([]byte(c.spec.Name))
	h.Write([]byte{0})
	if c.cache.key != nil {
		out, err := e.eval(ctx, c.cache.key, v)
		if err != nil {
			return [sha256.Size]byte{}, err
		}
		s, ok := out.(types.String)
		if !ok {
			return [sha256.Size]byte{}, fmt.Errorf("%s: evaluated to %s, want string", c.cache.key.path, out.Type().TypeName())
		}
		h.Write([]byte(s))
	} else {
		b, err := json.Marshal(payload) // maps are encoded with sorted keys
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("encode body: %w", err)
		}
		fmt.Fprintf(h, "%s %s\n", c.method, c.spec.URL)
		h.Write(b)
	}
	return [sha256.Size]byte(h.Sum(nil)), nil
}
