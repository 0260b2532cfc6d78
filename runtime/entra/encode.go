package entra

import (
	"bytes"
	"net/http"
	"sort"
	"unicode/utf8"
)

// DefaultFailureMessage is the userMessage when a connector fails closed and sets no failureMessage.
const DefaultFailureMessage = "We can't complete your sign-up right now. Please try again later."

// reservedKeys are response fields a returned claim must never overwrite. email is here because
// Entra refuses to have it returned.
var reservedKeys = map[string]bool{"version": true, "action": true, "status": true, "userMessage": true, "email": true}

// EncodeDecision renders a decision as the HTTP status and body Entra expects:
//
//	Continue        200 {"version":"1.0.0","action":"Continue",<claims sorted by key>}
//	ShowBlockPage   200 {"version":"1.0.0","action":"ShowBlockPage","userMessage":"..."}
//	ValidationError 400 {"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"..."}
//
// Keys come in a fixed order (version, status, action, userMessage, then claims sorted), the
// order of Microsoft's examples, so the same decision always gives the same bytes. The claim email
// and claims named like response fields are never emitted. A nil decision or an unknown action
// fails closed as ShowBlockPage with DefaultFailureMessage: the encoder must not invent a Continue.
func EncodeDecision(d *Decision) (status int, body []byte) {
	if d == nil {
		d = &Decision{Action: ActionShowBlockPage, UserMessage: DefaultFailureMessage}
	}
	var b bytes.Buffer
	b.Grow(96 + 64*len(d.Claims) + len(d.UserMessage)) // one allocation for a typical answer
	b.WriteString(`{"version":`)
	writeString(&b, Version)
	switch d.Action {
	case ActionContinue:
		b.WriteString(`,"action":"Continue"`)
		keys := make([]string, 0, len(d.Claims))
		for k := range d.Claims {
			if !reservedKeys[k] {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteByte(',')
			writeString(&b, k)
			b.WriteByte(':')
			writeString(&b, d.Claims[k])
		}
		status = http.StatusOK
	case ActionValidationError:
		b.WriteString(`,"status":400,"action":"ValidationError","userMessage":`)
		writeString(&b, d.UserMessage)
		status = http.StatusBadRequest
	case ActionShowBlockPage:
		b.WriteString(`,"action":"ShowBlockPage","userMessage":`)
		writeString(&b, d.UserMessage)
		status = http.StatusOK
	default:
		b.WriteString(`,"action":"ShowBlockPage","userMessage":`)
		writeString(&b, DefaultFailureMessage)
		status = http.StatusOK
	}
	b.WriteByte('}')
	return status, b.Bytes()
}

// writeString writes s as a JSON string exactly as encoding/json does (FuzzWriteString compares
// them), without its allocation per string: <, > and & become \u003c etc., which keeps a
// userMessage harmless even if someone pastes it into HTML unescaped; invalid UTF-8 becomes
// U+FFFD; U+2028 and U+2029 are escaped for JavaScript.
func writeString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b.WriteString(s[start:i])
			b.WriteString(`\u202`)
			b.WriteByte(hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
