package entra

import (
	"bytes"
	"encoding/json"
)

// parseFast is parseBody's fast path for the bodies Entra sends: one well-formed object without
// duplicate keys, nested at most maxDepth deep. It decodes with a single json.Decoder.Decode
// (encoding/json's Token API, which the exact parser needs to see every key, allocates an error
// per scalar value and costs several times more) and checks the two properties Decode does not:
//
//   - duplicate keys: every ':' outside a string of a valid JSON text separates one object
//     member, and an object keeps one entry per distinct key, so the body has no duplicate key
//     at any depth exactly when the colons outside strings equal the entries of all decoded
//     objects;
//   - nesting: brackets outside strings are counted while scanning.
//
// ok is false for anything else (malformed, not an object, duplicates, too deep, trailing data),
// and the caller then runs the exact parser, which finds and names the problem. The fast path
// therefore never accepts a body the exact parser refuses, and both give the same values
// (map[string]any, []any, json.Number, string, bool, nil). body must be valid UTF-8.
func parseFast(body []byte) (raw map[string]any, ok bool) {
	colons, depth, maxSeen := 0, 0, 0
	inString, escaped := false, false
	first := true
	for _, c := range body {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			inString = true
		case ':':
			colons++
		case '{', '[':
			depth++
			maxSeen = max(maxSeen, depth)
		case '}', ']':
			depth--
		}
		if first && c != '{' {
			return nil, false
		}
		first = false
	}
	if maxSeen > maxDepth || inString || depth != 0 {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, false
	}
	if len(bytes.Trim(body[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, false
	}
	if countEntries(raw) != colons {
		return nil, false
	}
	return raw, true
}

// countEntries is the number of members of every object in v.
func countEntries(v any) int {
	switch t := v.(type) {
	case map[string]any:
		n := len(t)
		for _, e := range t {
			n += countEntries(e)
		}
		return n
	case []any:
		n := 0
		for _, e := range t {
			n += countEntries(e)
		}
		return n
	}
	return 0
}
