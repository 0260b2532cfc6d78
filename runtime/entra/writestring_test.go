package entra

import (
	"bytes"
	"encoding/json"
	"testing"
)

// writeString must give exactly encoding/json's bytes for any string: answers are compared
// byte for byte with Microsoft's examples, and the encoder was encoding/json before.
func FuzzWriteString(f *testing.F) {
	for _, s := range []string{
		"", "plain", `quote " and backslash \`, "<script>&amp;</script>", "tab\tnew\nline\rcr",
		"\b\f\x00\x01\x1f\x7f", "é日本語🙂", "\u2028\u2029", "bad \xff\xfe utf8", "\xed\xa0\x80 surrogate",
		"trailing \xe2\x82", "John", "jOHN sMITH",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		writeString(&b, s)
		if !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("writeString(%q) = %s, encoding/json gives %s", s, b.Bytes(), want)
		}
	})
}
