package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemo runs `make demo` end to end, so the README's second command cannot rot.
func TestDemo(t *testing.T) {
	if err := os.Chdir("../.."); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, &out, "config/samples/demo.yaml"); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		`< HTTP 200` + "\n" + `< {"version":"1.0.0","action":"Continue","givenName":"John"}`,
		`< HTTP 200` + "\n" + `< {"version":"1.0.0","action":"ShowBlockPage","userMessage":"Please sign up with your work or personal e-mail address."}`,
		`< HTTP 400` + "\n" + `< {"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"Please enter a valid postal code (5 digits)."}`,
		"< HTTP 401",
		"status.endpoints[0] = https://signup.demo.example/demo/signup",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}
