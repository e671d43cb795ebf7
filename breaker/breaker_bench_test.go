package breaker

import (
	"testing"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"
)

var sink int

// rawGobreaker builds a gobreaker configured like New(Settings{}) does,
// with equivalent hooks, as the baseline for BenchmarkDo.
func rawGobreaker() *gobreaker.CircuitBreaker[struct{}] {
	s := Settings{}.WithDefaults()
	bucket := s.Window / 10
	return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         "raw",
		MaxRequests:  s.HalfOpenProbes,
		Interval:     s.Window,
		BucketPeriod: bucket,
		Timeout:      s.OpenBase,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			n := c.TotalSuccesses + c.TotalFailures
			return n >= s.MinRequests && float64(c.TotalFailures)/float64(n) >= s.FailureRatio
		},
	})
}

func BenchmarkDo(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		br := New("bench", Settings{})
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			_ = br.Do(func() Outcome { n++; return Success })
		}
		sink += n
	})
	b.Run("single/slowcalls", func(b *testing.B) {
		br := New("bench", Settings{SlowCallThreshold: 1 << 40})
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			_ = br.Do(func() Outcome { n++; return Success })
		}
		sink += n
	})
	b.Run("single/refused", func(b *testing.B) {
		br := New("bench", Settings{MinRequests: 1, OpenBase: 1 << 50, OpenMax: 1 << 50})
		_ = br.Do(func() Outcome { return Failure })
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			_ = br.Do(func() Outcome { n++; return Success })
		}
		sink += n
	})
	b.Run("parallel", func(b *testing.B) {
		br := New("bench", Settings{})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n := 0
			for pb.Next() {
				_ = br.Do(func() Outcome { n++; return Success })
			}
		})
	})
}

func BenchmarkRawGobreakerExecute(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		cb := rawGobreaker()
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			_, _ = cb.Execute(func() (struct{}, error) { n++; return struct{}{}, nil })
		}
		sink += n
	})
	b.Run("parallel", func(b *testing.B) {
		cb := rawGobreaker()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			n := 0
			for pb.Next() {
				_, _ = cb.Execute(func() (struct{}, error) { n++; return struct{}{}, nil })
			}
		})
	})
}

func BenchmarkReady(b *testing.B) {
	br := New("bench", Settings{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !br.Ready() {
				b.Fatal("not ready")
			}
		}
	})
}

func BenchmarkRawRateAllow(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		l := rate.NewLimiter(1e12, 1<<30)
		b.ReportAllocs()
		for b.Loop() {
			l.Allow()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := rate.NewLimiter(1e12, 1<<30)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow()
			}
		})
	})
}

func BenchmarkLimiterAllow(b *testing.B) {
	b.Run("single", func(b *testing.B) {
		l := NewLimiter(1e12, 1<<30)
		b.ReportAllocs()
		for b.Loop() {
			l.Allow()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := NewLimiter(1e12, 1<<30)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow()
			}
		})
	})
}
