package server

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// requestLine is the log line every request ends with.
type requestLine struct {
	level                  slog.Level
	at                     time.Time // when the answer was written
	id, step, action       string
	code                   int
	latency                time.Duration
	rule, reason           string
	claims, returnedClaims string // only with Options.LogClaims
}

const requestMsg = "request"

// log writes l through logger, or straight to w as the JSON line logger's slog.JSONHandler
// would write (same keys in the same order, same values once decoded). slog spends ~0.8 µs per
// line, most of it formatting a float and the time, which was 3 % of a request's CPU at load.
// bufs holds line buffers (*[]byte) for reuse; an io.Writer does not keep what it is given.
func (l *requestLine) log(ctx context.Context, logger *slog.Logger, w io.Writer, bufs *sync.Pool) {
	if w != nil {
		bp, _ := bufs.Get().(*[]byte)
		if bp == nil {
			bp = new([]byte)
		}
		*bp = l.appendJSON((*bp)[:0], l.at)
		w.Write(*bp)
		if cap(*bp) <= 4<<10 { // a line with claims can be large; do not keep those
			bufs.Put(bp)
		}
		return
	}
	logger.LogAttrs(ctx, l.level, requestMsg, l.attrs()...)
}

func (l *requestLine) attrs() []slog.Attr {
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, slog.String("request_id", l.id), slog.String("step", l.step),
		slog.String("action", l.action), slog.Int("code", l.code),
		slog.Float64("latency_ms", latencyMillis(l.latency)))
	for _, kv := range l.optional() {
		if kv[1] != "" {
			attrs = append(attrs, slog.String(kv[0], kv[1]))
		}
	}
	return attrs
}

// optional are the keys and values written only when not empty.
func (l *requestLine) optional() [4][2]string {
	return [4][2]string{{"rule", l.rule}, {"reason", l.reason}, {"claims", l.claims}, {"returned_claims", l.returnedClaims}}
}

// latencyMillis is the latency in milliseconds with microsecond precision.
func latencyMillis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (l *requestLine) appendJSON(b []byte, t time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":`...)
	b = appendJSONString(b, l.level.String())
	b = append(b, `,"msg":"`+requestMsg+`","request_id":`...)
	b = appendJSONString(b, l.id)
	b = append(b, `,"step":`...)
	b = appendJSONString(b, l.step)
	b = append(b, `,"action":`...)
	b = appendJSONString(b, l.action)
	b = append(b, `,"code":`...)
	b = strconv.AppendInt(b, int64(l.code), 10)
	b = append(b, `,"latency_ms":`...)
	// encoding/json (which slog uses for floats) writes 'f' format between 1e-6 and 1e21; a
	// latency in whole microseconds is 0 or at least 0.001 ms.
	b = strconv.AppendFloat(b, latencyMillis(l.latency), 'f', -1, 64)
	for _, kv := range l.optional() {
		if kv[1] != "" {
			b = append(b, ',')
			b = appendJSONString(b, kv[0])
			b = append(b, ':')
			b = appendJSONString(b, kv[1])
		}
	}
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string the way slog's JSONHandler does: invalid UTF-8 as
// U+FFFD, control characters and U+2028/U+2029 escaped, HTML characters left alone.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
