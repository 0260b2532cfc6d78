package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// slogLine is what slog.JSONHandler writes for l at time t.
func slogLine(t *testing.T, l *requestLine, at time.Time) []byte {
	t.Helper()
	var buf bytes.Buffer
	r := slog.NewRecord(at, l.level, requestMsg, 0)
	r.AddAttrs(l.attrs()...)
	if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func checkSameAsSlog(t *testing.T, l *requestLine, at time.Time) {
	t.Helper()
	want := slogLine(t, l, at)
	if got := l.appendJSON(nil, at); !bytes.Equal(got, want) {
		t.Errorf("request line differs from slog's\n got: %s\nwant: %s", got, want)
	}
}

func TestRequestLineIsSlogJSON(t *testing.T) {
	east := time.FixedZone("east", 5*3600+30*60)
	times := []time.Time{
		time.Date(2026, 11, 25, 17, 8, 25, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 100000000, east),
	}
	lines := []requestLine{
		{level: slog.LevelInfo, id: "0123456789abcdef0123456789abcdef", step: "PostAttributeCollection", action: "Continue", code: 200, latency: 123 * time.Microsecond},
		{level: slog.LevelInfo, id: "abc", step: "PostFederationSignup", action: "ShowBlockPage", code: 200, latency: 0, rule: "disposable-domain"},
		{level: slog.LevelInfo, id: "x", step: "PostAttributeCollection", action: "ValidationError", code: 400, latency: 12345 * time.Microsecond, rule: "email-format"},
		{level: slog.LevelWarn, id: "y", step: "PostAttributeCollection", action: "BadRequest", code: 400, latency: time.Millisecond, reason: "malformed_json"},
		{level: slog.LevelWarn, id: "z", step: "OnTokenIssuanceStart", action: "Unauthorized", code: 401, latency: 20 * time.Second, reason: "bad_credentials"},
		{level: slog.LevelInfo, id: "c", step: "PostAttributeCollection", action: "Continue", code: 200, latency: 999 * time.Nanosecond,
			claims:         `{"displayName":"<b>A & B</b>","city":"Zürich","note":"tab\there\nline \"q\" \\ \u2028\u2029 \x01\x1f\x7f"}`,
			returnedClaims: "{\"givenName\":\"\xff\xfe bad utf-8 \xe2\x82\"}"},
		{level: slog.LevelInfo, id: "d", step: "PostAttributeCollection", action: "Continue", code: 200, latency: 1500 * time.Microsecond,
			rule: "r", reason: "calls.crm: 503; rules[2].when: no such key: x"},
	}
	for _, at := range times {
		for i := range lines {
			checkSameAsSlog(t, &lines[i], at)
		}
	}
}

func FuzzRequestLine(f *testing.F) {
	f.Add("0123456789abcdef", "rule-1", "reason", `{"a":"b"}`, "", int64(123456))
	f.Add("id", "", "\x00\x1f\"\\\u2028", "\xff\xc3", "日本語 <&>", int64(0))
	f.Fuzz(func(t *testing.T, id, rule, reason, claims, returned string, latencyNS int64) {
		if latencyNS < 0 {
			latencyNS = -latencyNS
		}
		l := requestLine{level: slog.LevelWarn, id: id, step: "PostAttributeCollection", action: "Continue", code: 200,
			latency: time.Duration(latencyNS), rule: rule, reason: reason, claims: claims, returnedClaims: returned}
		checkSameAsSlog(t, &l, time.Date(2026, 11, 25, 0, 0, 0, int(latencyNS%1e9), time.UTC))
	})
}

// BenchmarkRequestLine compares the request line through slog with the one written directly.
func BenchmarkRequestLine(b *testing.B) {
	l := requestLine{level: slog.LevelInfo, id: "0123456789abcdef0123456789abcdef", step: "PostAttributeCollection",
		action: "Continue", code: 200, latency: 123 * time.Microsecond}
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil))
	var bufs sync.Pool
	b.Run("slog", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.log(context.Background(), logger, nil, &bufs)
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			l.log(context.Background(), logger, io.Discard, &bufs)
		}
	})
}
