package rulestest

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
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
		if b, err := connfile.LoadFiles(sample); err == nil && len(b.Connectors) == 0 {
			continue // no connector to test (entra-tenant.yaml); an unreadable file fails below
		}
		n++
		name := strings.TrimSuffix(filepath.Base(sample), ".yaml")
		t.Run(name, func(t *testing.T) {
			cases := filepath.Join(filepath.Dir(sample), "tests", name+".cases.yaml")
			if _, err := os.Stat(cases); err != nil {
				t.Fatalf("every sample needs a case file: %v", err)
			}
			b, f, err := Load([]string{sample}, cases)
			if err != nil {
				t.Fatal(err)
			}
			results := Run(b, f)
			// Every rule and claim of a sample is exercised by a case.
			if items := Coverage(b, results); CoveragePercent(items) < 100 {
				var buf bytes.Buffer
				PrintCoverage(&buf, items)
				t.Errorf("not every rule and claim is covered:\n%s", buf.String())
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

// TestSharedRuleSet checks that the two connectors of the shared-validation sample, one per
// protocol generation, really share one rule set: everything but step, authentication and
// exposure is identical.
func TestSharedRuleSet(t *testing.T) {
	b, err := connfile.LoadFiles("../../config/samples/shared-validation.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Connectors) != 2 {
		t.Fatalf("want 2 connectors, got %d", len(b.Connectors))
	}
	a, c := b.Connectors[0].Spec.DeepCopy(), b.Connectors[1].Spec.DeepCopy()
	if a.Step != v1alpha1.StepPostAttributeCollection || c.Step != v1alpha1.StepOnAttributeCollectionSubmit {
		t.Fatalf("steps %s, %s", a.Step, c.Step)
	}
	for _, s := range []*v1alpha1.APIConnectorSpec{a, c} {
		s.Step, s.Authentication, s.Exposure = "", v1alpha1.Authentication{}, v1alpha1.Exposure{}
	}
	if !reflect.DeepEqual(a, c) {
		t.Errorf("the connectors differ beyond step, authentication and exposure:\n%+v\n%+v", a, c)
	}
}
