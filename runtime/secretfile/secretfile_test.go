package secretfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTrimRemovesOneTrailingNewline(t *testing.T) {
	for in, want := range map[string]string{
		"key":       "key",
		"key\n":     "key",
		"key\r\n":   "key",
		"key\n\n":   "key\n",
		"ke\ny\n":   "ke\ny",
		"key \n":    "key ",
		"\n":        "",
		"key\r":     "key",
		"key\r\n\n": "key\r\n",
	} {
		if got := string(Trim([]byte(in))); got != want {
			t.Errorf("Trim(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRead(t *testing.T) {
	p := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(p, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(p); err != nil || string(got) != "s3cret" {
		t.Errorf("Read = %q, %v", got, err)
	}
	if _, err := Read(p + ".missing"); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}
