package entra

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

var decodeClaimsCases = []struct {
	name string
	body string
	ok   bool // decodeClaims takes it
}{
	{"empty object", `{}`, true},
	{"all types", `{"s":"x","n":-1.5e3,"t":true,"f":false,"z":null,"l":[1,"x",{"k":"v"},[]],"o":{"a":{"b":[]}}}`, true},
	{"whitespace everywhere", " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } }\n\t ", true},
	{"empty key", `{"":1}`, true},
	{"escapes", `{"a":"\"\\\/\b\f\n\r\tx","b\n":"\u00e9\u20AC\u0000"}`, true},
	{"surrogate pair", `{"a":"\ud83d\ude00","\uD83D\uDE00":1}`, true},
	{"raw multibyte and U+2028", "{\"a\":\"é€😀\u2028\ufffd\"}", true},
	{"DEL is not a control character", "{\"a\":\"\x7f\"}", true},
	{"lone high surrogate", `{"a":"\ud800"}`, false},
	{"lone low surrogate", `{"a":"\udc00"}`, false},
	{"high surrogate then letter", `{"a":"\ud800\u0041"}`, false},
	{"two high surrogates", `{"a":"\ud800\ud800"}`, false},
	{"two low surrogates", `{"a":"\udc00\udc00"}`, false},
	{"reversed pair", `{"a":"\ude00\ud83d"}`, false},
	{"last surrogate pair", `{"a":"\udbff\udfff"}`, true},
	{"high surrogate then raw", `{"a":"\ud800x"}`, false},
	{"lone surrogate in key", `{"\udfff":1}`, false},
	{"short unicode escape", `{"a":"\u00"}`, false},
	{"bad hex", `{"a":"\uZZZZ"}`, false},
	{"unknown escape", `{"a":"\x"}`, false},
	{"escape at end", `{"a":"\`, false},
	{"raw control char", "{\"a\":\"\x01\"}", false},
	{"raw tab in string", "{\"a\":\"\t\"}", false},
	{"raw newline in key", "{\"a\n\":1}", false},
	{"duplicate key", `{"a":1,"a":2}`, false},
	{"duplicate key, one escaped", `{"a":1,"\u0061":2}`, false},
	{"nested duplicate key", `{"o":{"k":1,"k":1}}`, false},
	{"duplicate key in array element", `{"l":[{"k":1},{"k":1,"k":2}]}`, false},
	{"same key in sibling objects", `{"l":[{"k":1},{"k":2}],"o":{"l":1}}`, true},
	{"objects at maxDepth", "{" + strings.Repeat(`"a":{`, maxDepth-1) + strings.Repeat("}", maxDepth-1) + "}", true},
	{"objects at maxDepth+1", "{" + strings.Repeat(`"a":{`, maxDepth) + strings.Repeat("}", maxDepth) + "}", false},
	{"arrays at maxDepth", `{"a":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + "}", true},
	{"arrays at maxDepth+1", `{"a":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + "}", false},
	{"minus zero", `{"n":-0}`, true},
	{"exponents", `{"a":1E+2,"b":1e-2,"c":0.5e0,"d":-0.0}`, true},
	{"underflow to zero", `{"n":1e-400}`, true},
	{"beyond float64", `{"n":12345678901234567890123}`, true},
	{"overflow", `{"n":1e400}`, false},
	{"negative overflow", `{"n":-1e400}`, false},
	{"leading zero", `{"n":01}`, false},
	{"trailing dot", `{"n":1.}`, false},
	{"leading dot", `{"n":.5}`, false},
	{"lone minus", `{"n":-}`, false},
	{"plus sign", `{"n":+1}`, false},
	{"empty exponent", `{"n":1e}`, false},
	{"signed empty exponent", `{"n":1e+}`, false},
	{"hex", `{"n":0x10}`, false},
	{"underscore", `{"n":1_000}`, false},
	{"infinity", `{"n":Infinity}`, false},
	{"nan", `{"n":NaN}`, false},
	{"space after minus", `{"n":- 1}`, false},
	{"literals", `{"a":true,"b":false,"c":null}`, true},
	{"short literal", `{"a":tru}`, false},
	{"capital literal", `{"a":True}`, false},
	{"literal with tail", `{"a":truex}`, false},
	{"trailing object", `{} {}`, false},
	{"trailing garbage", `{}x`, false},
	{"trailing comma after body", `{},`, false},
	{"BOM", "\ufeff{}", false},
	{"form feed is not whitespace", "{\f}", false},
	{"NBSP is not whitespace", "{\u00a0}", false},
	{"invalid UTF-8", "{\"a\":\"\xff\"}", false},
	{"UTF-8 encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", false},
	{"overlong UTF-8", "{\"a\":\"\xc0\xaf\"}", false},
	{"truncated UTF-8", "{\"a\":\"\xe2\x82\"}", false},
	{"empty", ``, false},
	{"array", `[]`, false},
	{"string", `"x"`, false},
	{"null", `null`, false},
	{"unterminated", `{"a":1`, false},
	{"unterminated string", `{"a":"x}`, false},
	{"key without value", `{"a"}`, false},
	{"missing value", `{"a":}`, false},
	{"missing colon", `{"a" 1}`, false},
	{"lone comma", `{,}`, false},
	{"trailing comma", `{"a":1,}`, false},
	{"trailing comma in array", `{"a":[1,]}`, false},
	{"leading comma in array", `{"a":[,1]}`, false},
	{"single quotes", `{'a':1}`, false},
	{"bare key", `{a:1}`, false},
	{"number key", `{1:1}`, false},
	{"unclosed array", `{"a":[1}`, false},
	{"mismatched close", `{"a":[1}]`, false},
	{"string claim number", `{"email":1}`, false},
	{"string claim null", `{"email":null}`, false},
	{"string claim escaped key", `{"\u0065mail":[]}`, false},
	{"string claim name nested", `{"x":{"email":1}}`, true},
	{"unknown claim of any type", `{"extension_x_n":1,"extension_x_o":{"a":[null]}}`, true},
	{"identities empty", `{"identities":[]}`, true},
	{"identities extra fields", `{"identities":[{"issuer":"a","other":3}]}`, true},
	{"identities object", `{"identities":{}}`, false},
	{"identities null", `{"identities":null}`, false},
	{"identities of strings", `{"identities":["x"]}`, false},
	{"identity issuer number", `{"identities":[{"issuer":"a"},{"issuer":3}]}`, false},
}

func TestDecodeClaims(t *testing.T) {
	for _, tc := range decodeClaimsCases {
		t.Run(tc.name, func(t *testing.T) {
			_, ok := decodeClaims(tc.body)
			if ok != tc.ok {
				t.Errorf("decodeClaims(%q) ok = %v, want %v", tc.body, ok, tc.ok)
			}
			checkDecodeClaims(t, []byte(tc.body))
		})
	}
}

func TestDecodeClaimsValues(t *testing.T) {
	claims, ok := decodeClaims(`{"a":"\"\\\/\b\f\n\r\tx\u00e9\ud83d\ude00\u0000","n":-0,"m":1e-400,"l":[]}`)
	want := map[string]any{"a": "\"\\/\b\f\n\r\txé😀\x00", "n": 0.0, "m": 0.0, "l": []any{}}
	if !ok || !reflect.DeepEqual(claims, want) {
		t.Fatalf("got %#v, %v\nwant %#v", claims, ok, want)
	}
}

// TestDecodeErrorsDeterministic: a body with several faults of the same kind gets the same error
// every time, whatever the map order.
func TestDecodeErrorsDeterministic(t *testing.T) {
	if !slices.IsSorted(stringClaimNames) {
		t.Errorf("stringClaimNames not sorted: %v", stringClaimNames)
	}
	for _, body := range []string{
		`{"email":1,"city":2,"step":3,"surname":4,"state":5,"country":6}`,
		`{"z":1e400,"a":{"y":-1e400,"b":2e400},"m":3e400,"n":[4e400]}`,
	} {
		_, first := DecodeRequest([]byte(body))
		for range 50 {
			if _, err := DecodeRequest([]byte(body)); fmt.Sprint(err) != fmt.Sprint(first) {
				t.Fatalf("%s: %v, then %v", body, first, err)
			}
		}
	}
}

// referenceDecode is DecodeRequest without its fast paths: UTF-8 check, the token-by-token
// parser, known types, float64 conversion. raw is the exact parse, for CanonicalJSON.
func referenceDecode(body []byte) (claims, raw map[string]any, err error) {
	if !utf8.Valid(body) {
		_, err := parseBody(body) // its invalid_utf8 error
		return nil, nil, err
	}
	if raw, err = parseExact(body); err != nil {
		return nil, nil, err
	}
	if err := checkKnownTypes(raw); err != nil {
		return nil, nil, err
	}
	c, err := toClaims(raw)
	if err != nil {
		return nil, nil, err
	}
	return c.(map[string]any), raw, nil
}

// checkDecodeClaims: whatever decodeClaims accepts, the reference accepts with the same claims;
// DecodeRequest gives the reference's claims, error and Canonical for every body.
func checkDecodeClaims(t *testing.T, body []byte) {
	t.Helper()
	want, raw, wantErr := referenceDecode(body)
	if claims, ok := decodeClaims(string(body)); ok {
		if wantErr != nil {
			t.Fatalf("decodeClaims accepts %q, the reference refuses it: %v", body, wantErr)
		}
		if !reflect.DeepEqual(claims, want) {
			t.Fatalf("decodeClaims and the reference disagree on %q:\n%#v\n%#v", body, claims, want)
		}
	}
	req, err := DecodeRequest(body)
	if fmt.Sprintf("%T %v", err, err) != fmt.Sprintf("%T %v", wantErr, wantErr) {
		t.Fatalf("DecodeRequest(%q) error %T %v, reference %T %v", body, err, err, wantErr, wantErr)
	}
	if err != nil {
		return
	}
	if !reflect.DeepEqual(req.Claims, want) {
		t.Fatalf("DecodeRequest and the reference disagree on %q:\n%#v\n%#v", body, req.Claims, want)
	}
	wantCanon, err := canonicalJSON(raw)
	if err != nil {
		t.Fatalf("canonicalJSON of the reference parse of %q: %v", body, err)
	}
	if got := req.CanonicalJSON(); !bytes.Equal(got, wantCanon) {
		t.Fatalf("CanonicalJSON of %q = %s, want %s", body, got, wantCanon)
	}
}

// fuzzSeeds are the request bodies in the repository's test data: JSON files, and the bodies of
// the server's fuzz corpus.
func fuzzSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, dir := range []string{"testdata", "../server/testdata", "../../hack/bench/testdata"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if strings.HasSuffix(path, ".json") {
				seeds = append(seeds, b)
			} else if bytes.HasPrefix(b, []byte("go test fuzz v1\n")) {
				for line := range strings.Lines(string(b)) {
					if q, ok := strings.CutPrefix(strings.TrimSpace(line), "[]byte("); ok {
						if s, err := strconv.Unquote(strings.TrimSuffix(q, ")")); err == nil {
							seeds = append(seeds, []byte(s))
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			f.Fatal(err)
		}
	}
	if len(seeds) < 10 {
		f.Fatalf("only %d seed files found", len(seeds))
	}
	return seeds
}

func FuzzDecodeClaims(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	for _, tc := range decodeClaimsCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkDecodeClaims(t, body)
	})
}
