package mesh

import (
	"sync"
	"testing"
	"time"
)

// TestConnTrackerTransitions walks a tracker through the states a watcher
// can be in, checking the status after each step and that the last
// status published to onChange always equals the tracker's own.
func TestConnTrackerTransitions(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var published WatcherStatus
	c := newConnTracker(t0, func(st WatcherStatus) { published = st })
	a, b := watchKey{"a", 1}, watchKey{"b", 2}
	c.started(a)
	c.started(b)
	step := func(what string, want string, attempts int, check func(WatcherStatus) bool) {
		t.Helper()
		st := c.status()
		if st.State != want || st.Attempts != attempts || (check != nil && !check(st)) {
			t.Fatalf("%s: %+v, want %s with %d attempts", what, st, want, attempts)
		}
		if published.State != st.State || published.Attempts != st.Attempts {
			t.Fatalf("%s: onChange last saw %+v, the tracker says %+v", what, published, st)
		}
	}
	c.failed(a, "refused", t0.Add(time.Second))
	step("failing from the start", StateReconnecting, 1, nil)
	c.stopped(a, t0.Add(2*time.Second))
	step("the only failing watch stopped, nothing ever answered", StateWaiting, 0, nil)

	c.reachable(b, t0.Add(3*time.Second))
	step("answered with nothing to deliver", StateConnected, 0, func(st WatcherStatus) bool { return st.LastUpdate.IsZero() })
	c.failed(b, "deadline", t0.Add(4*time.Second))
	c.failed(b, "deadline", t0.Add(5*time.Second))
	step("lost", StateReconnecting, 2, func(st WatcherStatus) bool {
		return st.Since.Equal(t0.Add(4*time.Second)) && st.LastError == "deadline" && len(st.Failing) == 1 && st.Failing[0] == "b"
	})
	c.reachable(b, t0.Add(6*time.Second))
	step("back, still with nothing to deliver", StateConnected, 0, func(st WatcherStatus) bool {
		return st.Since.Equal(t0.Add(6*time.Second)) && st.LastUpdate.IsZero() && st.LastError == "deadline"
	})
	c.delivered(b, t0.Add(7*time.Second))
	step("delivered", StateConnected, 0, func(st WatcherStatus) bool { return st.LastUpdate.Equal(t0.Add(7 * time.Second)) })

	// A stopped watch's late attempts are ignored.
	c.stopped(b, t0.Add(8*time.Second))
	c.failed(b, "late", t0.Add(9*time.Second))
	step("late failure of a stopped watch", StateConnected, 0, func(st WatcherStatus) bool { return st.LastError == "deadline" })
}

// TestConnTrackerPublishesInOrder: watches of many services report at
// once; what onChange saw last is what the tracker says.
func TestConnTrackerPublishesInOrder(t *testing.T) {
	var mu sync.Mutex
	var last WatcherStatus
	c := newConnTracker(time.Now(), func(st WatcherStatus) {
		mu.Lock()
		last = st
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for i := range 8 {
		key := watchKey{string(rune('a' + i)), uint64(i)}
		c.started(key)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				if j%2 == 0 {
					c.failed(key, "x", time.Now())
				} else {
					c.delivered(key, time.Now())
				}
			}
		}()
	}
	wg.Wait()
	st := c.status()
	mu.Lock()
	defer mu.Unlock()
	if last.State != st.State || last.Attempts != st.Attempts || !last.LastUpdate.Equal(st.LastUpdate) {
		t.Fatalf("onChange last saw %+v, the tracker says %+v", last, st)
	}
}

// TestConnTrackerSinceFollowsTheOldestFailure: while some watches fail,
// Since is when the oldest failure still going on began.
func TestConnTrackerSinceFollowsTheOldestFailure(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newConnTracker(t0, func(WatcherStatus) {})
	a, b := watchKey{"a", 1}, watchKey{"b", 2}
	c.started(a)
	c.started(b)
	c.delivered(a, t0)
	c.failed(a, "x", t0.Add(time.Second))
	c.failed(b, "x", t0.Add(3*time.Second))
	if st := c.status(); !st.Since.Equal(t0.Add(time.Second)) {
		t.Fatalf("two failing: since %v, want a's failure", st.Since)
	}
	c.delivered(a, t0.Add(4*time.Second))
	if st := c.status(); st.State != StateReconnecting || !st.Since.Equal(t0.Add(3*time.Second)) || st.Attempts != 1 {
		t.Fatalf("a recovered, b failing: %+v, want reconnecting since b's failure with 1 attempt", st)
	}
}
