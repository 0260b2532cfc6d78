package entra

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

var parseFastCases = []struct {
	body string
	fast bool // the fast path takes it
}{
	{`{"email":"a@b.example","n":1.5e3,"t":true,"f":false,"z":null,"l":[1,"x",{"k":"v"}],"o":{"a":{"b":[]}}}`, true},
	{" \n{\"a\":\"x:y\\\"{[\"}\t\r\n", true},
	{`{}`, true},
	{`{"a":1,"a":2}`, false},
	{`{"a":"x","\u0061":"y"}`, false},
	{`{"o":{"k":1,"k":1}}`, false},
	{`{"l":[{"k":1},{"k":1,"k":2}]}`, false},
	{`{"a":1} {}`, false},
	{`{"a":1}x`, false},
	{`[{"a":1}]`, false},
	{`null`, false},
	{``, false},
	{`{"a":`, false},
	{`{"a":"\ud800"}`, true},
	{`{"a":1e999}`, true}, // refused later, by toClaims
	{"{" + strings.Repeat(`"a":{`, 31) + strings.Repeat("}", 31) + "}", true}, // 32 deep
	{"{" + strings.Repeat(`"a":{`, 32) + strings.Repeat("}", 32) + "}", false},
	{`{"a":` + strings.Repeat("[", 31) + strings.Repeat("]", 31) + "}", true},
	{`{"a":` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + "}", false},
}

// TestParseFastAgreesWithExact: whatever the fast path accepts, the exact parser accepts with
// the same values, and what it passes on is still judged by the exact parser.
func TestParseFastAgreesWithExact(t *testing.T) {
	for _, tc := range parseFastCases {
		raw, ok := parseFast([]byte(tc.body))
		if ok != tc.fast {
			t.Errorf("parseFast(%q) ok = %v, want %v", tc.body, ok, tc.fast)
		}
		checkAgreement(t, []byte(tc.body), raw, ok)
	}
}

func checkAgreement(t *testing.T, body []byte, fast map[string]any, ok bool) {
	t.Helper()
	if !ok {
		return
	}
	exact, err := parseExact(body)
	if err != nil {
		t.Fatalf("fast path accepted %q, exact parser refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(fast, exact) {
		t.Fatalf("fast path and exact parser disagree on %q:\n%#v\n%#v", body, fast, exact)
	}
}

func FuzzParseFast(f *testing.F) {
	for _, tc := range parseFastCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) {
			return
		}
		raw, ok := parseFast(body)
		checkAgreement(t, body, raw, ok)
	})
}

// BenchmarkParseBody compares the fast path with the exact parser on the benchmark request, in
// the same run.
func BenchmarkParseBody(b *testing.B) {
	body := []byte(`{"email":"john.smith@fabrikam.example","identities":[{"signInType":"federated","issuer":"facebook.com","issuerAssignedId":"0123456789"}],"displayName":"john smith","givenName":"jOHN","surname":"sMITH","jobTitle":"Supplier","streetAddress":"1000 Microsoft Way","city":"Seattle","postalCode":"98052","state":"Washington","country":"United States","extension_831374b3bd5041bfaa54263ec9e050fc_LoyaltyNumber":"LN-12345678","step":"PostAttributeCollection","client_id":"93fd07aa-333c-409d-955d-96008fd08dd9","ui_locales":"en-US"}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := parseFast(body); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("exact", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parseExact(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
