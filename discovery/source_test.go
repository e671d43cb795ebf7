package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

var _ Source = (*Static)(nil)

// watcher runs Watch in a goroutine and collects what it delivers.
type watcher struct {
	updates chan []Instance
	done    chan error
	cancel  context.CancelFunc
}

func watch(ctx context.Context, s *Static, service string) *watcher {
	ctx, cancel := context.WithCancel(ctx)
	w := &watcher{updates: make(chan []Instance, 16), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- s.Watch(ctx, service, func(list []Instance) { w.updates <- list })
	}()
	return w
}

func (w *watcher) next(t *testing.T) []Instance {
	t.Helper()
	select {
	case list := <-w.updates:
		return list
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
		return nil
	}
}

// quiet checks that nothing is delivered for a while.
func (w *watcher) quiet(t *testing.T) {
	t.Helper()
	select {
	case list := <-w.updates:
		t.Fatalf("unexpected update %v", addresses(list))
	case <-time.After(50 * time.Millisecond):
	}
}

// stop cancels the watch and returns Watch's error.
func (w *watcher) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return within 5s of cancellation")
		return nil
	}
}

func addresses(list []Instance) []string {
	var a []string
	for _, in := range list {
		a = append(a, in.Address)
	}
	return a
}

func sameList(a, b []Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equalInstance(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestStaticWatch(t *testing.T) {
	initial := []Instance{{Address: "10.0.0.1:80", Labels: map[string]string{"env": "base"}}, {Address: "10.0.0.2:80", Weight: 2}}
	s := NewStatic(map[string][]Instance{"user-api": initial})
	w := watch(t.Context(), s, "user-api")

	if got := w.next(t); !sameList(got, initial) {
		t.Fatalf("initial delivery %v, want %v", got, initial)
	}

	// Set delivers the new list.
	second := []Instance{{Address: "10.0.0.3:80", Labels: map[string]string{"env": "staging"}}}
	s.Set("user-api", second)
	if got := w.next(t); !sameList(got, second) {
		t.Fatalf("after Set: %v, want %v", addresses(got), addresses(second))
	}

	// An identical list (a fresh copy, equal labels) is not delivered again,
	// and neither is a change to another service.
	s.Set("user-api", []Instance{{Address: "10.0.0.3:80", Labels: map[string]string{"env": "staging"}}})
	s.Set("other", []Instance{{Address: "10.9.9.9:80"}})
	w.quiet(t)

	// Each field counts as a change.
	for i, next := range [][]Instance{
		{{Address: "10.0.0.3:80", Labels: map[string]string{"env": "base"}}},                         // label value
		{{Address: "10.0.0.3:80", Labels: map[string]string{"env": "base", "zone": "a"}}},            // label added
		{{Address: "10.0.0.3:80", Labels: map[string]string{"env": "base", "zone": "a"}, Weight: 3}}, // weight
		{{Address: "10.0.0.3:80", Labels: map[string]string{"env": "base", "zone": "a"}, Weight: 3, Unhealthy: true}},
		{{Address: "10.0.0.4:80", Labels: map[string]string{"env": "base", "zone": "a"}, Weight: 3, Unhealthy: true}},
		{{Address: "10.0.0.4:80", Labels: map[string]string{"env": "base", "zone": "b"}, Weight: 3, Unhealthy: true}}, // same label count, other value
		{{Address: "10.0.0.4:80", Labels: map[string]string{"env": "base", "area": "b"}, Weight: 3, Unhealthy: true}}, // same count, other key
		nil, // emptied
		{{Address: "10.0.0.5:80"}, {Address: "10.0.0.6:80"}},
		{{Address: "10.0.0.6:80"}, {Address: "10.0.0.5:80"}}, // order counts
	} {
		s.Set("user-api", next)
		if got := w.next(t); !sameList(got, next) {
			t.Fatalf("change %d: delivered %v, want %v", i, got, next)
		}
	}
	w.quiet(t)

	if err := w.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
}

func TestStaticWatchUnknownService(t *testing.T) {
	s := NewStatic(nil)
	w := watch(t.Context(), s, "later")
	if got := w.next(t); len(got) != 0 {
		t.Fatalf("initial delivery %v, want an empty list", got)
	}
	s.Set("later", []Instance{{Address: "10.0.0.1:80"}})
	if got := w.next(t); len(got) != 1 || got[0].Address != "10.0.0.1:80" {
		t.Fatalf("after Set: %v", got)
	}
	// An empty list after nothing is no change.
	w2 := watch(t.Context(), s, "never")
	w2.next(t)
	s.Set("never", []Instance{})
	w2.quiet(t)
	w.stop(t)
	w2.stop(t)
}

func TestStaticWatchContext(t *testing.T) {
	s := NewStatic(map[string][]Instance{"svc": {{Address: "10.0.0.1:80"}}})

	// Already cancelled: the current list is still delivered, then Watch
	// returns at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	delivered := 0
	if err := s.Watch(ctx, "svc", func([]Instance) { delivered++ }); !errors.Is(err, context.Canceled) || delivered != 1 {
		t.Fatalf("Watch = %v with %d deliveries, want context.Canceled after 1", err, delivered)
	}

	// Deadline: Watch returns ctx.Err() itself.
	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := s.Watch(ctx, "svc", func([]Instance) {})
	if err != ctx.Err() || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Watch = %v, want %v", err, ctx.Err())
	}

	// A cause is not what Watch returns: ctx.Err() is.
	ctx, cancelCause := context.WithCancelCause(t.Context())
	go cancelCause(errors.New("shutting down"))
	if err := s.Watch(ctx, "svc", func([]Instance) {}); err != context.Canceled {
		t.Fatalf("Watch = %v, want context.Canceled", err)
	}
}

// TestStaticCopies checks that the source keeps its own copies: neither the
// caller of Set nor an update callback can change what others see.
func TestStaticCopies(t *testing.T) {
	list := []Instance{{Address: "10.0.0.1:80"}, {Address: "10.0.0.2:80"}}
	s := NewStatic(map[string][]Instance{"svc": list})
	list[0].Address = "changed:80"

	var got []Instance
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = s.Watch(ctx, "svc", func(l []Instance) {
		got = append(got, l...)
		l[1].Address = "scribbled:80" // must not reach the source
	})
	if got[0].Address != "10.0.0.1:80" {
		t.Fatalf("NewStatic kept the caller's slice: %v", addresses(got))
	}
	_ = s.Watch(ctx, "svc", func(l []Instance) { got = l })
	if got[1].Address != "10.0.0.2:80" {
		t.Fatalf("an update callback changed the source: %v", addresses(got))
	}

	next := []Instance{{Address: "10.0.0.3:80"}}
	s.Set("svc", next)
	next[0].Address = "changed:80"
	_ = s.Watch(ctx, "svc", func(l []Instance) { got = l })
	if got[0].Address != "10.0.0.3:80" {
		t.Fatalf("Set kept the caller's slice: %v", addresses(got))
	}
}

// TestStaticConcurrent runs many watchers of several services against
// concurrent Sets: under -race it checks the locking, and every watcher
// ends having seen its service's last list.
func TestStaticConcurrent(t *testing.T) {
	s := NewStatic(nil)
	const services, watchers, sets = 4, 5, 200
	type result struct {
		service string
		last    []Instance
		err     error
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan result, services*watchers)
	var started, caughtUp, wg sync.WaitGroup
	for i := range services * watchers {
		service := fmt.Sprintf("svc-%d", i%services)
		started.Add(1)
		caughtUp.Add(1)
		wg.Go(func() {
			var last []Instance
			first := true
			err := s.Watch(ctx, service, func(l []Instance) {
				last = l
				if first {
					first = false
					started.Done()
				}
				if len(l) == 1 && l[0].Weight == sets-1 {
					caughtUp.Done() // the last Set's list: delivered once only
				}
			})
			results <- result{service, last, err}
		})
	}
	started.Wait()
	var setters sync.WaitGroup
	for i := range services {
		service := fmt.Sprintf("svc-%d", i)
		setters.Go(func() {
			for j := range sets {
				s.Set(service, []Instance{{Address: fmt.Sprintf("10.0.%d.%d:80", i, j), Weight: j}})
			}
		})
	}
	setters.Wait()
	done := make(chan struct{})
	go func() { caughtUp.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watchers did not all receive the last list within 10s")
	}
	cancel()
	wg.Wait()
	close(results)
	for r := range results {
		var i int
		fmt.Sscanf(r.service, "svc-%d", &i)
		want := fmt.Sprintf("10.0.%d.%d:80", i, sets-1)
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("%s: Watch returned %v", r.service, r.err)
		}
		if len(r.last) != 1 || r.last[0].Address != want {
			t.Errorf("%s: last delivery %v, want [%s]", r.service, r.last, want)
		}
	}
}
