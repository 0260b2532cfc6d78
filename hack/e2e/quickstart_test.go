//go:build e2e

package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
)

// quickstartMarker precedes the README block the suite runs verbatim.
const quickstartMarker = "<!-- quickstart: "

// quickstart runs the README's quickstart block verbatim, as a new user pastes it into a shell at
// the root of a checkout, on the freshly installed cluster: it creates the namespace the suite's
// samples use, and must leave input-validation Ready. The lines run in a scratch directory that
// holds the checkout's config/ (the self-signed key they write stays out of the repository). The
// later steps apply the suite's own version of the connector and Secrets over these.
func (s *suite) quickstart(t *testing.T) {
	script := readmeBlock(t, quickstartMarker)
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(repoRoot(t), "config"), filepath.Join(dir, "config")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.CommandContext(s.ctx, "bash", "-euxo", "pipefail", "-c", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("README quickstart:\n%s", out)
	if err != nil {
		t.Fatalf("the README quickstart failed verbatim: %v", err)
	}
	s.timings["quickstart: README lines"] = time.Since(start)

	var c apiv1.APIConnector
	if err := s.c.Get(s.ctx, client.ObjectKey{Namespace: ns, Name: "input-validation"}, &c); err != nil {
		t.Fatal(err)
	}
	if r := meta.FindStatusCondition(c.Status.Conditions, "Ready"); r == nil || r.Status != metav1.ConditionTrue || r.Reason != "Succeeded" {
		t.Fatalf("after the quickstart input-validation is not Ready/Succeeded: %+v", c.Status.Conditions)
	}
	if len(c.Status.Endpoints) == 0 || !strings.HasPrefix(c.Status.Endpoints[0], "https://signup.contoso.example/") {
		t.Errorf("endpoints = %v, want https://signup.contoso.example/…", c.Status.Endpoints)
	}
	// From here on the namespace is the suite's: it enforces Pod Security restricted like the others.
	s.createNamespace(ns, nil)
}

// readmeBlock returns the fenced code block that follows marker in README.md.
func readmeBlock(t *testing.T, marker string) string {
	f, err := os.Open(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	state := "marker"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch state {
		case "marker":
			if strings.HasPrefix(line, marker) {
				state = "fence"
			}
		case "fence":
			if !strings.HasPrefix(line, "```") {
				t.Fatalf("README.md: no code block right after %q", marker)
			}
			state = "block"
		case "block":
			if strings.HasPrefix(line, "```") {
				return strings.Join(lines, "\n") + "\n"
			}
			lines = append(lines, line)
		}
	}
	t.Fatalf("README.md: no complete code block after %q (read up to %s)", marker, state)
	return ""
}
