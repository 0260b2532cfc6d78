//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rulestest"
)

// TestExtensionAnswersReadBack checks, without a cluster, that the suite reads extension answers
// the way the documented cases mean them: every case of the samples' extension connectors is
// evaluated by the rules test runner, encoded as the runtime encodes it, and must pass
// expectExtension. Run it with `go test -tags e2e -run TestExtensionAnswersReadBack ./hack/e2e`.
func TestExtensionAnswersReadBack(t *testing.T) {
	root := repoRoot(t)
	files, _ := filepath.Glob(filepath.Join(root, "config", "samples", "tests", "*.cases.yaml"))
	ran := 0
	for _, f := range files {
		sample := filepath.Join(root, "config", "samples", strings.TrimSuffix(filepath.Base(f), ".cases.yaml")+".yaml")
		if _, err := os.Stat(sample); err != nil {
			continue
		}
		b, err := connfile.LoadFiles(sample)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := rulestest.LoadCases(f)
		if err != nil {
			t.Fatal(err)
		}
		results := rulestest.Run(b, cf)
		for i, res := range results {
			tc := cf.Cases[i]
			var step string
			for _, c := range b.Connectors {
				if c.Name == res.Connector {
					step = string(c.Spec.Step)
				}
			}
			if !entra.IsExtensionStep(step) || tc.Credentials != nil {
				continue
			}
			if !res.Passed {
				t.Fatalf("%s: the case fails in the rules test runner: %v", tc.Name, res.Problems)
			}
			ran++
			t.Run(res.Connector+"/"+tc.Name, func(t *testing.T) {
				status, body := entra.EncodeExtensionDecision(step, res.Outcome.Decision)
				a := answer{status: status, raw: string(body)}
				_ = json.Unmarshal(body, &a.body)
				expectExtension(t, apiv1.Step(step), a, tc.Expect)
			})
		}
	}
	if ran == 0 {
		t.Fatal("no extension case")
	}
}
