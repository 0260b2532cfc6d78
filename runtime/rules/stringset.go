package rules

import (
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// stringSet is a CEL list(string) whose `in` is a map look-up instead of a scan, so
// `claims.email in lists.allowed` stays O(1) for lists with thousands of entries. Everything else
// is the ordinary CEL list's.
type stringSet struct {
	traits.Lister
	set map[string]struct{}
}

func newStringSet(values []string) *stringSet {
	set := make(map[string]struct{}, len(values))
	for _, v := range values {
		set[v] = struct{}{}
	}
	return &stringSet{Lister: types.NewStringList(types.DefaultTypeAdapter, values), set: set}
}

// Contains implements traits.Container.
func (s *stringSet) Contains(v ref.Val) ref.Val {
	if str, ok := v.(types.String); ok {
		_, found := s.set[string(str)]
		return types.Bool(found)
	}
	return s.Lister.Contains(v) // CEL's own (heterogeneous) semantics
}

// IsZeroValue implements traits.Zeroer, as CEL's lists do (optional.ofNonZeroValue).
func (s *stringSet) IsZeroValue() bool { return s.Size() == types.IntZero }
