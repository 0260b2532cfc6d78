package main

import (
	"context"
	"runtime"
	"testing"

	"github.com/apiconnector/operator/runtime/connfile"
	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// BenchmarkCollectServing is one garbage collection of a process serving the benchmark
// connector (hack/bench/testdata/connector.yaml): what every cycle costs on top of the
// requests' own memory. "parser-kept" compiles it without dropping the CEL parser's tables
// afterwards, as serve did until 2026-11-26.
func BenchmarkCollectServing(b *testing.B) {
	const path = "../../../hack/bench/testdata/connector.yaml"
	load := map[string]func() (entra.Evaluator, error){
		"parser-kept": func() (entra.Evaluator, error) {
			bundle, err := connfile.LoadFiles(path)
			if err != nil {
				return nil, err
			}
			conn := bundle.Connectors[0]
			return rules.Compile(conn, rules.Options{ResolveList: bundle.ListResolver(conn.Namespace)})
		},
		"parser-released": func() (entra.Evaluator, error) {
			ev, _, err := loader(rules.Options{})(path)
			return ev, err
		},
	}
	for _, name := range []string{"parser-kept", "parser-released"} {
		b.Run(name, func(b *testing.B) {
			ev, err := load[name]()
			if err != nil {
				b.Fatal(err)
			}
			if c, ok := ev.(interface{ Close(context.Context) error }); ok {
				defer c.Close(context.Background())
			}
			runtime.GC()
			for b.Loop() { // ns/op is the time of one collection
				runtime.GC()
			}
			runtime.KeepAlive(ev)
		})
	}
}
