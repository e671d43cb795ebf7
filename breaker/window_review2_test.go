package breaker_test

import (
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
)

// failuresToTrip advances the clock past the window (every bucket rolls
// out at the next call), then reports failures until the breaker refuses
// a call: with FailureRatio tiny it trips as soon as the window's total
// reaches MinRequests, so the count is MinRequests minus the running
// total's drift.
func failuresToTrip(t *testing.T, c *fakeClock, b *breaker.Breaker, max int) int {
	t.Helper()
	c.Advance(b.Settings().Window + time.Second)
	for f := 0; f < max; f++ {
		tk, err := b.Allow()
		if errors.Is(err, breaker.ErrOpen) {
			return f
		}
		b.Done(tk, breaker.Failure)
	}
	return max
}

// closeAgain walks an open breaker through its open period and one
// half-open probe back to closed.
func closeAgain(t *testing.T, c *fakeClock, b *breaker.Breaker) {
	t.Helper()
	c.Advance(b.Settings().OpenMax + time.Second)
	tk, err := b.Allow()
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	b.Done(tk, breaker.Success)
	if s := b.State(); s != breaker.StateClosed {
		t.Fatalf("state %v after a successful probe, want closed", s)
	}
}

// TestReview2NoDriftAcrossStateChanges: successes of a closed generation
// still being counted without the lock while the breaker trips, waits out
// its open period and closes again (stale tickets) must leave the running
// total equal to the window's calls. After every such cycle the window is
// emptied by time and the breaker must trip at exactly the MinRequests-th
// failure, no earlier (total counted too high) and no later (too low).
//
// A worker must be descheduled between its bucket's add and the running
// total's add while the driver trips and closes the breaker: more
// runnable threads than cores make that happen within a few hundred
// rounds.
func TestReview2NoDriftAcrossStateChanges(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(max(8, 4*runtime.NumCPU())))
	const minReq = 8
	set := breaker.Settings{
		MinRequests: minReq, FailureRatio: 0.01, Window: 10 * time.Second, Buckets: 10,
		OpenBase: time.Second, OpenMax: time.Second, HalfOpenProbes: 1,
	}
	c := &fakeClock{now: time.Unix(1_000_000, 0)}
	b := breaker.New("svc", set, breaker.WithClock(c.Now))
	const workers, perWorker, rounds = 8, 64, 3000
	for r := range rounds {
		run(t, b, breaker.Success) // rolls the bucket in: later successes are lock-free
		at := c.Now()
		tickets := make([][]breaker.Ticket, workers)
		for w := range tickets {
			for range perWorker {
				tk, err := b.Allow()
				if err != nil {
					t.Fatal(err)
				}
				tickets[w] = append(tickets[w], tk)
			}
		}
		var wg sync.WaitGroup
		startCh := make(chan struct{})
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-startCh
				for _, tk := range tickets[w] {
					b.DoneAt(tk, breaker.Success, at)
				}
			}()
		}
		close(startCh)
		// Trip while the workers count, then close again.
		for range 10 * minReq * workers * perWorker {
			tk, err := b.Allow()
			if err != nil {
				break
			}
			b.Done(tk, breaker.Failure)
		}
		if s := b.PeekState(); s != breaker.StateOpen {
			t.Fatalf("round %d: state %v, want open", r, s)
		}
		closeAgain(t, c, b)
		wg.Wait()
		if f := failuresToTrip(t, c, b, 3*minReq); f != minReq {
			t.Fatalf("round %d: tripped after %d failures in an otherwise empty window, want %d (running total drifted by %+d)", r, f, minReq, minReq-f)
		}
		closeAgain(t, c, b)
	}
}
