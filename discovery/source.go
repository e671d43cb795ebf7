package discovery

import (
	"context"
	"slices"
	"sync"
)

// Source reports the instances of services.
//
// Watch delivers the complete instance list of service to update, first as
// soon as it is known and again every time it changes, until ctx ends or
// the connection to the source fails. It blocks for that whole time and
// returns the error that ended it (ctx.Err() after cancellation); the
// caller calls it again, with backoff, to resume. update is called from one
// goroutine at a time and must not keep the slice. Watch may be called
// concurrently for different services.
type Source interface {
	Watch(ctx context.Context, service string, update func([]Instance)) error
}

// Static is a Source whose lists the program sets itself with Set. The
// zero value is not usable; call NewStatic.
type Static struct {
	mu      sync.Mutex
	lists   map[string][]Instance
	changed chan struct{} // closed and replaced on every Set
}

// NewStatic returns a static source holding lists (copied), keyed by
// service name.
func NewStatic(lists map[string][]Instance) *Static {
	s := &Static{lists: make(map[string][]Instance, len(lists)), changed: make(chan struct{})}
	for name, l := range lists {
		s.lists[name] = slices.Clone(l)
	}
	return s
}

// Set replaces the instances of service and wakes its watchers.
func (s *Static) Set(service string, instances []Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lists[service] = slices.Clone(instances)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Static) current(service string) ([]Instance, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.lists[service]), s.changed
}

// Watch implements Source. It returns only when ctx ends.
func (s *Static) Watch(ctx context.Context, service string, update func([]Instance)) error {
	list, changed := s.current(service)
	update(list)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
		next, nextChanged := s.current(service)
		if !slices.EqualFunc(list, next, equalInstance) {
			update(next)
		}
		list, changed = next, nextChanged
	}
}

func equalInstance(a, b Instance) bool {
	if a.Address != b.Address || a.Weight != b.Weight || a.Unhealthy != b.Unhealthy || len(a.Labels) != len(b.Labels) {
		return false
	}
	for k, v := range a.Labels {
		if w, ok := b.Labels[k]; !ok || w != v {
			return false
		}
	}
	return true
}
