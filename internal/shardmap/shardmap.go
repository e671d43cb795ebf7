// Package shardmap is an immutable string-keyed map split into shards, so
// that a copy with one key changed costs one shard's copy rather than the
// whole map's: the routing State, rebuilt on every instance change, stays
// cheap to update with tens of thousands of services.
package shardmap

import (
	"iter"
	"maps"
	"slices"
)

// fanout is the width of each of the two levels of shards: 4,096 leaf
// maps in 64 groups. A copy with one key changed copies the top level's
// 64 pointers, one group's 64 and one leaf map: with 100,000 keys a leaf
// holds about 25 entries. One level of 64 shards made that copy grow with
// the number of keys (1,560 entries a shard at 100,000 keys).
const fanout = 64

// group is one top-level shard: fanout leaf maps.
type group[V any] [fanout]map[string]V

// Map is an immutable map. The zero value is empty. With and Without
// return new maps sharing every group and leaf they do not change; a Map
// is safe for concurrent reads.
type Map[V any] struct {
	s   *[fanout]*group[V]
	len int
}

// hashOf returns the FNV-1a hash of k.
func hashOf(k string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return h
}

// shardOf returns the group and the leaf of k: the hash's top six bits
// (FNV-1a mixes its high bits best) and its low six.
func shardOf(k string) (g, leaf int) {
	h := hashOf(k)
	return int(h >> 26), int(h % fanout)
}

// From returns a Map holding m's entries.
func From[V any](m map[string]V) Map[V] {
	var out Map[V]
	if len(m) == 0 {
		return out
	}
	out.s = new([fanout]*group[V])
	for k, v := range m {
		g, l := shardOf(k)
		if out.s[g] == nil {
			out.s[g] = new(group[V])
		}
		if out.s[g][l] == nil {
			out.s[g][l] = make(map[string]V)
		}
		out.s[g][l][k] = v
	}
	out.len = len(m)
	return out
}

// Get returns the value of k.
func (m Map[V]) Get(k string) (V, bool) {
	if m.s != nil {
		g, l := shardOf(k)
		if grp := m.s[g]; grp != nil {
			v, ok := grp[l][k]
			return v, ok
		}
	}
	var zero V
	return zero, false
}

// Len returns the number of entries.
func (m Map[V]) Len() int { return m.len }

// With returns m with k set to v.
func (m Map[V]) With(k string, v V) Map[V] {
	out, leaf := m.copyLeaf(k)
	if _, ok := leaf[k]; !ok {
		out.len++
	}
	leaf[k] = v
	return out
}

// Without returns m without k.
func (m Map[V]) Without(k string) Map[V] {
	if _, ok := m.Get(k); !ok {
		return m
	}
	out, leaf := m.copyLeaf(k)
	delete(leaf, k)
	out.len--
	return out
}

// copyLeaf returns m with the path to k's leaf copied (the top level, the
// group and the leaf map), and that leaf, ready to change.
func (m Map[V]) copyLeaf(k string) (Map[V], map[string]V) {
	out := Map[V]{s: new([fanout]*group[V]), len: m.len}
	if m.s != nil {
		*out.s = *m.s
	}
	g, l := shardOf(k)
	grp := new(group[V])
	if out.s[g] != nil {
		*grp = *out.s[g]
	}
	out.s[g] = grp
	grp[l] = maps.Clone(grp[l])
	if grp[l] == nil {
		grp[l] = make(map[string]V, 1)
	}
	return out, grp[l]
}

// All yields every entry, in no particular order.
func (m Map[V]) All() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		if m.s == nil {
			return
		}
		for _, grp := range m.s {
			if grp == nil {
				continue
			}
			for _, leaf := range grp {
				for k, v := range leaf {
					if !yield(k, v) {
						return
					}
				}
			}
		}
	}
}

// Keys returns the keys, sorted.
func (m Map[V]) Keys() []string {
	keys := make([]string, 0, m.len)
	for k := range m.All() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
