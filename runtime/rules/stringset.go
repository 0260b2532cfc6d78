package rules

import (
	"fmt"
	"hash/maphash"
	"math/bits"
	"reflect"
	"strings"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// stringSet is a CEL list(string) whose `in` is a hash look-up instead of a scan, so
// `claims.email in lists.allowed` stays O(1) for lists with thousands of entries.
//
// It holds no pointer per entry: the entries are one string, their ends one []uint32, and the
// hash table one []uint32 of entry numbers. A Go map and a []string of the entries gave the
// collector two pointers per entry to follow on every cycle, for as long as the connector is
// served: with the benchmark's 5 000-entry list that was ~100 µs of each cycle's ~630 µs
// (BenchmarkCollectWithList), and on one CPU a cycle delays the requests that arrive during it.
//
// Index and size are answered from the arrays. The operations rules rarely apply to a whole
// list (equality, concatenation, iteration, conversion) build an ordinary CEL list for the
// call and answer what it answers, so the semantics are cel-go's own.
type stringSet struct {
	data  string   // the entries, concatenated
	ends  []uint32 // ends[i] is where entry i ends in data; it starts where entry i-1 ends
	slots []uint32 // open addressing, linear probing: 1 + an entry's index, 0 when free
	seed  maphash.Seed
}

var _ traits.Lister = (*stringSet)(nil)

// newStringSet copies values into the set. Their total size fits in uint32: a list comes from
// the APIConnector or a ConfigMap, both bounded by the API server's object size (~1.5 MiB).
func newStringSet(values []string) *stringSet {
	var b strings.Builder
	n := 0
	for _, v := range values {
		n += len(v)
	}
	b.Grow(n)
	s := &stringSet{ends: make([]uint32, len(values)), seed: maphash.MakeSeed()}
	for i, v := range values {
		b.WriteString(v)
		s.ends[i] = uint32(b.Len())
	}
	s.data = b.String()
	// At most half full, so a miss ends after a few probes.
	s.slots = make([]uint32, 1<<bits.Len(uint(2*len(values))))
	for i := range values {
		if j, found := s.find(s.entry(i)); !found {
			s.slots[j] = uint32(i) + 1
		}
	}
	return s
}

func (s *stringSet) entry(i int) string {
	start := uint32(0)
	if i > 0 {
		start = s.ends[i-1]
	}
	return s.data[start:s.ends[i]]
}

// find returns the slot holding v, or the free slot where v would go.
func (s *stringSet) find(v string) (slot uint64, found bool) {
	mask := uint64(len(s.slots) - 1)
	for j := maphash.String(s.seed, v) & mask; ; j = (j + 1) & mask {
		e := s.slots[j]
		if e == 0 {
			return j, false
		}
		if s.entry(int(e-1)) == v {
			return j, true
		}
	}
}

func (s *stringSet) values() []string {
	out := make([]string, len(s.ends))
	for i := range out {
		out[i] = s.entry(i)
	}
	return out
}

// list is the ordinary CEL list of the same entries.
func (s *stringSet) list() traits.Lister {
	return types.NewStringList(types.DefaultTypeAdapter, s.values())
}

// Contains implements traits.Container.
func (s *stringSet) Contains(v ref.Val) ref.Val {
	str, ok := v.(types.String)
	if !ok {
		// Not a string: CEL's own (heterogeneous) semantics.
		return s.list().Contains(v)
	}
	_, found := s.find(string(str))
	return types.Bool(found)
}

// Get implements traits.Indexer.
func (s *stringSet) Get(index ref.Val) ref.Val {
	if i, ok := index.(types.Int); ok && i >= 0 && int64(i) < int64(len(s.ends)) {
		return types.String(s.entry(int(i)))
	}
	return s.list().Get(index) // other index types and the out-of-range error
}

// Size implements traits.Sizer.
func (s *stringSet) Size() ref.Val { return types.Int(len(s.ends)) }

// IsZeroValue implements traits.Zeroer, as CEL's lists do (optional.ofNonZeroValue).
func (s *stringSet) IsZeroValue() bool { return len(s.ends) == 0 }

func (s *stringSet) Add(other ref.Val) ref.Val        { return s.list().Add(other) }
func (s *stringSet) Iterator() traits.Iterator        { return s.list().Iterator() }
func (s *stringSet) Equal(other ref.Val) ref.Val      { return s.list().Equal(other) }
func (s *stringSet) ConvertToType(t ref.Type) ref.Val { return s.list().ConvertToType(t) }
func (s *stringSet) Type() ref.Type                   { return types.ListType }
func (s *stringSet) Value() any                       { return s.values() }

func (s *stringSet) ConvertToNative(t reflect.Type) (any, error) {
	return s.list().ConvertToNative(t)
}

// String formats like CEL's lists.
func (s *stringSet) String() string { return fmt.Sprint(s.list()) }
