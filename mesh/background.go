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
	// failures limits the warnings of writes failing alike.
	failures failureLog

	mu    sync.Mutex
	docs  map[string]*snapshot.Rules     // by document name; nil: remove the file
	lists map[string]*snapshot.Instances // by service; nil: remove the file
	stats SnapshotStatus
}

func newSnapshotSaver(store *snapshot.Store, delay time.Duration, log *slog.Logger) *snapshotSaver {
	return &snapshotSaver{store: store, delay: delay, log: log, wake: make(chan struct{}, 1),
		docs: map[string]*snapshot.Rules{}, lists: map[string]*snapshot.Instances{}}
}

// document queues the document called name to be written, replacing
// what is still queued for it.
func (s *snapshotSaver) document(name string, r snapshot.Rules) { s.queueDocument(name, &r) }

// forgetDocument queues the removal of the document called name: the
// mesh no longer watches it.
func (s *snapshotSaver) forgetDocument(name string) { s.queueDocument(name, nil) }

func (s *snapshotSaver) queueDocument(name string, r *snapshot.Rules) {
	s.mu.Lock()
	s.docs[name] = r
	s.mu.Unlock()
	s.signal()
}

// instances queues in to be written, replacing what is still queued for
// its service.
func (s *snapshotSaver) instances(in snapshot.Instances) { s.queueInstances(in.Service, &in) }

// forgetInstances queues the removal of service's list: the mesh no
// longer watches it.
func (s *snapshotSaver) forgetInstances(service string) { s.queueInstances(service, nil) }

func (s *snapshotSaver) queueInstances(service string, in *snapshot.Instances) {
	s.mu.Lock()
	s.lists[service] = in
	s.mu.Unlock()
	s.signal()
}

func (s *snapshotSaver) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// snapshotRetryMax caps the wait before a failed snapshot write is
// tried again; the waits double from one second.
const snapshotRetryMax = 30 * time.Second

// run writes what is queued until ctx ends, and then once more. A write
// that failed is tried again, after a wait that doubles up to
// snapshotRetryMax, unless a newer version replaced it.
func (s *snapshotSaver) run(ctx context.Context) {
	defer s.flush()
	var retry time.Duration // 0: nothing failed
	for {
		var again <-chan time.Time
		var retryTimer *time.Timer
		if retry > 0 {
			retryTimer = time.NewTimer(retry)
			again = retryTimer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-again:
		}
		if retryTimer != nil {
			retryTimer.Stop()
		}
		t := time.NewTimer(s.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if s.flush() {
			retry = 0
		} else {
			retry = min(max(2*retry, time.Second), snapshotRetryMax)
		}
	}
}

// flush writes what is queued and reports whether every write
// succeeded; what failed is queued again, unless something newer was
// queued for it meanwhile.
func (s *snapshotSaver) flush() bool {
	s.mu.Lock()
	docs, lists := s.docs, s.lists
	s.docs, s.lists = map[string]*snapshot.Rules{}, map[string]*snapshot.Instances{}
	s.mu.Unlock()
	ok := true
	for name, doc := range docs {
		var err error
		if doc == nil {
			err = s.store.RemoveDocument(name)
		} else {
			err = s.store.SaveDocument(name, *doc)
		}
		if err != nil {
			ok = false
			s.mu.Lock()
			if _, newer := s.docs[name]; !newer {
				s.docs[name] = doc
			}
			s.mu.Unlock()
			s.warn("lightmesh: saving a rule document snapshot failed; retrying", err, "document", name)
		}
		s.record(err)
	}
	for service, in := range lists {
		var err error
		if in == nil {
			err = s.store.RemoveInstances(service)
		} else {
			err = s.store.SaveInstances(*in)
		}
		if err != nil {
			ok = false
			s.mu.Lock()
			if _, newer := s.lists[service]; !newer {
				s.lists[service] = in
			}
			s.mu.Unlock()
			s.warn("lightmesh: saving the instance snapshot failed; retrying", err, "service", service)
		}
		s.record(err)
	}
	return ok
}

// warn logs a failed write, as a watch's failures are logged: when its
// error is new, and then once a minute.
func (s *snapshotSaver) warn(msg string, err error, key, name string) {
	if log, quiet := s.failures.failed(err.Error(), time.Now()); log {
		s.log.Warn(msg, key, name, "err", err, "not_logged", quiet)
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
