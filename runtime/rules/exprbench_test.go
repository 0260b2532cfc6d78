package rules

import (
	"context"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/entra"
)

// BenchmarkBenchConnectorExpressions is what each expression of the runtime benchmark's
// connector (hack/bench/testdata/connector.yaml) costs on its request, and what the request's
// variables cost to build: the breakdown of the evaluation's share of a request in
// hack/bench/results/runtime.md. The variables are built once per sub-benchmark, so claims
// read earlier are served from their cache, as they mostly are within a request.
func BenchmarkBenchConnectorExpressions(b *testing.B) {
	eng, req := benchConnector(b)
	ctx := context.Background()
	b.Run("newVars", func(b *testing.B) {
		for b.Loop() {
			eng.newVars(req)
		}
	})
	programs := []struct {
		name string
		p    *program
	}{}
	for _, r := range eng.rules {
		programs = append(programs, struct {
			name string
			p    *program
		}{"rule-" + r.name, r.when})
	}
	for _, c := range eng.claims {
		programs = append(programs, struct {
			name string
			p    *program
		}{"claim-" + c.name, c.expr})
	}
	for _, pr := range programs {
		b.Run(pr.name, func(b *testing.B) {
			v := eng.newVars(req)
			for b.Loop() {
				if _, err := eng.eval(ctx, pr.p, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchConnector compiles the runtime benchmark's connector with its ConfigMap list (the two
// documents of the file) and decodes its request.
func benchConnector(b *testing.B) (*Engine, *entra.Request) {
	raw, err := os.ReadFile("../../hack/bench/testdata/connector.yaml")
	if err != nil {
		b.Fatal(err)
	}
	docs := strings.Split(string(raw), "\n---\n")
	if len(docs) != 2 {
		b.Fatalf("want the APIConnector and its ConfigMap, found %d documents", len(docs))
	}
	var conn v1alpha1.APIConnector
	var cm struct{ Data map[string]string }
	if err := yaml.UnmarshalStrict([]byte(docs[0]), &conn); err != nil {
		b.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(docs[1]), &cm); err != nil {
		b.Fatal(err)
	}
	eng, err := Compile(&conn, Options{ResolveList: func(ref v1alpha1.ConfigMapKeyReference) ([]string, error) {
		return ParseListData(cm.Data[ref.Key]), nil
	}})
	if err != nil {
		b.Fatal(err)
	}
	body, err := os.ReadFile("../../hack/bench/testdata/request.json")
	if err != nil {
		b.Fatal(err)
	}
	req, err := entra.DecodeRequest(body)
	if err != nil {
		b.Fatal(err)
	}
	d, err := eng.Evaluate(context.Background(), req)
	if err != nil || d.Action != entra.ActionContinue || d.Failure != "" || len(d.Claims) != 3 {
		b.Fatalf("the benchmark request should pass every rule and set 3 claims: %+v %v", d, err)
	}
	return eng, req
}
