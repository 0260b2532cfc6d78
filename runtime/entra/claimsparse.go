package entra

import (
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// decodeClaims is DecodeRequest's fast path: one pass over the body straight into Claims, without
// the json.Number tree, the duplicate-key recount and the float64 copy of the exact path. It
// accepts only what that path accepts, with the same values, and says ok=false for anything else
// (malformed JSON, invalid UTF-8, duplicate keys, too deep, lone surrogates, numbers out of range,
// known claims of the wrong type); DecodeRequest then runs the exact path, which names the
// problem. FuzzDecodeClaims holds it to that.
//
// Strings without escapes are substrings of s, so a body costs one copy, not one per value.
func decodeClaims(s string) (claims map[string]any, ok bool) {
	// Checked up front (a few ns for a typical body) so that bytes from 0x80 up stand for
	// themselves inside strings; encoding/json would turn invalid UTF-8 into U+FFFD, so two
	// bodies would give the same claims.
	if !utf8.ValidString(s) {
		return nil, false
	}
	p := parsers.Get().(*claimsParser)
	defer p.release()
	p.s = s
	p.space()
	if p.i >= len(s) || s[p.i] != '{' {
		return nil, false
	}
	m, ok := p.object(1)
	if !ok {
		return nil, false
	}
	p.space()
	if p.i != len(s) {
		return nil, false
	}
	if ids, present := m["identities"]; present && checkIdentities(ids, "identities") != nil {
		return nil, false
	}
	return m, true
}

type member struct {
	key string
	val any
}

type claimsParser struct {
	s string
	i int
	// The members and elements of the containers being parsed wait here until their container is
	// complete, so that each map and slice is allocated once at its final size.
	members []member
	elems   []any
	// The most of each stack used, to clear no more than that.
	membersUsed, elemsUsed int
}

// parsers keeps the stacks between requests, which saves two allocations (1.3 KB to zero) per
// request: allocation is most of what is left of the parse's cost.
var parsers = sync.Pool{New: func() any {
	return &claimsParser{members: make([]member, 0, 32), elems: make([]any, 0, 16)}
}}

func (p *claimsParser) release() {
	if cap(p.members) > maxPooledStack || cap(p.elems) > maxPooledStack {
		return // a rare huge body: do not keep its stacks for good
	}
	// The stacks hold this request's values; drop them so the pool does not keep them alive.
	clear(p.members[:max(p.membersUsed, len(p.members))]) // len: a parse that gave up midway
	clear(p.elems[:max(p.elemsUsed, len(p.elems))])
	*p = claimsParser{members: p.members[:0], elems: p.elems[:0]}
	parsers.Put(p)
}

const maxPooledStack = 1024

func (p *claimsParser) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// object parses the object whose '{' is at p.i, nested depth deep (the body is depth 1). The
// claims Entra documents as strings are checked at the top level, where they are claims.
func (p *claimsParser) object(depth int) (map[string]any, bool) {
	p.i++ // '{'
	base := len(p.members)
	p.space()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		return map[string]any{}, true
	}
	for {
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return nil, false
		}
		key, ok := p.str()
		if !ok {
			return nil, false
		}
		p.space()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return nil, false
		}
		p.i++
		p.space()
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		if depth == 1 {
			if _, isString := v.(string); !isString && stringClaims[key] {
				return nil, false
			}
		}
		p.members = append(p.members, member{key, v})
		if end, ok := p.separator('}'); !ok {
			return nil, false
		} else if end {
			break
		}
	}
	ms := p.members[base:]
	p.membersUsed = max(p.membersUsed, len(p.members))
	m := make(map[string]any, len(ms))
	for _, e := range ms {
		m[e.key] = e.val
	}
	if len(m) != len(ms) { // a key came twice
		return nil, false
	}
	p.members = p.members[:base]
	return m, true
}

// separator reads what follows a member or element: a comma (and the space after it), or the
// container's closing bracket (end).
func (p *claimsParser) separator(closing byte) (end, ok bool) {
	p.space()
	if p.i >= len(p.s) {
		return false, false
	}
	c := p.s[p.i]
	p.i++
	switch c {
	case closing:
		return true, true
	case ',':
		p.space()
		return false, true
	}
	return false, false
}

func (p *claimsParser) array(depth int) ([]any, bool) {
	p.i++ // '['
	base := len(p.elems)
	p.space()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		return []any{}, true
	}
	for {
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		p.elems = append(p.elems, v)
		if end, ok := p.separator(']'); !ok {
			return nil, false
		} else if end {
			break
		}
	}
	es := p.elems[base:]
	p.elemsUsed = max(p.elemsUsed, len(p.elems))
	a := make([]any, len(es))
	copy(a, es)
	p.elems = p.elems[:base]
	return a, true
}

// value parses the value at p.i inside a container nested depth deep.
func (p *claimsParser) value(depth int) (any, bool) {
	if p.i >= len(p.s) {
		return nil, false
	}
	switch c := p.s[p.i]; c {
	case '"':
		return p.str()
	case '{', '[':
		if depth >= maxDepth {
			return nil, false
		}
		if c == '{' {
			return p.object(depth + 1)
		}
		return p.array(depth + 1)
	case 't':
		return true, p.literal("true")
	case 'f':
		return false, p.literal("false")
	case 'n':
		return nil, p.literal("null")
	default:
		return p.number()
	}
}

func (p *claimsParser) literal(lit string) bool {
	if !strings.HasPrefix(p.s[p.i:], lit) {
		return false
	}
	p.i += len(lit)
	return true
}

// number parses -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? as toClaims converts it.
func (p *claimsParser) number() (float64, bool) {
	s, start := p.s, p.i
	i := start
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && '1' <= s[i] && s[i] <= '9':
		i = digits(s, i+1)
	default:
		return 0, false
	}
	if i < len(s) && s[i] == '.' {
		j := digits(s, i+1)
		if j == i+1 {
			return 0, false
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := digits(s, i)
		if j == i {
			return 0, false
		}
		i = j
	}
	p.i = i
	f, err := strconv.ParseFloat(s[start:i], 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func digits(s string, i int) int {
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	return i
}

// plain marks the bytes that stand for themselves in a string: printable ASCII but '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// str parses the string whose '"' is at p.i. Without escapes it is a substring of the body.
func (p *claimsParser) str() (string, bool) {
	s := p.s
	start := p.i + 1
	for i := start; i < len(s); {
		c := s[i]
		switch {
		case plain[c]:
			i++
		case c == '"':
			p.i = i + 1
			return s[start:i], true
		case c == '\\':
			return p.unescape(start, i)
		case c < 0x20:
			return "", false
		default: // part of a UTF-8 sequence
			i++
		}
	}
	return "", false
}

// unescape finishes a string that has an escape at i; start is just after its opening '"'.
func (p *claimsParser) unescape(start, i int) (string, bool) {
	s := p.s
	var b strings.Builder
	b.Grow(i - start + 16)
	b.WriteString(s[start:i])
	for i < len(s) {
		c := s[i]
		switch {
		case plain[c]:
			b.WriteByte(c)
			i++
		case c == '"':
			p.i = i + 1
			return b.String(), true
		case c == '\\':
			if i+1 >= len(s) {
				return "", false
			}
			e := s[i+1]
			i += 2
			switch e {
			case '"', '\\', '/':
				b.WriteByte(e)
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case 'u':
				r, ok := hex4(s, i)
				if !ok {
					return "", false
				}
				i += 4
				if utf16.IsSurrogate(r) {
					// Only a high surrogate followed by an escaped low one is a character; the
					// exact path decides what a lone one becomes.
					if r >= 0xdc00 || i+6 > len(s) || s[i] != '\\' || s[i+1] != 'u' {
						return "", false
					}
					lo, ok := hex4(s, i+2)
					if !ok || lo < 0xdc00 || lo > 0xdfff {
						return "", false
					}
					r = utf16.DecodeRune(r, lo)
					i += 6
				}
				b.WriteRune(r)
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", false
}

func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
