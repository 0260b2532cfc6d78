package rules

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// fastStrings re-binds lowerAscii, upperAscii, substring, indexOf and lastIndexOf of
// ext.Strings() with implementations that work on bytes when code point positions are byte
// positions (ASCII strings; any valid UTF-8 for the case mappings) instead of converting the
// whole string to []rune and back on every call, and that answer the input itself when nothing
// changes; and trim, whose ext implementation is strings.TrimSpace too, only to answer the input
// itself when it has no surrounding space (claims seldom have). Claims are almost always ASCII.
//
// cel-go lets an overload be redefined with an identical signature (decls.FunctionDecl.AddOverload
// replaces only the implementation), so type checking, cost estimation and cost tracking, which
// are keyed by overload id, stay ext.Strings()'. The cases without a fast path run a copy of
// ext.Strings()' code rather than ext.Strings()' own binding, because calling that one through its
// type guard makes non-ASCII strings slower than without fastStrings. TestFastStringsMatchExt and
// FuzzFastStrings check that every result, error and cost is ext.Strings()'.
func fastStrings() cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		// Declared before ext.Strings(), these bindings would be silently replaced by ext's.
		if !e.HasLibrary("cel.lib.ext.strings") {
			return nil, errors.New("fastStrings must follow ext.Strings()")
		}
		var opts []cel.EnvOption
		for _, f := range fastStringFunctions {
			var overloads []cel.FunctionOpt
			for _, o := range f.overloads {
				argTypes := make([]*cel.Type, len(o.args))
				for i, k := range o.args {
					argTypes[i] = k.celType()
				}
				overloads = append(overloads, cel.MemberOverload(o.id, argTypes, o.result.celType(), o.binding()))
			}
			opts = append(opts, cel.Function(f.name, overloads...))
		}
		var err error
		for _, opt := range opts {
			if e, err = opt(e); err != nil {
				return nil, err
			}
		}
		return e, nil
	}
}

// fastStringFunctions are the overloads fastStrings re-binds. The fast call path
// (fastcall.go) calls the same implementations without cel-go's type guard.
var fastStringFunctions = []struct {
	name      string
	overloads []fastOverload
}{
	{"lowerAscii", []fastOverload{{id: "string_lower_ascii", args: []argKind{argString}, result: argString,
		unary: func(s ref.Val) ref.Val { return stringVal(s, lowerASCII(string(s.(types.String))), nil) }}}},
	{"upperAscii", []fastOverload{{id: "string_upper_ascii", args: []argKind{argString}, result: argString,
		unary: func(s ref.Val) ref.Val { return stringVal(s, upperASCII(string(s.(types.String))), nil) }}}},
	{"trim", []fastOverload{{id: "string_trim", args: []argKind{argString}, result: argString,
		unary: func(s ref.Val) ref.Val { return stringVal(s, strings.TrimSpace(string(s.(types.String))), nil) }}}},
	{"substring", []fastOverload{
		{id: "string_substring_int", args: []argKind{argString, argInt}, result: argString,
			binary: func(s, start ref.Val) ref.Val {
				out, err := substr(string(s.(types.String)), int64(start.(types.Int)))
				return stringVal(s, out, err)
			}},
		{id: "string_substring_int_int", args: []argKind{argString, argInt, argInt}, result: argString,
			ternary: func(s, start, end ref.Val) ref.Val {
				out, err := substrRange(string(s.(types.String)), int64(start.(types.Int)), int64(end.(types.Int)))
				return stringVal(s, out, err)
			}},
	}},
	{"indexOf", []fastOverload{
		{id: "string_index_of_string", args: []argKind{argString, argString}, result: argInt,
			binary: func(s, sub ref.Val) ref.Val {
				return intVal(indexOfOffset(string(s.(types.String)), string(sub.(types.String)), 0))
			}},
		{id: "string_index_of_string_int", args: []argKind{argString, argString, argInt}, result: argInt,
			ternary: func(s, sub, off ref.Val) ref.Val {
				return intVal(indexOfOffset(string(s.(types.String)), string(sub.(types.String)), int64(off.(types.Int))))
			}},
	}},
	{"lastIndexOf", []fastOverload{
		{id: "string_last_index_of_string", args: []argKind{argString, argString}, result: argInt,
			binary: func(s, sub ref.Val) ref.Val {
				return intVal(lastIndexOf(string(s.(types.String)), string(sub.(types.String))))
			}},
		{id: "string_last_index_of_string_int", args: []argKind{argString, argString, argInt}, result: argInt,
			ternary: func(s, sub, off ref.Val) ref.Val {
				return intVal(lastIndexOfOffset(string(s.(types.String)), string(sub.(types.String)), int64(off.(types.Int))))
			}},
	}},
}

// stringVal is ext's stringOrError, except that it answers in itself when out is the same
// string, and a shared value for one ASCII character (capitalising a name takes its first),
// saving the allocation of a new value.
func stringVal(in ref.Val, out string, err error) ref.Val {
	if err != nil {
		return types.NewErrFromString(err.Error())
	}
	if out == string(in.(types.String)) {
		return in
	}
	if len(out) == 1 && out[0] < utf8.RuneSelf {
		return asciiVals[out[0]]
	}
	return types.String(out)
}

// asciiChars holds every ASCII character, so a one-character string can be a slice of it, and
// asciiVals their CEL values. Never written after init.
var (
	asciiChars = func() string {
		b := make([]byte, utf8.RuneSelf)
		for i := range b {
			b[i] = byte(i)
		}
		return string(b)
	}()
	asciiVals = func() (vals [utf8.RuneSelf]ref.Val) {
		for i := range vals {
			vals[i] = types.String(asciiChars[i : i+1])
		}
		return vals
	}()
)

// intVal is ext's intOrError, except that "not found" does not allocate.
func intVal(i int64, err error) ref.Val {
	if err != nil {
		return types.NewErrFromString(err.Error())
	}
	if i == -1 {
		return types.IntNegOne
	}
	return types.Int(i)
}

// The functions below are those of cel-go v0.31.0 ext/strings.go (Copyright 2020 Google LLC,
// Apache License 2.0), each preceded by a fast path for the inputs where byte positions are code
// point positions. On a cel-go upgrade, TestFastStringsMatchExt and FuzzFastStrings compare them
// with the new ext.

func indexOfOffset(str, substr string, offset int64) (int64, error) {
	if offset >= 0 && isASCII(str) && isASCII(substr) {
		switch {
		case substr == "":
			return min(offset, int64(len(str))), nil
		case offset >= int64(len(str)):
			return -1, nil
		}
		if i := strings.Index(str[offset:], substr); i >= 0 {
			return offset + int64(i), nil
		}
		return -1, nil
	}
	runes, subrunes, off, answer, err := runeSearch(str, substr, offset)
	if runes == nil {
		return answer, err
	}
	for i := off; i < len(runes)-(len(subrunes)-1); i++ {
		if runesAt(runes, subrunes, i) {
			return int64(i), nil
		}
	}
	return -1, nil
}

// runeSearch is what ext's indexOf and lastIndexOf with an offset do before searching: runes is
// nil when the offset is negative (err), the needle empty, or the offset past the end, and answer
// is then the result.
func runeSearch(str, substr string, offset int64) (runes, subrunes []rune, off int, answer int64, err error) {
	off = int(offset)
	if off < 0 {
		return nil, nil, off, -1, fmt.Errorf("index out of range: %d", off)
	}
	runes = []rune(str)
	if substr == "" {
		// The empty string matches at the search offset, clamped to the end of the string.
		return nil, nil, off, min(offset, int64(len(runes))), nil
	}
	// If the offset exceeds the length, return -1 rather than error.
	if off >= len(runes) {
		return nil, nil, off, -1, nil
	}
	return runes, []rune(substr), off, 0, nil
}

// runesAt says whether sub is at position i of runes.
func runesAt(runes, sub []rune, i int) bool {
	for j := range sub {
		if runes[i+j] != sub[j] {
			return false
		}
	}
	return true
}

func lastIndexOf(str, substr string) (int64, error) {
	if isASCII(str) && isASCII(substr) {
		// Like ext, "" matches at the end.
		return int64(strings.LastIndex(str, substr)), nil
	}
	runes := []rune(str)
	if substr == "" {
		return int64(len(runes)), nil
	}

	if len(str) < len(substr) {
		return -1, nil
	}
	return lastIndexOfOffset(str, substr, int64(len(runes)-1))
}

func lastIndexOfOffset(str, substr string, offset int64) (int64, error) {
	if offset >= 0 && isASCII(str) && isASCII(substr) {
		switch n := int64(len(str)); {
		case substr == "":
			return min(offset, n), nil
		case offset >= n:
			// Even when there is a match before the end (ext's answer).
			return -1, nil
		default:
			// The last match starting at or before offset.
			return int64(strings.LastIndex(str[:min(offset+int64(len(substr)), n)], substr)), nil
		}
	}
	runes, subrunes, off, answer, err := runeSearch(str, substr, offset)
	if runes == nil {
		return answer, err
	}
	if off > len(runes)-len(subrunes) {
		off = len(runes) - len(subrunes)
	}
	for i := off; i >= 0; i-- {
		if runesAt(runes, subrunes, i) {
			return int64(i), nil
		}
	}
	return -1, nil
}

// lowerASCII and upperASCII cannot fail, so unlike ext's they return no error.
func lowerASCII(str string) string { return mapASCII(str, 'A', 'Z', unicode.ToLower) }

func upperASCII(str string) string { return mapASCII(str, 'a', 'z', unicode.ToUpper) }

// mapASCII maps the ASCII letters lo..hi with to, as ext does rune by rune.
func mapASCII(str string, lo, hi byte, to func(rune) rune) string {
	if utf8.ValidString(str) {
		return flipASCIICase(str, lo, hi)
	}
	runes := []rune(str)
	for i, r := range runes {
		if r <= unicode.MaxASCII {
			runes[i] = to(r)
		}
	}
	return string(runes)
}

func substr(str string, start int64) (string, error) {
	if start >= 0 && start <= int64(len(str)) && isASCII(str) {
		return str[start:], nil
	}
	runes := []rune(str)
	if int(start) < 0 || int(start) > len(runes) {
		return "", fmt.Errorf("index out of range: %d", start)
	}
	return string(runes[start:]), nil
}

func substrRange(str string, start, end int64) (string, error) {
	if start >= 0 && start <= end && end <= int64(len(str)) && isASCII(str) {
		return str[start:end], nil
	}
	runes := []rune(str)
	l := len(runes)
	if start > end {
		return "", fmt.Errorf("invalid substring range. start: %d, end: %d", start, end)
	}
	if int(start) < 0 || int(start) > l {
		return "", fmt.Errorf("index out of range: %d", start)
	}
	if int(end) < 0 || int(end) > l {
		return "", fmt.Errorf("index out of range: %d", end)
	}
	return string(runes[int(start):int(end)]), nil
}

// flipASCIICase switches the case of the ASCII letters lo..hi in the valid UTF-8 str, returning
// str itself when there are none. Byte-wise is what ext's rune-wise mapping does because every
// byte of a multi-byte sequence is >= 0x80; invalid UTF-8 is different, as []rune turns each
// invalid byte into U+FFFD.
func flipASCIICase(str string, lo, hi byte) string {
	i := 0
	for i < len(str) && (str[i] < lo || str[i] > hi) {
		i++
	}
	if i == len(str) {
		return str
	}
	if len(str) == 1 {
		c := str[0] ^ ('a' - 'A')
		return asciiChars[c : c+1]
	}
	var b strings.Builder
	b.Grow(len(str))
	b.WriteString(str[:i])
	for ; i < len(str); i++ {
		c := str[i]
		if lo <= c && c <= hi {
			c ^= 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
