// Package deadline ends contexts at their deadlines with one runtime timer
// per Watcher instead of one per context.
//
// context.WithDeadline starts a runtime timer for every context. A call
// that ends before its deadline stops it, but adding a timer to an idle
// processor's empty timer heap wakes the scheduler's network poller (the
// runtime's wakeNetPoller) so that it sleeps until the new deadline: at
// 2,000 requests a second on a loopback server, with the process idle
// between requests, that cost about 5 µs of CPU per request, more than
// everything else the mesh does (bench/PROFILE-NOTES.md). A Watcher keeps
// the deadlines of the contexts in flight in a heap and one timer armed
// at the earliest: a context that ends before its deadline only leaves the
// heap, and with deadlines that come in order (one timeout per route) the
// timer is re-armed about once per timeout, not once per call.
//
// A Context behaves as one from context.WithDeadline: Deadline reports
// its deadline, Err is context.DeadlineExceeded once it passed, its
// parent's error when the parent ended first and context.Canceled once it
// was ended. One difference: a context derived from it (net/http's and
// grpc-go's per request) ends at its deadline with context.Canceled as
// its Err and context.DeadlineExceeded as its context.Cause. Derived
// contexts are attached to a cancelCtx of the standard library's inside
// the Context, which ends them without a goroutine each, also through
// context.WithValue layers, and only the standard library's own timer
// context can end that with DeadlineExceeded. net/http returns the cause;
// a gRPC adapter maps the CANCELLED it gets from grpc-go.
package deadline

import (
	"container/heap"
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Watcher ends the Contexts made by WithDeadline at their deadlines. It
// is safe for concurrent use. It starts no goroutine: its timer's function
// runs only when a deadline passes.
//
// The Contexts in flight are spread over shards, each a heap under a lock
// of its own, so that calls on different processors seldom meet on one
// lock (with one heap the Watcher's lock, taken twice per call, was where
// parallel calls queued).
type Watcher struct {
	epoch  time.Time // origin of the deadlines' nanoseconds
	shards [shardCount]shard

	armed atomic.Int64 // when the timer fires, ns since epoch; unarmed when it is not armed
	tmu   sync.Mutex   // guards timer and the arming of it
	timer *time.Timer  // runs fire; nil until first armed
}

const (
	shardCount = 8
	unarmed    = math.MaxInt64
)

// shard is a heap of Contexts, padded to its own cache line.
type shard struct {
	mu    sync.Mutex
	queue queue
	_     [32]byte
}

// NewWatcher returns a Watcher with nothing to watch.
func NewWatcher() *Watcher {
	w := &Watcher{epoch: time.Now()}
	w.armed.Store(unarmed)
	return w
}

// Context is a context whose deadline a Watcher watches. End it with End
// once the work it bounds is over.
type Context struct {
	context.Context // a cancelCtx child of the parent: Done, Value
	cancel          context.CancelCauseFunc
	deadline        time.Time
	at              int64 // deadline in ns since the Watcher's epoch
	w               *Watcher
	shard           *shard
	index           int          // in shard.queue; -1 once out of it (guarded by shard.mu)
	state           atomic.Int32 // live, expired or ended
}

// The states of a Context: its Err is decided by the first of its deadline
// (expired) and anything else ending it (ended: its parent, or End).
const (
	live int32 = iota
	expired
	ended
)

// WithDeadline returns a child of parent that ends at d, like
// context.WithDeadline, without a timer of its own. The caller ends it
// with End. A d already past ends it at once.
func (w *Watcher) WithDeadline(parent context.Context, d time.Time) *Context {
	inner, cancel := context.WithCancelCause(parent)
	c := &Context{Context: inner, cancel: cancel, deadline: d, at: int64(d.Sub(w.epoch)), w: w, index: -1}
	if !time.Now().Before(d) {
		c.expire()
		return c
	}
	sh := &w.shards[rand.Uint32()%shardCount]
	c.shard = sh
	sh.mu.Lock()
	heap.Push(&sh.queue, c)
	sh.mu.Unlock()
	// Pushed first, then compared: a fire that re-arms the timer either
	// finds c in its shard or has cleared armed before c's comparison.
	if c.at < w.armed.Load() {
		w.arm(c.at)
	}
	return c
}

// arm has the timer fire at at, unless it fires earlier already.
func (w *Watcher) arm(at int64) {
	w.tmu.Lock()
	defer w.tmu.Unlock()
	if at >= w.armed.Load() {
		return
	}
	w.armed.Store(at)
	in := time.Duration(at - int64(time.Since(w.epoch)))
	if w.timer == nil {
		w.timer = time.AfterFunc(in, w.fire)
		return
	}
	w.timer.Reset(in)
}

// fire ends the Contexts whose deadline has passed and arms the timer for
// the next one. It also runs when an earlier deadline re-armed the timer
// while it was firing: it then finds nothing due and arms it again.
func (w *Watcher) fire() {
	w.tmu.Lock()
	w.armed.Store(unarmed)
	w.tmu.Unlock()
	now := int64(time.Since(w.epoch))
	next := int64(unarmed)
	var due []*Context
	for i := range w.shards {
		sh := &w.shards[i]
		sh.mu.Lock()
		for len(sh.queue) > 0 && sh.queue[0].at <= now {
			due = append(due, heap.Pop(&sh.queue).(*Context))
		}
		if len(sh.queue) > 0 {
			next = min(next, sh.queue[0].at)
		}
		sh.mu.Unlock()
	}
	if next != unarmed {
		w.arm(next)
	}
	for _, c := range due {
		c.expire()
	}
}

// expire ends c with context.DeadlineExceeded, unless something ended it
// first.
func (c *Context) expire() {
	if c.state.CompareAndSwap(live, expired) {
		c.cancel(context.DeadlineExceeded)
	}
}

// End ends c (context.Canceled, unless its deadline or its parent ended it
// first) and takes it out of its Watcher. It is safe to call more than
// once and from any goroutine.
func (c *Context) End() {
	c.state.CompareAndSwap(live, ended)
	c.cancel(nil)
	if sh := c.shard; sh != nil {
		sh.mu.Lock()
		if c.index >= 0 {
			heap.Remove(&sh.queue, c.index)
		}
		sh.mu.Unlock()
	}
}

// Deadline implements context.Context.
func (c *Context) Deadline() (time.Time, bool) { return c.deadline, true }

// Err implements context.Context: context.DeadlineExceeded once the
// deadline ended c, else the error of what ended it.
func (c *Context) Err() error {
	err := c.Context.Err()
	if err == nil {
		return nil
	}
	// The first to look after c ended fixes who ended it: the deadline
	// if it did so first, else the parent or End.
	if c.state.CompareAndSwap(live, ended) || c.state.Load() == ended {
		return err
	}
	return context.DeadlineExceeded
}

// queue is a min-heap of Contexts by deadline (container/heap).
type queue []*Context

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}

func (q *queue) Push(x any) {
	c := x.(*Context)
	c.index = len(*q)
	*q = append(*q, c)
}

func (q *queue) Pop() any {
	old := *q
	n := len(old) - 1
	c := old[n]
	old[n] = nil
	c.index = -1
	*q = old[:n]
	return c
}
