//go:build benchtrace

package main

import "github.com/apiconnector/operator/hack/bench/benchtrace"

// Only in binaries built with -tags benchtrace, as go run ./hack/bench/runtime -trace builds
// it: an execution trace of the phase the benchmark chooses (see package benchtrace).
func init() { benchtrace.FromEnv() }
