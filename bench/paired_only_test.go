package bench

import (
	"testing"
)

// TestPairedOnly checks PAIRED_ONLY as BenchmarkPaired* reads it: the
// variants named are timed and reported against the baseline (the first
// variant, bare), which is always kept, so that "what it adds" stays what
// it adds to bare; a name that matches no variant fails the benchmark
// rather than silently measuring less.
func TestPairedOnly(t *testing.T) {
	run := func(only string) (testing.BenchmarkResult, map[string]int) {
		t.Setenv("PAIRED_ONLY", only)
		calls := map[string]int{}
		v := func(name string) *pairedVariant {
			return &pairedVariant{name: name, call: func() error { calls[name]++; return nil }}
		}
		return testing.Benchmark(func(b *testing.B) {
			paired(b, []*pairedVariant{v("bare"), v("floor-full"), v("lightmesh-full")})
		}), calls
	}

	r, calls := run("lightmesh-full,floor-full")
	for _, name := range []string{"bare-µs", "floor-full-added-µs", "lightmesh-full-added-µs"} {
		if _, ok := r.Extra[name]; !ok {
			t.Errorf("PAIRED_ONLY=lightmesh-full,floor-full reported %v, want %s", r.Extra, name)
		}
	}

	r, calls = run("lightmesh-full")
	if _, ok := r.Extra["bare-µs"]; !ok {
		t.Errorf("PAIRED_ONLY=lightmesh-full reported %v, want bare-µs and lightmesh-full-added-µs", r.Extra)
	}
	if _, ok := r.Extra["lightmesh-full-added-µs"]; !ok {
		t.Errorf("PAIRED_ONLY=lightmesh-full reported %v, want lightmesh-full-added-µs", r.Extra)
	}
	if calls["floor-full"] != 0 {
		t.Errorf("PAIRED_ONLY=lightmesh-full called floor-full %d times", calls["floor-full"])
	}

	if r, _ := run("bare,lightmesh-ful"); r.N != 0 {
		t.Errorf("PAIRED_ONLY naming no variant (lightmesh-ful) ran %d iterations, reporting %v; want the benchmark to fail", r.N, r.Extra)
	}
}
