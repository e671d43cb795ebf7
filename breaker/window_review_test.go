package breaker_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func run(t *testing.T, b *breaker.Breaker, o breaker.Outcome) {
	t.Helper()
	tk, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow: %v (state %v)", err, b.State())
	}
	b.Done(tk, o)
}

// refWindow is the rolling window as gobreaker and the locked window
// count it: buckets by age since the window's start, the newest bucket's
// age the latest seen, n buckets in the window.
type refWindow struct {
	n             int64
	newest        int64
	total, failed map[int64]int
}

func (r *refWindow) record(age int64, failed bool) {
	r.newest = max(r.newest, age)
	if age <= r.newest-r.n {
		age = r.newest
	}
	r.total[age]++
	if failed {
		r.failed[age]++
	}
}

// call makes one call of b that fails or not, records it in r at the
// bucket age, and returns its outcome and whether r says b must now be
// open (only a failure trips).
func (r *refWindow) call(t *testing.T, b *breaker.Breaker, failed bool, age int64, set breaker.Settings) (breaker.Outcome, bool) {
	t.Helper()
	o := breaker.Success
	if failed {
		o = breaker.Failure
	}
	run(t, b, o)
	r.record(age, failed)
	return o, failed && r.trips(set.MinRequests, set.FailureRatio)
}

func (r *refWindow) trips(min uint32, ratio float64) bool {
	var total, failed int
	for a := r.newest - r.n + 1; a <= r.newest; a++ {
		total += r.total[a]
		failed += r.failed[a]
	}
	return total > 0 && total >= int(min) && float64(failed)/float64(total) >= ratio
}

// TestReviewWindowMatchesReference: with random gaps (inside a bucket, at
// bucket boundaries, across several buckets and whole windows) the
// breaker trips at exactly the failure the reference window says, for 1
// to 1000 buckets.
func TestReviewWindowMatchesReference(t *testing.T) {
	for _, n := range []int{1, 2, 3, 10, 64, 1000} {
		for seed := range uint64(40) {
			rng := rand.New(rand.NewPCG(seed, uint64(n)))
			window := time.Second
			bucket := window / time.Duration(n)
			set := breaker.Settings{MinRequests: uint32(1 + rng.IntN(20)), FailureRatio: 0.2 + 0.5*rng.Float64(), Window: window, Buckets: n}
			c := &fakeClock{now: time.Unix(1_000_000, 0)}
			b := breaker.New("svc", set, breaker.WithClock(c.Now))
			start := c.Now()
			ref := &refWindow{n: int64(n), total: map[int64]int{}, failed: map[int64]int{}}
			pFail := 0.05 + 0.3*rng.Float64()
			for i := range 3000 {
				switch r := rng.IntN(100); {
				case r < 70:
					c.Advance(time.Duration(rng.Int64N(int64(bucket)/3 + 1)))
				case r < 90:
					c.Advance(bucket)
				case r < 98:
					c.Advance(time.Duration(rng.Int64N(int64(3 * bucket))))
				default:
					c.Advance(time.Duration(rng.Int64N(int64(2 * window))))
				}
				failed := rng.Float64() < pFail
				o, want := ref.call(t, b, failed, int64(c.Now().Sub(start)/bucket), set)
				got := b.State() == breaker.StateOpen
				if got != want {
					t.Fatalf("buckets %d seed %d call %d (%v): open = %v, reference window says %v", n, seed, i, o, got, want)
				}
				if got {
					break
				}
			}
		}
	}
}

// TestReviewTagWrap: the bucket tag is the bucket's age + 1 truncated to
// 32 bits. A breaker whose window has 8 buckets of 1ms, idle for 2^32 ms
// (49.7 days) after a failure, counts its next successes in the stale
// bucket without the lock (the tags match again), and the first failure
// then rolls the window over them: the 10 successes are lost and 4
// failures out of 14 calls (ratio 0.29 < 0.5) trip it.
func TestReviewTagWrap(t *testing.T) {
	c := &fakeClock{now: time.Unix(1_000_000, 0)}
	b := breaker.New("svc", breaker.Settings{MinRequests: 4, FailureRatio: 0.5, Window: 8 * time.Millisecond, Buckets: 8}, breaker.WithClock(c.Now))
	run(t, b, breaker.Failure)
	c.Advance(time.Duration(1<<32) * time.Millisecond)
	for range 10 {
		run(t, b, breaker.Success)
	}
	for range 4 {
		run(t, b, breaker.Failure)
	}
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("state %v after 10 successes and 4 failures in the window, want closed", s)
	}
}

// TestReviewWindowAcrossStateChanges: the reference check of
// TestReviewWindowMatchesReference through trips, open periods, half-open
// probes and recoveries: after every close the window starts empty.
func TestReviewWindowAcrossStateChanges(t *testing.T) {
	for _, n := range []int{1, 10, 1000} {
		for seed := range uint64(20) {
			rng := rand.New(rand.NewPCG(seed, 7))
			window := time.Second
			bucket := window / time.Duration(n)
			set := breaker.Settings{MinRequests: uint32(2 + rng.IntN(10)), FailureRatio: 0.3, Window: window, Buckets: n,
				OpenBase: 100 * time.Millisecond, OpenMax: 100 * time.Millisecond, HalfOpenProbes: 2}
			c := &fakeClock{now: time.Unix(1_000_000, 0)}
			b := breaker.New("svc", set, breaker.WithClock(c.Now))
			start := c.Now()
			ref := &refWindow{n: int64(n), total: map[int64]int{}, failed: map[int64]int{}}
			trips := 0
			for i := range 4000 {
				if rng.IntN(10) == 0 {
					c.Advance(time.Duration(rng.Int64N(int64(bucket)*2 + 1)))
				} else {
					c.Advance(time.Duration(rng.Int64N(int64(window / 50))))
				}
				pct := 5
				if (i/150)%2 == 1 {
					pct = 60 // a bad phase
				}
				failed := rng.IntN(100) < pct
				_, want := ref.call(t, b, failed, int64(c.Now().Sub(start)/bucket), set)
				if got := b.State() == breaker.StateOpen; got != want {
					t.Fatalf("buckets %d seed %d call %d after %d trips: open = %v, reference says %v", n, seed, i, trips, got, want)
				}
				if want {
					trips++
					c.Advance(200 * time.Millisecond) // past the open period
					run(t, b, breaker.Success)
					run(t, b, breaker.Success) // two probes close it
					if s := b.State(); s != breaker.StateClosed {
						t.Fatalf("state %v after the probes, want closed", s)
					}
					start = c.Now() // the window starts at the close
					ref = &refWindow{n: int64(n), total: map[int64]int{}, failed: map[int64]int{}}
				}
			}
			if trips == 0 {
				t.Logf("buckets %d seed %d: never tripped", n, seed)
			}
		}
	}
}

// TestReviewConcurrentSuccessesAcrossBuckets: successes counted by many
// goroutines while the clock crosses bucket boundaries (rolled by
// whichever call comes first) are all counted: 4,000 successes and one
// failure in the window, then the breaker trips at exactly the 4,000th
// failure.
func TestReviewConcurrentSuccessesAcrossBuckets(t *testing.T) {
	for _, n := range []int{1, 10, 1000} {
		c := &fakeClock{now: time.Unix(1_000_000, 0)}
		b := breaker.New("svc", breaker.Settings{MinRequests: 2, FailureRatio: 0.5, Window: 10 * time.Second, Buckets: n}, breaker.WithClock(c.Now))
		run(t, b, breaker.Failure)
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 1000 {
					if i%50 == 0 {
						c.Advance(25 * time.Millisecond) // 2s in all: nothing leaves the 10s window
					}
					tk, err := b.Allow()
					if err != nil {
						t.Error(err)
						return
					}
					b.Done(tk, breaker.Success)
				}
			}()
		}
		wg.Wait()
		for i := 2; i < 4000; i++ {
			run(t, b, breaker.Failure)
		}
		if s := b.State(); s != breaker.StateClosed {
			t.Fatalf("buckets %d: state %v after 3,999 failures and 4,000 successes, want closed", n, s)
		}
		run(t, b, breaker.Failure)
		if s := b.State(); s != breaker.StateOpen {
			t.Fatalf("buckets %d: state %v after 4,000 failures and 4,000 successes, want open", n, s)
		}
	}
}

// TestReviewMixedConcurrentNoFalseTrip: four goroutines, each failing
// every fourth call, while the clock crosses bucket boundaries and whole
// windows: any 40 calls hold at most 14 failures, so the breaker (ratio
// 0.5, 40 calls at least) must stay closed.
func TestReviewMixedConcurrentNoFalseTrip(t *testing.T) {
	for _, n := range []int{1, 10, 1000} {
		c := &fakeClock{now: time.Unix(1_000_000, 0)}
		b := breaker.New("svc", breaker.Settings{MinRequests: 40, FailureRatio: 0.5, Window: time.Second, Buckets: n}, breaker.WithClock(c.Now))
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20000 {
					o := breaker.Success
					if i%4 == 0 {
						o = breaker.Failure
					}
					if g == 1 && i%20 == 0 {
						c.Advance(time.Second / time.Duration(n) / 3)
					}
					tk, err := b.Allow()
					if err != nil {
						t.Errorf("buckets %d: refused after %d calls: %v", n, i, err)
						return
					}
					b.Done(tk, o)
				}
			}()
		}
		wg.Wait()
	}
}
