package shardmap

import (
	"fmt"
	"maps"
	"testing"
)

func TestMap(t *testing.T) {
	ref := map[string]int{}
	var m Map[int]
	if _, ok := m.Get("x"); ok || m.Len() != 0 || len(m.Keys()) != 0 {
		t.Fatal("zero Map not empty")
	}
	var olds []Map[int]
	var refs []map[string]int
	for i := range 500 {
		k := fmt.Sprintf("k%d", i%300)
		if i%7 == 0 {
			m = m.Without(k)
			delete(ref, k)
		} else {
			m = m.With(k, i)
			ref[k] = i
		}
		olds, refs = append(olds, m), append(refs, maps.Clone(ref))
	}
	// Every version still holds exactly what it held: nothing is shared
	// that a later version changed.
	for i, old := range olds {
		got := maps.Collect(old.All())
		if !maps.Equal(got, refs[i]) || old.Len() != len(refs[i]) {
			t.Fatalf("version %d holds %d entries, want %d", i, len(got), len(refs[i]))
		}
	}
	if f := From(ref); !maps.Equal(maps.Collect(f.All()), ref) || f.Len() != len(ref) {
		t.Fatal("From lost entries")
	}
}
