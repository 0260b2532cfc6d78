package entra_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
)

// The request of the hack/bench runtime benchmark: a PostAttributeCollection body with
// identities and a custom attribute.
func benchBody(b *testing.B) []byte {
	body, err := os.ReadFile("../../hack/bench/testdata/request.json")
	if err != nil {
		b.Fatal(err)
	}
	return bytes.TrimSpace(body)
}

func BenchmarkDecodeRequest(b *testing.B) {
	body := benchBody(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := entra.DecodeRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeContinue(b *testing.B) {
	d := &entra.Decision{Action: entra.ActionContinue, Claims: map[string]string{
		"givenName": "John", "surname": "Smith", "displayName": "John Smith"}}
	b.ReportAllocs()
	for b.Loop() {
		if status, _ := entra.EncodeDecision(d); status != 200 {
			b.Fatal(status)
		}
	}
}

func BenchmarkEncodeValidationError(b *testing.B) {
	d := &entra.Decision{Action: entra.ActionValidationError, UserMessage: "Please enter a valid postal code."}
	b.ReportAllocs()
	for b.Loop() {
		if status, _ := entra.EncodeDecision(d); status != 400 {
			b.Fatal(status)
		}
	}
}
