//go:build race

package rules_test

// The race detector's instrumentation inflates what TotalAlloc counts.
func init() { maxAllocMiB = 128 }
