package rules

import (
	"maps"
	"reflect"
	"sync"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// claimsMap is the claims variable of a request: the claims as sent plus, for each extension
// attribute extension_<appid>_<Name>, the alias extension_<Name>, so rules need not hard-code
// the tenant's extensions-app ID (a claim the request sends under the short name wins). It
// answers look-ups (field selection, has(), optional selection, index, in) and size from the
// claims without copying them (copying cost a tenth of a request's allocations), and remembers
// the CEL values of the claims it handed out: rules read the same few claims again and again
// (the benchmark connector reads its 6 claims 15 times), and each read would box a new value.
// Anything else (iteration, equality, conversion) uses a copy, made on first use.
//
// Not safe for concurrent use: all of a request's expressions run on its goroutine (calls
// run concurrently, but their expressions are evaluated before they start).
type claimsMap struct {
	claims  map[string]any
	aliases []alias // one per extension attribute: a few, a scan beats a map
	size    int
	seen    [8]seenClaim
	nseen   int

	fullOnce sync.Once
	fullMap  traits.Mapper
}

type alias struct{ short, full string }

type seenClaim struct {
	name string
	val  ref.Val
}

// newClaimsVal returns the claims variable for claims as sent.
func newClaimsVal(claims map[string]any) ref.Val {
	if claims == nil {
		return emptyMap
	}
	var aliases []alias
	for k := range claims {
		short, ok := extensionAlias(k)
		if !ok {
			continue
		}
		if _, exists := claims[short]; exists {
			continue // a claim the request itself sends under the short name wins
		}
		aliases = append(aliases, alias{short, k})
	}
	return &claimsMap{claims: claims, aliases: aliases, size: len(claims) + len(aliases)}
}

// lookup returns the claim name stands for, by its own name or as an alias.
func (m *claimsMap) lookup(name string) (any, bool) {
	if v, ok := m.claims[name]; ok {
		return v, true
	}
	for _, a := range m.aliases {
		if a.short == name {
			return m.claims[a.full], true
		}
	}
	return nil, false
}

func (m *claimsMap) materialized() traits.Mapper {
	m.fullOnce.Do(func() {
		full := m.claims
		if len(m.aliases) > 0 {
			full = maps.Clone(m.claims)
			for _, a := range m.aliases {
				full[a.short] = m.claims[a.full]
			}
		}
		m.fullMap = types.NewStringInterfaceMap(types.DefaultTypeAdapter, full)
	})
	return m.fullMap
}

// Find implements traits.Mapper.
func (m *claimsMap) Find(key ref.Val) (ref.Val, bool) {
	name, ok := key.(types.String)
	if !ok {
		return m.materialized().Find(key) // CEL's own error for a key that is not a string
	}
	for _, c := range m.seen[:m.nseen] {
		if c.name == string(name) {
			return c.val, true
		}
	}
	raw, found := m.lookup(string(name))
	if !found {
		return nil, false
	}
	val := types.DefaultTypeAdapter.NativeToValue(raw)
	if m.nseen < len(m.seen) {
		m.seen[m.nseen] = seenClaim{string(name), val}
		m.nseen++
	}
	return val, true
}

// Contains implements traits.Container.
func (m *claimsMap) Contains(key ref.Val) ref.Val {
	name, ok := key.(types.String)
	if !ok {
		return m.materialized().Contains(key)
	}
	_, found := m.lookup(string(name))
	return types.Bool(found)
}

// Get implements traits.Indexer.
func (m *claimsMap) Get(key ref.Val) ref.Val {
	if v, found := m.Find(key); found || v != nil {
		return v // the claim, or CEL's error for the key
	}
	return m.materialized().Get(key) // CEL's "no such key" error
}

// IsZeroValue implements traits.Zeroer, as CEL's own maps do.
func (m *claimsMap) IsZeroValue() bool { return m.size == 0 }

// Type implements ref.Val.
func (m *claimsMap) Type() ref.Type { return types.MapType }

// Size implements traits.Sizer.
func (m *claimsMap) Size() ref.Val { return types.Int(m.size) }

// Iterator implements traits.Iterable.
func (m *claimsMap) Iterator() traits.Iterator { return m.materialized().Iterator() }

// Equal implements ref.Val.
func (m *claimsMap) Equal(other ref.Val) ref.Val { return m.materialized().Equal(other) }

// Value implements ref.Val.
func (m *claimsMap) Value() any { return m.materialized().Value() }

// ConvertToNative implements ref.Val.
func (m *claimsMap) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return m.materialized().ConvertToNative(typeDesc)
}

// ConvertToType implements ref.Val.
func (m *claimsMap) ConvertToType(typeVal ref.Type) ref.Val {
	return m.materialized().ConvertToType(typeVal)
}
