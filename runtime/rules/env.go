package rules

import (
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
)

// Limits on what expressions may cost. The estimate is a static upper bound computed at compile
// time from the size bounds below; the runtime limit stops an expression that is more expensive
// than estimated (for example because a claim is larger than assumed). The pair matches what the
// Kubernetes API server uses for CRD validation rules (static 1e7 per rule, 1e6 per call).
const (
	// MaxEstimatedCost is the ceiling on an expression's estimated worst-case cost.
	MaxEstimatedCost uint64 = 10_000_000
	// CostLimit is the actual cost at which one evaluation of an expression is aborted.
	CostLimit uint64 = 1_000_000
	// UntrackedCostCeiling is the estimated cost up to which an expression is evaluated without
	// tracking its actual cost (see compile); above it, CostLimit applies.
	UntrackedCostCeiling uint64 = 100_000
	// MaxListEntries bounds a list's size (inline values or resolved from a ConfigMap).
	MaxListEntries = 10_000
	// MaxStringSize is the size assumed for strings of unknown size (claims, call bodies) when
	// estimating cost. The longest Entra user attribute (streetAddress) holds 1024 characters;
	// custom attributes hold 256. A longer value at request time is still bounded by CostLimit.
	MaxStringSize = 1024
	// maxCollectionSize is the size assumed for maps and lists of unknown size other than lists.*.
	maxCollectionSize = 256
	// interruptCheckFrequency is how many comprehension iterations run between checks of the
	// context, so a deadline stops a long evaluation promptly.
	interruptCheckFrequency = 100
	// deadlineCheckCost is how much estimated cost of loop-free expressions may run between
	// checks of the deadline (vars.checkDeadline).
	deadlineCheckCost = 10_000
)

// envKind selects the variables in scope: calls cannot see calls (they run concurrently), rules
// and claims see calls, events also see the decision.
type envKind int

const (
	envCall envKind = iota
	envRule
	envEvent
)

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
		// Same functions without converting ASCII strings to []rune on every call (hot path).
		fastStrings(),
		ext.Lists(),
		ext.Sets(),
		ext.Encoders(),
		ext.Bindings(),
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

// sizeEstimator bounds the sizes CEL cannot know, so EstimateCost gives a finite worst case.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if p := n.Path(); len(p) == 2 && p[0] == "lists" {
		return &checker.SizeEstimate{Min: 0, Max: MaxListEntries}
	}
	switch n.Type().Kind() {
	case types.ListKind, types.MapKind:
		return &checker.SizeEstimate{Min: 0, Max: maxCollectionSize}
	}
	// Strings, bytes, and dyn values (claims.x, calls.x.body.y) which may be either.
	return &checker.SizeEstimate{Min: 0, Max: MaxStringSize}
}

func (sizeEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}
