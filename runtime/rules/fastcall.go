package rules

import (
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
)

// A call of one of fastStrings' overloads goes, in cel-go's plan, through a type guard that asks
// each argument's type whether it is assignable to the declared one (claims are dyn, so the
// checker cannot), and a call with three arguments allocates their slice. Rules call these
// functions a dozen times per request; the guards were 7 % of an evaluation. fastCalls replaces
// those call nodes with nodes that test each argument's Go type and call the implementation.
//
// A replaced node answers as cel-go's node does: like it, it evaluates the arguments in order
// and answers the first error without evaluating the rest (the functions are strict); an
// argument of any other type (the guard's "no such overload", unknowns) goes to cel-go's node,
// which evaluates the arguments again: at most twice the work, and only once per failing call,
// since what it answers is an error that the calls around it pass on. TestFastCallsMatchCEL
// compares both plans. Programs whose cost is tracked keep cel-go's plan.

// argKind is a declared argument or result type of a fast overload.
type argKind int

const (
	argString argKind = iota
	argInt
)

func (k argKind) celType() *cel.Type {
	if k == argInt {
		return cel.IntType
	}
	return cel.StringType
}

// is says whether v is what cel-go's guard accepts for k and what the implementation may assume.
func (k argKind) is(v ref.Val) bool {
	if k == argInt {
		_, ok := v.(types.Int)
		return ok
	}
	_, ok := v.(types.String)
	return ok
}

// fastOverload is one overload of fastStrings: one of unary, binary and ternary is set, for its
// number of arguments (the receiver first), which it may assume are of their kinds.
type fastOverload struct {
	id      string
	args    []argKind
	result  argKind
	unary   func(ref.Val) ref.Val
	binary  func(ref.Val, ref.Val) ref.Val
	ternary func(ref.Val, ref.Val, ref.Val) ref.Val
}

// binding is the overload's implementation for cel-go, behind its guard.
func (o *fastOverload) binding() cel.OverloadOpt {
	switch {
	case o.unary != nil:
		return cel.UnaryBinding(o.unary)
	case o.binary != nil:
		return cel.BinaryBinding(o.binary)
	default:
		return cel.FunctionBinding(func(args ...ref.Val) ref.Val { return o.ternary(args[0], args[1], args[2]) })
	}
}

// fastOverloads indexes fastStringFunctions by overload id. Never written after init.
var fastOverloads = func() map[string]*fastOverload {
	m := map[string]*fastOverload{}
	for _, f := range fastStringFunctions {
		for i := range f.overloads {
			m[f.overloads[i].id] = &f.overloads[i]
		}
	}
	return m
}()

// fastCalls returns the decorator, and counts the nodes it replaces in *n (for tests: a cel-go
// upgrade that plans these calls differently shows up as zero).
func fastCalls(n *int) cel.ProgramOption {
	return cel.CustomDecoratorV2(func(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
		call, ok := i.(interpreter.InterpretableCall)
		if !ok {
			return i, nil
		}
		if _, done := i.(*fastCallNode); done {
			return i, nil
		}
		o := fastOverloads[call.OverloadID()]
		args := call.Args()
		if o == nil || len(args) != len(o.args) {
			return i, nil
		}
		*n++
		return &fastCallNode{InterpretableCall: call, args: args, o: o}, nil
	})
}

type fastCallNode struct {
	interpreter.InterpretableCall // cel-go's plan of the same call
	args                          []interpreter.InterpretableV2
	o                             *fastOverload
}

// Exec implements interpreter.InterpretableV2.
func (n *fastCallNode) Exec(f *interpreter.ExecutionFrame) ref.Val {
	var vals [3]ref.Val
	for i, a := range n.args {
		v := a.Exec(f)
		if types.IsError(v) {
			return v
		}
		if !n.o.args[i].is(v) {
			return n.InterpretableCall.Exec(f)
		}
		vals[i] = v
	}
	var out ref.Val
	switch {
	case n.o.unary != nil:
		out = n.o.unary(vals[0])
	case n.o.binary != nil:
		out = n.o.binary(vals[0], vals[1])
	default:
		out = n.o.ternary(vals[0], vals[1], vals[2])
	}
	return types.LabelErrNode(n.ID(), out)
}

// Eval implements interpreter.Interpretable.
func (n *fastCallNode) Eval(a interpreter.Activation) ref.Val {
	return n.Exec(interpreter.AsFrame(a))
}
