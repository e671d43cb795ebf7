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

// shards is the number of shards: with 10,000 keys a shard holds about
// 40, and a copy with one key changed copies 64 pointers and 40 entries.
const shards = 64

// Map is an immutable map. The zero value is empty. With and Without
// return new maps sharing every shard they do not change; a Map is safe
// for concurrent reads.
type Map[V any] struct {
	s   *[shards]map[string]V
	len int
}

// shardOf returns the shard of k (FNV-1a).
func shardOf(k string) int {
	h := uint32(2166136261)
	for i := 0; i < len(k); i++ {
		h ^= uint32(k[i])
		h *= 16777619
	}
	return int(h % shards)
}

// From returns a Map holding m's entries.
func From[V any](m map[string]V) Map[V] {
	var out Map[V]
	if len(m) == 0 {
		return out
	}
	out.s = new([shards]map[string]V)
	for k, v := range m {
		i := shardOf(k)
		if out.s[i] == nil {
			out.s[i] = make(map[string]V)
		}
		out.s[i][k] = v
	}
	out.len = len(m)
	return out
}

// Get returns the value of k.
func (m Map[V]) Get(k string) (V, bool) {
	if m.s == nil {
		var zero V
		return zero, false
	}
	v, ok := m.s[shardOf(k)][k]
	return v, ok
}

// Len returns the number of entries.
func (m Map[V]) Len() int { return m.len }

// With returns m with k set to v.
func (m Map[V]) With(k string, v V) Map[V] {
	out := m.copyShard(k)
	sh := out.s[shardOf(k)]
	if _, ok := sh[k]; !ok {
		out.len++
	}
	sh[k] = v
	return out
}

// Without returns m without k.
func (m Map[V]) Without(k string) Map[V] {
	if _, ok := m.Get(k); !ok {
		return m
	}
	out := m.copyShard(k)
	delete(out.s[shardOf(k)], k)
	out.len--
	return out
}

// copyShard returns m with the shard of k copied, ready to change.
func (m Map[V]) copyShard(k string) Map[V] {
	out := Map[V]{s: new([shards]map[string]V), len: m.len}
	if m.s != nil {
		*out.s = *m.s
	}
	i := shardOf(k)
	out.s[i] = maps.Clone(out.s[i])
	if out.s[i] == nil {
		out.s[i] = make(map[string]V, 1)
	}
	return out
}

// All yields every entry, in no particular order.
func (m Map[V]) All() iter.Seq2[string, V] {
	return func(yield func(string, V) bool) {
		if m.s == nil {
			return
		}
		for _, sh := range m.s {
			for k, v := range sh {
				if !yield(k, v) {
					return
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
