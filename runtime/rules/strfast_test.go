package rules

import (
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// stringExprs calls the overridden functions on variables, so that constant folding
// (OptOptimize) does not evaluate them at plan time.
func stringExprs() []string {
	return []string{
		"s.lowerAscii()", "s.upperAscii()", "s.trim()",
		"s.substring(i)", "s.substring(i, j)",
		"s.indexOf(sub)", "s.indexOf(sub, i)",
		"s.lastIndexOf(sub)", "s.lastIndexOf(sub, i)",
	}
}

// stringEnvs returns an environment with ext.Strings() alone and newEnv's, both with the
// variables of stringExprs.
func stringEnvs(t testing.TB) (extEnv, fastEnv *cel.Env) {
	t.Helper()
	vars := []cel.EnvOption{
		cel.Variable("s", cel.StringType), cel.Variable("sub", cel.StringType),
		cel.Variable("i", cel.IntType), cel.Variable("j", cel.IntType),
	}
	extEnv, err := cel.NewEnv(append([]cel.EnvOption{ext.Strings()}, vars...)...)
	if err != nil {
		t.Fatal(err)
	}
	fastEnv, err = newEnv(envRule)
	if err == nil {
		fastEnv, err = fastEnv.Extend(vars...)
	}
	if err != nil {
		t.Fatal(err)
	}
	return extEnv, fastEnv
}

func stringProgram(t testing.TB, env *cel.Env, expr string, opts ...cel.ProgramOption) cel.Program {
	t.Helper()
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("%s: %v", expr, iss.Err())
	}
	prg, err := env.Program(ast, append([]cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}, opts...)...)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return prg
}

// stringPrograms compiles stringExprs in both environments, tracking cost so that it can be
// compared too.
func stringPrograms(t testing.TB) (extPrgs, fastPrgs []cel.Program) {
	t.Helper()
	extEnv, fastEnv := stringEnvs(t)
	for _, expr := range stringExprs() {
		extPrgs = append(extPrgs, stringProgram(t, extEnv, expr, cel.CostLimit(CostLimit)))
		fastPrgs = append(fastPrgs, stringProgram(t, fastEnv, expr, cel.CostLimit(CostLimit)))
	}
	return extPrgs, fastPrgs
}

// compareStrings fails t unless both sets of programs give the same value or error message, and
// the same actual cost, for the inputs.
func compareStrings(t testing.TB, extPrgs, fastPrgs []cel.Program, s, sub string, i, j int64) {
	t.Helper()
	vars := map[string]any{"s": s, "sub": sub, "i": i, "j": j}
	for k, expr := range stringExprs() {
		want, wantDet, wantErr := extPrgs[k].Eval(vars)
		got, gotDet, gotErr := fastPrgs[k].Eval(vars)
		if wantErr != nil || gotErr != nil {
			if wantErr == nil || gotErr == nil || wantErr.Error() != gotErr.Error() {
				t.Errorf("%s with s=%q sub=%q i=%d j=%d: got %v, %v; ext %v, %v", expr, s, sub, i, j, got, gotErr, want, wantErr)
			}
		} else if got.Type() != want.Type() || got.Value() != want.Value() {
			t.Errorf("%s with s=%q sub=%q i=%d j=%d = %#v, ext %#v", expr, s, sub, i, j, got.Value(), want.Value())
		}
		if g, w := gotDet.ActualCost(), wantDet.ActualCost(); g == nil || w == nil || *g != *w {
			t.Errorf("%s with s=%q sub=%q i=%d j=%d: cost %v, ext %v", expr, s, sub, i, j, g, w)
		}
	}
}

// fastStringCases are the strings and needles of the table test and the fuzz seed corpus.
func fastStringCases() (strs, needles []string) {
	strs = []string{
		"", "a", "A", "z", "Z", "~", "tacocat", "TacoCat", "hello mellow", "John.Smith@Fabrikam.Example",
		"@", "a@b@c", "  padded  ", "ÄÖü", "TacoCÆt Xii", "İstanbul", "ǅ", "ﬃ", "K", // Kelvin sign
		"x😀y😀", "😀", "\xff", "a\xffB", "\xe2\x82", "Z\xed\xa0\x80z", "\u00c0\xc0", "\x00A\x7f",
		" \t\r\n", "\u00a0nbsp\u00a0", "\u2003em space\u3000", "\x85next line\x85", "\vtab\f",
	}
	needles = []string{"", "a", "A", "o", "ello", "@", "cat", "tacocat!", "Ö", "😀", "\xff", "\uFFFD", "İ", " "}
	return strs, needles
}

// indexCases are the indices around the ends of s, in code points and in bytes, and extremes.
func indexCases(s string) []int64 {
	n, b := int64(utf8.RuneCountInString(s)), int64(len(s))
	return []int64{math.MinInt64, -2, -1, 0, 1, 2, n - 1, n, n + 1, b - 1, b, b + 1, 1 << 32, math.MaxInt64}
}

func TestFastStringsMatchExt(t *testing.T) {
	extPrgs, fastPrgs := stringPrograms(t)
	strs, needles := fastStringCases()
	for _, s := range strs {
		for _, sub := range needles {
			for _, i := range indexCases(s) {
				for _, j := range indexCases(s) {
					compareStrings(t, extPrgs, fastPrgs, s, sub, i, j)
				}
			}
		}
	}
}

// The declarations are ext.Strings()': the same estimated costs.
func TestFastStringsKeepDeclarations(t *testing.T) {
	extEnv, fastEnv := stringEnvs(t)
	for _, expr := range stringExprs() {
		var est [2]checker.CostEstimate
		for k, env := range []*cel.Env{extEnv, fastEnv} {
			ast, iss := env.Compile(expr)
			if iss.Err() != nil {
				t.Fatalf("%s: %v", expr, iss.Err())
			}
			e, err := env.EstimateCost(ast, sizeEstimator{})
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			est[k] = e
		}
		if est[0] != est[1] {
			t.Errorf("%s: estimated cost %+v, ext %+v", expr, est[1], est[0])
		}
	}
}

// newEnv really calls the fast implementations: they allocate less on ASCII input. The string is
// longer than 32 characters because Go converts shorter ones to []rune on the stack.
func TestFastStringsAreUsed(t *testing.T) {
	extEnv, fastEnv := stringEnvs(t)
	s := strings.Repeat("john.smith.", 4) + "@fabrikam.example"
	vars, _ := interpreter.NewActivation(map[string]any{"s": s, "sub": "@", "i": 3, "j": 4})
	for _, expr := range stringExprs() {
		allocs := func(env *cel.Env) float64 {
			prg := stringProgram(t, env, expr)
			return testing.AllocsPerRun(100, func() {
				if _, _, err := prg.Eval(vars); err != nil {
					t.Fatalf("%s: %v", expr, err)
				}
			})
		}
		if fast, ext := allocs(fastEnv), allocs(extEnv); fast >= ext {
			t.Errorf("%s: %v allocations with fastStrings, %v without", expr, fast, ext)
		}
	}
}

func TestFastStringsNeedsExtStrings(t *testing.T) {
	if _, err := cel.NewEnv(fastStrings()); err == nil {
		t.Error("fastStrings without ext.Strings() gave no error")
	}
	if _, err := cel.NewEnv(fastStrings(), ext.Strings()); err == nil {
		t.Error("fastStrings before ext.Strings() gave no error")
	}
}

func FuzzFastStrings(f *testing.F) {
	strs, needles := fastStringCases()
	for _, s := range strs {
		for _, sub := range needles {
			f.Add(s, sub, int64(1), int64(utf8.RuneCountInString(s)))
		}
		idx := indexCases(s)
		for k := range idx {
			f.Add(s, s, idx[k], idx[len(idx)-1-k])
		}
	}
	extPrgs, fastPrgs := stringPrograms(f)
	f.Fuzz(func(t *testing.T, s, sub string, i, j int64) {
		compareStrings(t, extPrgs, fastPrgs, s, sub, i, j)
	})
}

// BenchmarkStringFunctions compares ext.Strings() alone (ext) with newEnv's fastStrings (fast)
// on typical claims.
func BenchmarkStringFunctions(b *testing.B) {
	const email, lowerEmail = "John.Smith@Fabrikam.example", "john.smith@fabrikam.example"
	const nonASCII = "Jürgen.Müller@Fabrikam.example"
	// Longer than 32 characters, so that ext's []rune is allocated on the heap.
	address := strings.Repeat("One Microsoft Way, ", 10) + "Redmond, WA 98052"
	cases := []struct {
		name, expr, s, sub string
		i, j               int64
	}{
		{"variable", "s", email, "", 0, 0}, // the cost of evaluating anything
		{"lowerAscii", "s.lowerAscii()", email, "", 0, 0},
		{"lowerAscii-unchanged", "s.lowerAscii()", lowerEmail, "", 0, 0},
		{"lowerAscii-nonASCII", "s.lowerAscii()", nonASCII, "", 0, 0},
		{"lowerAscii-long", "s.lowerAscii()", address, "", 0, 0},
		{"upperAscii", "s.upperAscii()", email, "", 0, 0},
		{"substring", "s.substring(i)", email, "", 11, 0},
		{"substring-range", "s.substring(i, j)", email, "", 0, 1},
		{"substring-nonASCII", "s.substring(i)", nonASCII, "", 14, 0},
		{"substring-long", "s.substring(i, j)", address, "", 190, 197},
		{"indexOf", "s.indexOf(sub)", email, "@", 0, 0},
		{"indexOf-offset", "s.indexOf(sub, i)", email, ".", 5, 0},
		{"indexOf-nonASCII", "s.indexOf(sub)", nonASCII, "@", 0, 0},
		{"indexOf-long", "s.indexOf(sub)", address, "WA", 0, 0},
		{"lastIndexOf", "s.lastIndexOf(sub)", email, "@", 0, 0},
		{"lastIndexOf-offset", "s.lastIndexOf(sub, i)", email, ".", 20, 0},
		{"lastIndexOf-long", "s.lastIndexOf(sub)", address, "Way", 0, 0},
		{"trim", "s.trim()", email, "", 0, 0},
		{"trim-spaces", "s.trim()", " " + email + "\t", "", 0, 0},
	}
	extEnv, fastEnv := stringEnvs(b)
	for _, c := range cases {
		vars, _ := interpreter.NewActivation(map[string]any{"s": c.s, "sub": c.sub, "i": c.i, "j": c.j})
		for _, env := range []struct {
			name string
			env  *cel.Env
		}{{"ext", extEnv}, {"fast", fastEnv}} {
			prg := stringProgram(b, env.env, c.expr)
			if _, _, err := prg.Eval(vars); err != nil {
				b.Fatalf("%s: %v", c.expr, err)
			}
			b.Run(c.name+"/"+env.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					prg.Eval(vars)
				}
			})
		}
	}
}
