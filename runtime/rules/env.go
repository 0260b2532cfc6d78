package rules

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// Limits on what expressions may cost, the pair the Kubernetes API server uses for CRD
// validation rules. The estimate is a static upper bound computed at compile time from the size
// bounds below; the runtime limit is tracked during every evaluation of every expression and stops
// one that costs more than that, whatever its estimate (claims larger than assumed, or a shape the
// estimator underrates), and the connector's failure policy answers.
const (
	// MaxEstimatedCost is the ceiling on an expression's estimated worst-case cost.
	MaxEstimatedCost uint64 = 10_000_000
	// CostLimit is the actual cost at which one evaluation of an expression is stopped.
	CostLimit uint64 = 1_000_000
	// MaxListEntries bounds a list's size (inline values or resolved from a ConfigMap).
	MaxListEntries = 10_000
	// MaxStringSize is the size assumed for strings of unknown size (claims, call bodies) when
	// estimating cost. The longest Entra user attribute (streetAddress) holds 1024 characters;
	// custom attributes hold 256. A longer value at request time is still bounded by CostLimit.
	MaxStringSize = 1024
	// maxCollectionSize is the size assumed for maps and lists of unknown size other than lists.*.
	maxCollectionSize = 256
	// interruptCheckFrequency is how many comprehension iterations run between checks of the
	// context, so the request's deadline stops a long evaluation promptly.
	interruptCheckFrequency = 100
)

// envKind selects the variables in scope: calls cannot see calls (they run concurrently), rules
// and claims see calls, events also see the decision.
type envKind int

const (
	envCall envKind = iota
	envRule
	envEvent
)

// environments are built once per process, as the Kubernetes API server does: they depend on
// nothing a connector sets.
var environments = sync.OnceValues(func() ([3]*cel.Env, error) {
	var envs [3]*cel.Env
	for _, kind := range []envKind{envCall, envRule, envEvent} {
		env, err := newEnv(kind)
		if err != nil {
			return envs, err
		}
		envs[kind] = env
	}
	return envs, nil
})

func newEnv(kind envKind) (*cel.Env, error) {
	dyn := cel.DynType
	opts := []cel.EnvOption{
		cel.Variable("claims", cel.MapType(cel.StringType, dyn)),
		cel.Variable("request", cel.MapType(cel.StringType, dyn)),
		cel.Variable("identity", cel.MapType(cel.StringType, dyn)),
		cel.Variable("lists", cel.MapType(cel.StringType, cel.ListType(cel.StringType))),
		// authenticationContext of custom authentication extension requests; {} at legacy steps.
		cel.Variable("context", cel.MapType(cel.StringType, dyn)),
		cel.OptionalTypes(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		ext.Strings(),
		ext.Lists(),
		ext.Sets(),
		ext.Encoders(),
		ext.Bindings(),
	}
	if kind == envCall {
		// What a request carries that only calls may see (otp at OnOtpSend): declared for calls
		// only, so rules, claims and events cannot read it; the compiler refuses it at other steps.
		for _, name := range sensitiveVariables() {
			opts = append(opts, cel.Variable(name, cel.MapType(cel.StringType, cel.StringType)))
		}
	}
	if kind >= envRule {
		opts = append(opts, cel.Variable("calls", cel.MapType(cel.StringType, cel.MapType(cel.StringType, dyn))))
	}
	if kind == envEvent {
		opts = append(opts, cel.Variable("decision", cel.MapType(cel.StringType, dyn)))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("build CEL environment: %w", err)
	}
	return env, nil
}

// sensitiveVariables are the steps' sensitive variable names (v1alpha1.Step.SensitiveVariable).
func sensitiveVariables() []string {
	var names []string
	for _, s := range v1alpha1.Steps {
		if n := s.SensitiveVariable(); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// sizeEstimator bounds the sizes CEL cannot know, so EstimateCost gives a finite worst case:
// values read from the request's variables (claims.x, calls.x.body.y, lists.x), comprehension
// variables and results of calls CEL has no size for. It leaves the variables of cel.bind to
// cel-go, which sizes them from what they were bound to, so a chain that doubles a string is
// estimated as doing so.
type sizeEstimator struct {
	bound map[string]bool // names cel.bind introduces in the expression
}

func newSizeEstimator(ast *cel.Ast) sizeEstimator {
	bound := map[string]bool{}
	celast.PostOrderVisit(ast.NativeRep().Expr(), celast.NewExprVisitor(func(x celast.Expr) {
		// cel.bind(v, init, body) is a comprehension over no elements whose accumulator is v.
		if x.Kind() == celast.ComprehensionKind && x.AsComprehension().IterVar() == "#unused" {
			bound[x.AsComprehension().AccuVar()] = true
		}
	}))
	return sizeEstimator{bound: bound}
}

func (e sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if n.Expr().Kind() == celast.IdentKind && e.bound[n.Expr().AsIdent()] {
		return nil
	}
	p := n.Path()
	if len(p) == 2 && p[0] == "lists" {
		return &checker.SizeEstimate{Min: 0, Max: MaxListEntries}
	}
	switch n.Type().Kind() {
	case types.ListKind, types.MapKind:
		return &checker.SizeEstimate{Min: 0, Max: maxCollectionSize}
	}
	// Strings, bytes, and dyn values (claims.x, calls.x.body.y) which may be either.
	return &checker.SizeEstimate{Min: 0, Max: MaxStringSize}
}

func (e sizeEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}

// actualCost prices, at run time, calls that build a string, bytes, list or map by the size of
// what they built (a tenth of a unit per element, cel-go's factor for strings), where cel-go's
// tracker has no price: an overload chosen at run time because an operand is dyn (claims are),
// such as claims.x + claims.x, would otherwise cost one unit whatever it allocated. Calls with a
// price of their own (typed overloads, the string extension's) keep it.
type actualCost struct{}

func (actualCost) CallCost(function, overloadID string, args []ref.Val, result ref.Val) *uint64 {
	if overloadID != "" {
		return nil
	}
	sized, ok := result.(traits.Sizer)
	if !ok {
		return nil
	}
	n, ok := sized.Size().(types.Int)
	if !ok || n < 0 {
		return nil
	}
	cost := 1 + uint64(math.Ceil(float64(n)*common.StringTraversalCostFactor))
	return &cost
}
