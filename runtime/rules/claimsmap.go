package rules

import (
	"fmt"
	"maps"
	"reflect"
	"strings"
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
	lazyMap
	claims map[string]any
	// aliases are found on first need: a look-up of an extension_ name the request does not
	// send, size, or a copy. Most requests need none, and finding them walks the whole map.
	aliases     []alias
	aliasBuf    [2]alias
	aliasesDone bool
	seen        [8]seenClaim
	nseen       int
}

// alias is extension_<rest> for the claim full (extension_<appid>_<rest>).
type alias struct{ rest, full string }

type seenClaim struct {
	name string
	val  ref.Val
}

// init makes m the claims variable for claims as sent and returns it (the empty map for no
// claims); a request's vars hold m rather than allocating it apart.
func (m *claimsMap) init(claims map[string]any) ref.Val {
	if claims == nil {
		return emptyMap
	}
	m.claims = claims
	m.lazyMap = lazyMap{src: m}
	return m
}

// extensionAliases lists the aliases, one per short name: a claim the request itself sends
// under the short name wins, and of two apps' attributes of the same name (Entra sends one
// extensions app's, so this is for determinism only) the smaller full name.
func (m *claimsMap) extensionAliases() []alias {
	if m.aliasesDone {
		return m.aliases
	}
	m.aliasesDone = true
	aliases := m.aliasBuf[:0]
next:
	for k := range m.claims {
		rest, ok := extensionRest(k)
		if !ok {
			continue
		}
		if _, exists := m.claims[extensionPrefix+rest]; exists {
			continue
		}
		for i, a := range aliases {
			if a.rest == rest {
				if k < a.full {
					aliases[i].full = k
				}
				continue next
			}
		}
		aliases = append(aliases, alias{rest, k})
	}
	m.aliases = aliases
	return aliases
}

// lookup returns the claim name stands for, by its own name or as an alias.
func (m *claimsMap) lookup(name string) (any, bool) {
	if v, ok := m.claims[name]; ok {
		return v, true
	}
	rest, ok := strings.CutPrefix(name, extensionPrefix)
	if !ok {
		return nil, false
	}
	for _, a := range m.extensionAliases() {
		if a.rest == rest {
			return m.claims[a.full], true
		}
	}
	return nil, false
}

func (m *claimsMap) len() int { return len(m.claims) + len(m.extensionAliases()) }

func (m *claimsMap) asMap() map[string]any {
	aliases := m.extensionAliases()
	if len(aliases) == 0 {
		return m.claims
	}
	full := maps.Clone(m.claims)
	for _, a := range aliases {
		full[extensionPrefix+a.rest] = m.claims[a.full]
	}
	return full
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

// lazyMap is what claimsMap and fieldsMap share: Get and Contains through their Find, size, and
// everything else (iteration, equality, conversion) from an ordinary CEL map of the same entries,
// built on first use. Few expressions need that, so most requests never build it.
type lazyMap struct {
	src interface {
		Find(ref.Val) (ref.Val, bool)
		len() int
		asMap() map[string]any
	}

	fullOnce sync.Once
	fullMap  traits.Mapper
}

func (l *lazyMap) materialized() traits.Mapper {
	l.fullOnce.Do(func() { l.fullMap = types.NewStringInterfaceMap(types.DefaultTypeAdapter, l.src.asMap()) })
	return l.fullMap
}

// Contains implements traits.Container.
func (l *lazyMap) Contains(key ref.Val) ref.Val {
	if _, ok := key.(types.String); !ok {
		return l.materialized().Contains(key)
	}
	_, found := l.src.Find(key)
	return types.Bool(found)
}

// Get implements traits.Indexer.
func (l *lazyMap) Get(key ref.Val) ref.Val {
	if v, found := l.src.Find(key); found || v != nil {
		return v // the value, or CEL's error for the key
	}
	return l.materialized().Get(key) // CEL's "no such key" error
}

// IsZeroValue implements traits.Zeroer, as CEL's own maps do.
func (l *lazyMap) IsZeroValue() bool { return l.src.len() == 0 }

// Type implements ref.Val.
func (l *lazyMap) Type() ref.Type { return types.MapType }

// Size implements traits.Sizer.
func (l *lazyMap) Size() ref.Val { return types.Int(l.src.len()) }

// Iterator implements traits.Iterable.
func (l *lazyMap) Iterator() traits.Iterator { return l.materialized().Iterator() }

// Equal implements ref.Val.
func (l *lazyMap) Equal(other ref.Val) ref.Val { return l.materialized().Equal(other) }

// Value implements ref.Val.
func (l *lazyMap) Value() any { return l.materialized().Value() }

// ConvertToNative implements ref.Val.
func (l *lazyMap) ConvertToNative(typeDesc reflect.Type) (any, error) {
	return l.materialized().ConvertToNative(typeDesc)
}

// String prints the map as CEL's own maps do (in messages and debug output).
func (l *lazyMap) String() string { return fmt.Sprint(l.materialized()) }

// ConvertToType implements ref.Val.
func (l *lazyMap) ConvertToType(typeVal ref.Type) ref.Val {
	return l.materialized().ConvertToType(typeVal)
}

// fieldsMap is a CEL map of a few strings known when it is made: the request variable (step,
// clientId, uiLocales). Building a Go map and a CEL map of it for every request cost more than
// reading from it.
type fieldsMap struct {
	lazyMap
	fields []field
	buf    [3]field
}

type field struct{ name, val string }

// init makes m the map of fields and returns it, as claimsMap.init does.
func (m *fieldsMap) init(fields ...field) *fieldsMap {
	m.fields = append(m.buf[:0], fields...)
	m.lazyMap = lazyMap{src: m}
	return m
}

func (m *fieldsMap) len() int { return len(m.fields) }

func (m *fieldsMap) asMap() map[string]any {
	out := make(map[string]any, len(m.fields))
	for _, f := range m.fields {
		out[f.name] = f.val
	}
	return out
}

// Find implements traits.Mapper.
func (m *fieldsMap) Find(key ref.Val) (ref.Val, bool) {
	name, ok := key.(types.String)
	if !ok {
		return m.materialized().Find(key) // CEL's own error for a key that is not a string
	}
	for _, f := range m.fields {
		if f.name == string(name) {
			return types.String(f.val), true
		}
	}
	return nil, false
}
