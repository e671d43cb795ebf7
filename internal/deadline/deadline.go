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
	"sync"
	"sync/atomic"
	"time"
)

// Watcher ends the Contexts made by WithDeadline at their deadlines. The
// zero Watcher is ready to use; it is safe for concurrent use. It starts
// no goroutine: its timer's function runs only when a deadline passes.
type Watcher struct {
	mu    sync.Mutex
	queue queue       // the Contexts in flight, by deadline
	timer *time.Timer // fires at armed; nil until first armed
	armed time.Time   // when the timer fires; zero when it is not armed
}

// Context is a context whose deadline a Watcher watches. End it with End
// once the work it bounds is over.
type Context struct {
	context.Context // a cancelCtx child of the parent: Done, Value
	cancel          context.CancelCauseFunc
	deadline        time.Time
	w               *Watcher
	index           int          // in w.queue; -1 once out of it (guarded by w.mu)
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
	c := &Context{Context: inner, cancel: cancel, deadline: d, w: w, index: -1}
	if !time.Now().Before(d) {
		c.expire()
		return c
	}
	w.mu.Lock()
	heap.Push(&w.queue, c)
	if w.armed.IsZero() || d.Before(w.armed) {
		w.arm(d)
	}
	w.mu.Unlock()
	return c
}

// arm sets the timer to fire at d; w.mu is held.
func (w *Watcher) arm(d time.Time) {
	w.armed = d
	if w.timer == nil {
		w.timer = time.AfterFunc(time.Until(d), w.fire)
		return
	}
	w.timer.Reset(time.Until(d))
}

// fire ends the Contexts whose deadline has passed and arms the timer for
// the next one. It also runs when an earlier deadline re-armed the timer
// while it was firing: it then finds nothing due and arms it again.
func (w *Watcher) fire() {
	var due []*Context
	w.mu.Lock()
	now := time.Now()
	for len(w.queue) > 0 && !w.queue[0].deadline.After(now) {
		due = append(due, heap.Pop(&w.queue).(*Context))
	}
	w.armed = time.Time{}
	if len(w.queue) > 0 {
		w.arm(w.queue[0].deadline)
	}
	w.mu.Unlock()
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
	w := c.w
	w.mu.Lock()
	if c.index >= 0 {
		heap.Remove(&w.queue, c.index)
	}
	w.mu.Unlock()
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
func (q queue) Less(i, j int) bool { return q[i].deadline.Before(q[j].deadline) }
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
