package breaker_test

import (
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
)

// BenchmarkReviewSlowModeSuccess: a success in slow-call mode with 1,000
// buckets and one slow call in the window (so the slow ratio is judged on
// every call).
func BenchmarkReviewSlowModeSuccess(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(map[int]string{10: "buckets=10", 1000: "buckets=1000"}[n], func(b *testing.B) {
			c := &fakeClock{now: time.Unix(1_000_000, 0)}
			br := breaker.New("svc", breaker.Settings{Window: 10 * time.Second, Buckets: n, SlowCallThreshold: time.Second, SlowCallRatio: 0.9}, breaker.WithClock(c.Now))
			tk, _ := br.Allow()
			c.Advance(2 * time.Second)
			br.Done(tk, breaker.Success) // one slow call
			for b.Loop() {
				tk, _ := br.Allow()
				br.Done(tk, breaker.Success)
			}
		})
	}
}
