package rules

import (
	"sync"

	"github.com/google/cel-go/parser/gen"
)

// cel-go's parser (ANTLR) builds its lexer's and parser's tables on first use and keeps them
// in package variables for good: ~4 000 pointer-rich objects, ~300 KB, that every garbage
// collection of a serving runtime marks although it parses only when it loads a connector.
// Dropped, one collection with the benchmark connector loaded is ~20 % cheaper
// (BenchmarkCollectServing, hack/bench/results/runtime.md). Since those tables are global, so
// is their lock: Compile parses holding it for reading (parsers may run together),
// ReleaseParser drops the tables holding it for writing, and the next parse builds them again.
var parserTables sync.RWMutex

// ReleaseParser lets the garbage collector have the CEL parser's tables until the next Compile
// builds them again (a few milliseconds). For a process that compiles seldom and serves long.
func ReleaseParser() {
	parserTables.Lock()
	defer parserTables.Unlock()
	zero(&gen.CELParserStaticData)
	zero(&gen.CELLexerLexerStaticData)
}

func zero[T any](p *T) {
	var z T
	*p = z
}
