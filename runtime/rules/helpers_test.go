package rules_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// header is a valid connector prefix; tests append spec fields indented by two spaces.
const header = `apiVersion: apiconnector.dev/v1alpha1
kind: APIConnector
metadata: {name: test, namespace: ns}
spec:
  authentication: {basic: {secretRef: {name: s}}}
  exposure: {host: signup.contoso.example}
`

func parse(t testing.TB, spec string) *v1alpha1.APIConnector {
	t.Helper()
	b, err := connfile.Parse("test.yaml", []byte(header+spec))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if len(b.Connectors) != 1 {
		t.Fatalf("got %d connectors", len(b.Connectors))
	}
	return b.Connectors[0]
}

func compile(t testing.TB, spec string, opts rules.Options) *rules.Engine {
	t.Helper()
	e, err := rules.Compile(parse(t, spec), opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

func request(t testing.TB, claims map[string]any) *entra.Request {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	// Decode like the server: numbers become float64.
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return entra.NewRequest(m, b)
}

func eval(t testing.TB, e *rules.Engine, claims map[string]any) *entra.Decision {
	t.Helper()
	d, err := e.Evaluate(context.Background(), request(t, claims))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	return d
}

// wantFieldError fails unless err is a CompileErrors naming path with a message containing reason.
func wantFieldError(t testing.TB, err error, path, reason string) {
	t.Helper()
	var ce rules.CompileErrors
	if !errors.As(err, &ce) {
		t.Fatalf("want CompileErrors, got %v", err)
	}
	for _, fe := range ce {
		if fe.Path == path && strings.Contains(fe.Message, reason) {
			return
		}
	}
	t.Errorf("want %s: ...%s..., got:\n%v", path, reason, err)
}
