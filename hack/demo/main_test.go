package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo as `make demo` does, a process of its own, so the README's second
// command cannot rot: it must print the Entra answers, and nothing but its own lines (no log
// of a library, no stack trace) on stdout and stderr together.
func TestDemo(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		`< HTTP 200` + "\n" + `< {"version":"1.0.0","action":"Continue","givenName":"John"}`,
		`< HTTP 200` + "\n" + `< {"version":"1.0.0","action":"ShowBlockPage","userMessage":"Please sign up with your work or personal e-mail address."}`,
		`< HTTP 400` + "\n" + `< {"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"Please enter a valid postal code (5 digits)."}`,
		"< HTTP 401",
		"status.endpoints[0] = https://signup.demo.example/demo/signup",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The demo's own lines: numbered steps, the endpoint, the exchanges and the end.
	own := regexp.MustCompile(`^(\[\d/\d\] .* done \(\d+\.\ds\)|      status\.endpoints\[0\] = .*|Entra-shaped requests and the runtime's answers:|--- .*|[<>] .*|Done\. .*|)$`)
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !own.MatchString(line) {
			t.Errorf("the demo printed a line that is not its own: %q\nall output:\n%s", line, out)
			break
		}
	}
}
