package rules

import (
	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// Reading a field of a request variable (claims.email, has(claims.postalCode),
// claims.?displayName.orValue('')) is what rules do most: the benchmark connector does it 25
// times per request. cel-go resolves each such read as an attribute (the variable by name, then
// a qualifier through several interfaces), which was a fifth of an evaluation. fieldReads
// replaces the plan nodes of those four shapes with nodes that ask the request's vars directly.
//
// A replaced node keeps the node cel-go planned and hands it everything but the plain case: an
// activation other than the request's own vars (inside a comprehension or cel.bind, where a
// local variable may shadow the name), a missing key where the read is not a presence test or
// optional (so errors are cel-go's own, word for word), and a map that answers an error. The
// plain case returns what cel-go's path returns, the same ref.Val from the same Find.
// TestFieldReadsMatchCEL compares both on every shape, present, absent and shadowed.
//
// Programs whose cost is tracked are left alone: cost tracking counts attribute reads.

// fieldRead is one replaceable node, found in the checked AST by expression id.
type fieldRead struct {
	kind     fieldReadKind
	variable string
	key      ref.Val // a types.String, boxed once here rather than on every read
	def      ref.Val // orValue's constant argument
}

type fieldReadKind int

const (
	readGet     fieldReadKind = iota // v.f
	readHas                          // has(v.f)
	readOpt                          // v.?f
	readOrValue                      // v.?f.orValue(constant)
)

// fieldReads returns the decorator for the program of a, and how many nodes it can replace
// (for tests: a cel-go upgrade that plans these shapes differently shows up as zero).
func fieldReads(a *cel.Ast) (cel.ProgramOption, int) {
	native := a.NativeRep()
	// isVar: an identifier the checker resolved to one of the request's variables.
	isVar := func(x celast.Expr) (string, bool) {
		if x.Kind() != celast.IdentKind {
			return "", false
		}
		ref := native.ReferenceMap()[x.ID()]
		if ref == nil || ref.Value != nil || ref.Name != x.AsIdent() {
			return "", false
		}
		switch ref.Name {
		case "claims", "request", "identity", "lists", "context", "calls", "decision":
			return ref.Name, true
		}
		return "", false
	}
	optSelect := func(x celast.Expr) (fieldRead, bool) {
		if x.Kind() != celast.CallKind || x.AsCall().FunctionName() != operators.OptSelect || len(x.AsCall().Args()) != 2 {
			return fieldRead{}, false
		}
		args := x.AsCall().Args()
		name, ok := isVar(args[0])
		if !ok || args[1].Kind() != celast.LiteralKind {
			return fieldRead{}, false
		}
		key, ok := args[1].AsLiteral().(types.String)
		return fieldRead{kind: readOpt, variable: name, key: key}, ok
	}
	reads := map[int64]fieldRead{}
	celast.PostOrderVisit(native.Expr(), celast.NewExprVisitor(func(x celast.Expr) {
		switch x.Kind() {
		case celast.SelectKind:
			sel := x.AsSelect()
			if name, ok := isVar(sel.Operand()); ok {
				kind := readGet
				if sel.IsTestOnly() {
					kind = readHas
				}
				reads[x.ID()] = fieldRead{kind: kind, variable: name, key: types.String(sel.FieldName())}
			}
		case celast.CallKind:
			if r, ok := optSelect(x); ok {
				reads[x.ID()] = r
				return
			}
			call := x.AsCall()
			if call.FunctionName() != "orValue" || !call.IsMemberFunction() || len(call.Args()) != 1 || call.Args()[0].Kind() != celast.LiteralKind {
				return
			}
			if r, ok := optSelect(call.Target()); ok {
				r.kind, r.def = readOrValue, call.Args()[0].AsLiteral()
				reads[x.ID()] = r
				delete(reads, call.Target().ID()) // only cel-go's fallback evaluates it
			}
		}
	}))
	n := len(reads)
	dec := func(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
		// Once: the planner decorates again, under the same id, the attribute it builds to
		// select from this node's value (claims.email.x), and that one must stay an attribute.
		if r, ok := reads[i.ID()]; ok {
			delete(reads, i.ID())
			return &fieldReadNode{InterpretableV2: i, fieldRead: r}, nil
		}
		return i, nil
	}
	return cel.CustomDecoratorV2(dec), n
}

type fieldReadNode struct {
	interpreter.InterpretableV2 // cel-go's plan of the same expression
	fieldRead
}

// Exec implements interpreter.InterpretableV2.
func (n *fieldReadNode) Exec(f *interpreter.ExecutionFrame) ref.Val {
	if v, ok := f.Activation.(*vars); ok {
		if m, ok := v.variable(n.variable).(traits.Mapper); ok {
			val, found := m.Find(n.key)
			if !types.IsError(val) && !types.IsUnknown(val) {
				switch {
				case n.kind == readHas:
					return types.Bool(found)
				case !found && n.kind == readOpt:
					return types.OptionalNone
				case !found && n.kind == readOrValue:
					return n.def
				case found && n.kind == readOpt:
					return types.OptionalOf(val)
				case found:
					return val
				}
			}
		}
	}
	return n.InterpretableV2.Exec(f)
}

// Eval implements interpreter.Interpretable.
func (n *fieldReadNode) Eval(a interpreter.Activation) ref.Val {
	return n.Exec(interpreter.AsFrame(a))
}

// variable is the value of one of the request's variables, nil for a name it does not have.
func (v *vars) variable(name string) ref.Val {
	out, _ := v.ResolveName(name)
	val, _ := out.(ref.Val)
	return val
}
