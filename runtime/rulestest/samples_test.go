package rulestest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSamples runs every committed sample through its test-case file, so a sample that stops
// compiling or deciding as documented fails the build.
func TestSamples(t *testing.T) {
	samples, err := filepath.Glob("../../config/samples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, sample := range samples {
		if filepath.Base(sample) == "kustomization.yaml" {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(sample), ".yaml")
		t.Run(name, func(t *testing.T) {
			cases := filepath.Join(filepath.Dir(sample), "tests", name+".cases.yaml")
			if _, err := os.Stat(cases); err != nil {
				t.Fatalf("every sample needs a case file: %v", err)
			}
			results, err := RunFile([]string{sample}, cases)
			if err != nil {
				t.Fatal(err)
			}
			if len(results) == 0 {
				t.Fatal("no cases")
			}
			var buf bytes.Buffer
			if err := PrintTable(&buf, results); err != nil {
				t.Fatal(err)
			}
			if !Passed(results) {
				t.Errorf("cases failed:\n%s", buf.String())
			} else {
				t.Logf("\n%s", buf.String())
			}
		})
	}
	if n < 5 {
		t.Errorf("found %d samples, want at least 5", n)
	}
}
