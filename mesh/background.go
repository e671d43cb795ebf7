package mesh

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/lightmesh/lightmesh/internal/snapshot"
)

// snapshotSaver writes the local snapshot off the manager goroutine: the
// manager hands it the latest rules and instance lists, and it writes them
// after a short delay, the latest of each only, so a burst of instance
// updates costs one fsync per service rather than one per update, and disk
// latency never delays applying rules.
type snapshotSaver struct {
	store *snapshot.Store
	delay time.Duration
	log   *slog.Logger
	wake  chan struct{} // buffered 1

	mu      sync.Mutex
	pending *snapshot.Rules
	docs    map[string]snapshot.Rules // per-service layout, by document name
	lists   map[string]snapshot.Instances
	stats   SnapshotStatus
}

func newSnapshotSaver(store *snapshot.Store, delay time.Duration, log *slog.Logger) *snapshotSaver {
	return &snapshotSaver{store: store, delay: delay, log: log, wake: make(chan struct{}, 1),
		docs: map[string]snapshot.Rules{}, lists: map[string]snapshot.Instances{}}
}

// rules queues r to be written, replacing any rules still queued.
func (s *snapshotSaver) rules(r snapshot.Rules) {
	s.mu.Lock()
	s.pending = &r
	s.mu.Unlock()
	s.signal()
}

// document queues the document called name to be written, replacing
// one of the same name still queued.
func (s *snapshotSaver) document(name string, r snapshot.Rules) {
	s.mu.Lock()
	s.docs[name] = r
	s.mu.Unlock()
	s.signal()
}

// instances queues in to be written, replacing a list of the same service
// still queued.
func (s *snapshotSaver) instances(in snapshot.Instances) {
	s.mu.Lock()
	s.lists[in.Service] = in
	s.mu.Unlock()
	s.signal()
}

func (s *snapshotSaver) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run writes what is queued until ctx ends, and then once more.
func (s *snapshotSaver) run(ctx context.Context) {
	defer s.flush()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		t := time.NewTimer(s.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		s.flush()
	}
}

func (s *snapshotSaver) flush() {
	s.mu.Lock()
	r, docs, lists := s.pending, s.docs, s.lists
	s.pending, s.docs, s.lists = nil, map[string]snapshot.Rules{}, map[string]snapshot.Instances{}
	s.mu.Unlock()
	if r != nil {
		err := s.store.SaveRules(*r)
		if err != nil {
			s.log.Warn("lightmesh: saving the rules snapshot failed", "err", err)
		}
		s.record(err)
	}
	for name, doc := range docs {
		err := s.store.SaveDocument(name, doc)
		if err != nil {
			s.log.Warn("lightmesh: saving a rule document snapshot failed", "document", name, "err", err)
		}
		s.record(err)
	}
	for _, in := range lists {
		err := s.store.SaveInstances(in)
		if err != nil {
			s.log.Warn("lightmesh: saving the instance snapshot failed", "service", in.Service, "err", err)
		}
		s.record(err)
	}
}

func (s *snapshotSaver) record(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Writes++
	if err != nil {
		s.stats.LastError = err.Error()
		return
	}
	s.stats.LastWrite = time.Now()
}

// status returns what the saver did so far.
func (s *snapshotSaver) status() SnapshotStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// maxQueuedEvents bounds the rule events waiting for a slow callback; older
// ones are dropped first.
const maxQueuedEvents = 1024

// eventQueue delivers rule events to the WithOnRulesChange callback from a
// goroutine of its own, in order, so a callback that blocks delays only
// later events, never the manager.
type eventQueue struct {
	fn   func(RulesEvent)
	log  *slog.Logger
	wake chan struct{} // buffered 1

	mu      sync.Mutex
	queue   []RulesEvent
	dropped int
}

func newEventQueue(fn func(RulesEvent), log *slog.Logger) *eventQueue {
	return &eventQueue{fn: fn, log: log, wake: make(chan struct{}, 1)}
}

// push queues ev without blocking.
func (q *eventQueue) push(ev RulesEvent) {
	q.mu.Lock()
	if len(q.queue) == maxQueuedEvents {
		q.queue = q.queue[1:]
		q.dropped++
	}
	q.queue = append(q.queue, ev)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run delivers queued events until ctx ends.
func (q *eventQueue) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		for {
			q.mu.Lock()
			batch, dropped := q.queue, q.dropped
			q.queue, q.dropped = nil, 0
			q.mu.Unlock()
			if dropped > 0 {
				q.log.Warn("lightmesh: rule events dropped: the WithOnRulesChange callback is too slow", "dropped", dropped)
			}
			if len(batch) == 0 {
				break
			}
			for _, ev := range batch {
				if ctx.Err() != nil {
					return
				}
				q.fn(ev)
			}
		}
	}
}
