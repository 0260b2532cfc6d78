package rules_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// benchSpec has 10 rules (regex, 5000-entry list membership, string functions) and 3 claim
// overwrites; the request matches none, so every rule and claim is evaluated.
const benchSpec = `  step: PostAttributeCollection
  rules:
  - {name: r1, when: "claims.email.lowerAscii().substring(claims.email.lastIndexOf('@') + 1) in lists.denied", block: {message: m}}
  - {name: r2, when: "!(claims.email in lists.allowed)", block: {message: m}}
  - {name: r3, when: "has(claims.postalCode) && !claims.postalCode.matches('^[0-9]{5}(-[0-9]{4})?$')", validationError: {message: m}}
  - {name: r4, when: "has(claims.jobTitle) && size(claims.jobTitle) > 64", validationError: {messageExpression: "'too long: ' + claims.jobTitle"}}
  - {name: r5, when: "claims.?country.orValue('') in ['North Korea', 'Iran']", block: {message: m}}
  - {name: r6, when: "request.clientId == 'blocked-app'", block: {message: m}}
  - {name: r7, when: "claims.givenName.trim() == '' || claims.surname.trim() == ''", validationError: {message: m}}
  - {name: r8, when: "claims.displayName.contains('<') || claims.displayName.contains('>')", validationError: {message: m}}
  - {name: r9, when: "identity.?issuer.orValue('') == 'evil.example'", block: {message: m}}
  - {name: r10, when: "claims.?extension_Tier.orValue('free') == 'banned'", block: {message: m}}
  claims:
    givenName: "claims.givenName.substring(0, 1).upperAscii() + claims.givenName.substring(1).lowerAscii()"
    surname: "claims.surname.substring(0, 1).upperAscii() + claims.surname.substring(1).lowerAscii()"
    displayName: "claims.givenName.trim() + ' ' + claims.surname.trim()"
`

func benchEngine(b *testing.B) *rules.Engine {
	conn := parse(b, benchSpec+"  lists:\n  - {name: denied, values: [mailinator.com]}\n  - {name: allowed, values: [x]}\n")
	allowed := make([]string, 5000)
	for i := range allowed {
		allowed[i] = fmt.Sprintf("user%d@fabrikam.example", i)
	}
	conn.Spec.Lists[1].Values = allowed
	e, err := rules.Compile(conn, rules.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return e
}

func BenchmarkEvaluate(b *testing.B) {
	e := benchEngine(b)
	req := request(b, map[string]any{
		"email": "user4999@fabrikam.example", "postalCode": "98052", "jobTitle": "Engineer", "country": "Norway",
		"givenName": "jOHN", "surname": "sMITH", "displayName": "john smith", "client_id": "app",
		"extension_831374b3bd5041bfaa54263ec9e050fc_Tier": "gold",
		"identities": []any{map[string]any{"issuer": "google.com"}},
	})
	d, err := e.Evaluate(context.Background(), req)
	if err != nil || d.Action != entra.ActionContinue || d.Claims["displayName"] != "jOHN sMITH" || d.Failure != "" {
		b.Fatalf("unexpected decision %+v %v", d, err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.Evaluate(context.Background(), req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
