package rules_test

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"

	"github.com/apiconnector/operator/runtime/entra"
	"github.com/apiconnector/operator/runtime/rules"
)

// scannedHeap is what the next garbage collection will scan for pointers, after a full one.
func scannedHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func TestReleaseParserFreesItsTablesAndCompileBuildsThemAgain(t *testing.T) {
	compile(t, validationSpec, rules.Options{}) // the tables exist now
	before := scannedHeap()
	rules.ReleaseParser()
	after := scannedHeap()
	// The lexer's and parser's tables are ~300 KB of pointers; anything else this process
	// allocates or frees meanwhile is a few KB.
	if before < after+150_000 {
		t.Errorf("heap to scan: %d bytes before ReleaseParser, %d after; want at least 150 KB less", before, after)
	}

	e := compile(t, validationSpec, rules.Options{})
	got := eval(t, e, map[string]any{"email": "a@mailinator.com", "postalCode": "x"})
	if got.Action != entra.ActionShowBlockPage || got.Rule != "blocked-domain" {
		t.Errorf("after ReleaseParser: got %+v, want the blocked-domain rule's block page", got)
	}
	if _, err := rules.Compile(parse(t, "  rules:\n  - {name: r, when: 'claims.email ==', block: {message: m}}\n"), rules.Options{}); err == nil {
		t.Error("after ReleaseParser: a syntax error compiled")
	}
}

// Under -race (make test) this fails when Compile parses without holding the tables' lock.
func TestReleaseParserWhileOthersCompile(t *testing.T) {
	conn := parse(t, validationSpec)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 5 {
				if _, err := rules.Compile(conn, rules.Options{}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			rules.ReleaseParser()
			runtime.Gosched()
		}
	})
	wg.Wait()
}
