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

// TestMapLarge checks a map large enough to fill both levels of shards:
// a copy with one key changed or removed leaves the map it came from as
// it was, and Keys returns every key, sorted.
func TestMapLarge(t *testing.T) {
	ref := map[string]int{}
	for i := range 20_000 {
		ref[fmt.Sprintf("svc-%05d", i)] = i
	}
	m := From(ref)
	changed := m.With("svc-00042", -1).Without("svc-19999").With("new", 7)
	if v, ok := m.Get("svc-00042"); !ok || v != 42 {
		t.Fatalf("the original's svc-00042 = %d, %v after a copy changed it", v, ok)
	}
	if _, ok := m.Get("new"); ok || m.Len() != 20_000 {
		t.Fatal("a key added to a copy appeared in the original")
	}
	if v, _ := changed.Get("svc-00042"); v != -1 {
		t.Fatalf("the copy's svc-00042 = %d, want -1", v)
	}
	if _, ok := changed.Get("svc-19999"); ok || changed.Len() != 20_000 {
		t.Fatalf("the copy holds %d keys (svc-19999 removed, new added), want 20000", changed.Len())
	}
	if !maps.Equal(maps.Collect(m.All()), ref) {
		t.Fatal("the original changed")
	}
	keys := m.Keys()
	if len(keys) != 20_000 || keys[0] != "svc-00000" || keys[19_999] != "svc-19999" {
		t.Fatalf("Keys: %d keys from %s to %s", len(keys), keys[0], keys[len(keys)-1])
	}
}
