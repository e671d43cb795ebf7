package deadline

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
)

// doneWithin waits for ctx to end, failing the test if it ends before
// early or after late.
func doneWithin(t *testing.T, ctx context.Context, start time.Time, early, late time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(late + time.Second):
		t.Fatalf("not done %v after start (deadline in %v)", late+time.Second, early)
	}
	if el := time.Since(start); el < early {
		t.Fatalf("done after %v, before its deadline (%v)", el, early)
	}
}

// TestEndsAtItsDeadline: a Context ends at its deadline with
// context.DeadlineExceeded as its Err and Cause, as context.WithDeadline's
// would; contexts derived from it the ways net/http and grpc-go derive
// theirs end with it, DeadlineExceeded as their Cause.
func TestEndsAtItsDeadline(t *testing.T) {
	w := NewWatcher()
	start := time.Now()
	c := w.WithDeadline(context.Background(), start.Add(30*time.Millisecond))
	defer c.End()
	child, stop := context.WithCancel(c)
	defer stop()
	causeChild, stopCause := context.WithCancelCause(c)
	defer stopCause(nil)
	grandchild, stopG := context.WithTimeout(child, time.Hour)
	defer stopG()
	if d, ok := grandchild.Deadline(); !ok || !d.Equal(start.Add(30*time.Millisecond)) {
		t.Fatalf("derived Deadline() = %v %v, want the Context's", d, ok)
	}
	if c.Err() != nil || child.Err() != nil {
		t.Fatal("ended before its deadline")
	}
	doneWithin(t, c, start, 30*time.Millisecond, 200*time.Millisecond)
	if err := c.Err(); err != context.DeadlineExceeded {
		t.Errorf("Err() = %v, want context.DeadlineExceeded", err)
	}
	for name, ctx := range map[string]context.Context{"context": c, "child": child, "cause child": causeChild, "grandchild": grandchild} {
		<-ctx.Done()
		if err := ctx.Err(); err == nil {
			t.Errorf("%s: Err() = nil after Done", name)
		}
		if err := context.Cause(ctx); err != context.DeadlineExceeded {
			t.Errorf("%s: Cause() = %v, want context.DeadlineExceeded", name, err)
		}
	}
}

// TestEndBeforeTheDeadline: End ends the context with context.Canceled,
// which its deadline passing later does not change, and takes it out of
// the watch.
func TestEndBeforeTheDeadline(t *testing.T) {
	w := NewWatcher()
	c := w.WithDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
	child, stop := context.WithCancel(c)
	defer stop()
	c.End()
	<-child.Done()
	if c.Err() != context.Canceled || child.Err() != context.Canceled {
		t.Fatalf("Err() = %v, child %v; want context.Canceled", c.Err(), child.Err())
	}
	n := w.watched()
	if n != 0 {
		t.Fatalf("%d contexts still watched after End", n)
	}
	time.Sleep(40 * time.Millisecond)
	if c.Err() != context.Canceled {
		t.Fatalf("Err() = %v after the deadline passed, want context.Canceled still", c.Err())
	}
	c.End() // twice is fine
}

// TestParentEndsFirst: a parent that ends first ends the Context with the
// parent's error, which stays after the deadline passes.
func TestParentEndsFirst(t *testing.T) {
	w := NewWatcher()
	parent, cancel := context.WithCancel(context.Background())
	c := w.WithDeadline(parent, time.Now().Add(20*time.Millisecond))
	defer c.End()
	cancel()
	<-c.Done()
	if c.Err() != context.Canceled {
		t.Fatalf("Err() = %v, want the parent's context.Canceled", c.Err())
	}
	time.Sleep(40 * time.Millisecond)
	if c.Err() != context.Canceled {
		t.Fatalf("Err() = %v after the deadline passed, want context.Canceled still", c.Err())
	}
	// A parent that ends by its own (earlier) deadline passes that on.
	p2, stop := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer stop()
	c2 := w.WithDeadline(p2, time.Now().Add(time.Hour))
	defer c2.End()
	<-c2.Done()
	if c2.Err() != context.DeadlineExceeded {
		t.Fatalf("Err() = %v, want the parent's context.DeadlineExceeded", c2.Err())
	}
}

// TestPastDeadline: a deadline already past ends the Context at once.
func TestPastDeadline(t *testing.T) {
	w := NewWatcher()
	c := w.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	select {
	case <-c.Done():
	default:
		t.Fatal("not done")
	}
	if c.Err() != context.DeadlineExceeded {
		t.Fatalf("Err() = %v, want context.DeadlineExceeded", c.Err())
	}
	c.End()
}

// TestManyDeadlinesInAnyOrder: contexts made in a random order of
// deadlines (earlier ones after later ones re-arm the timer) each end at
// their own deadline, not before; those ended early never expire.
func TestManyDeadlinesInAnyOrder(t *testing.T) {
	w := NewWatcher()
	start := time.Now()
	type entry struct {
		c  *Context
		d  time.Duration
		at time.Duration
	}
	var entries []*entry
	for _, ms := range rand.Perm(40) {
		d := time.Duration(10+ms*3) * time.Millisecond
		entries = append(entries, &entry{c: w.WithDeadline(context.Background(), start.Add(d)), d: d})
	}
	ended := entries[:10]
	for _, e := range ended {
		e.c.End()
	}
	var wg sync.WaitGroup
	for _, e := range entries[10:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-e.c.Done()
			e.at = time.Since(start)
		}()
	}
	wg.Wait()
	for _, e := range entries[10:] {
		if e.at < e.d {
			t.Errorf("deadline %v ended at %v", e.d, e.at)
		}
		if e.c.Err() != context.DeadlineExceeded {
			t.Errorf("deadline %v: Err() = %v", e.d, e.c.Err())
		}
		if e.at > e.d+500*time.Millisecond {
			t.Errorf("deadline %v ended only at %v", e.d, e.at)
		}
	}
	for _, e := range ended {
		if e.c.Err() != context.Canceled {
			t.Errorf("ended context: Err() = %v, want context.Canceled", e.c.Err())
		}
	}
}

type valueKey struct{}

// TestNoGoroutinePerChild: deriving contexts from a Context starts no
// goroutine each, also through a context.WithValue layer, as grpc-go
// derives its stream's.
func TestNoGoroutinePerChild(t *testing.T) {
	w := NewWatcher()
	c := w.WithDeadline(context.Background(), time.Now().Add(time.Hour))
	defer c.End()
	before := runtime.NumGoroutine()
	var stops []context.CancelFunc
	for range 100 {
		_, stop := context.WithCancel(c)
		_, stop2 := context.WithCancel(context.WithValue(c, valueKey{}, 1))
		stops = append(stops, stop, stop2)
	}
	if n := runtime.NumGoroutine() - before; n > 10 {
		t.Fatalf("%d goroutines started for 200 derived contexts", n)
	}
	for _, stop := range stops {
		stop()
	}
}

// TestConcurrentUse: contexts made, ended and expiring from many
// goroutines at once (run with -race) each end once, with the right error.
func TestConcurrentUse(t *testing.T) {
	w := NewWatcher()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				d := time.Duration(i%5) * time.Millisecond
				c := w.WithDeadline(context.Background(), time.Now().Add(d))
				if (i+g)%3 == 0 {
					<-c.Done()
					if c.Err() != context.DeadlineExceeded {
						errs <- errors.New("expired context: " + c.Err().Error())
						return
					}
				}
				c.End()
				if err := c.Err(); err != context.Canceled && err != context.DeadlineExceeded {
					errs <- errors.New("ended context: unexpected Err")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := w.watched()
	if n != 0 {
		t.Fatalf("%d contexts still watched after all ended", n)
	}
}

// watched returns how many Contexts w holds.
func (w *Watcher) watched() int {
	n := 0
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		n += len(sh.queue)
		sh.mu.Unlock()
	}
	return n
}
