package engine

import (
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/router"
)

// BenchmarkShedAdmit is the adaptive inbound limit's decision and
// release for one request: it must not allocate.
func BenchmarkShedAdmit(b *testing.B) {
	p := &router.ShedPolicy{Tolerance: 1.5, InitialLimit: 1 << 20, MinLimit: 4, MaxLimit: 1 << 20, Window: 100 * time.Millisecond}
	s := NewShedder()
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !s.Admit(p) {
				b.Fatal("shed under no load")
			}
			s.Release(p, time.Millisecond, now)
		}
	})
}

// TestShedAdmitAllocates nothing: the decision runs on every request.
func TestShedAdmitAllocatesNothing(t *testing.T) {
	p := &router.ShedPolicy{Tolerance: 1.5, InitialLimit: 100, MinLimit: 4, MaxLimit: 1000, Window: 100 * time.Millisecond}
	s := NewShedder()
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		if s.Admit(p) {
			s.Release(p, time.Millisecond, now)
		}
	}); n != 0 {
		t.Errorf("Admit+Release allocates %v times", n)
	}
}
