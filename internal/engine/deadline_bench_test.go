package engine

import (
	"context"
	"sync"
	"testing"
	"time"
)

// BenchmarkTryDeadline is the experiment behind the try's timeout (issue
// 22): what a try's deadline costs as Run makes it, beside the
// alternatives. Each iteration makes the try's context, derives a child
// with context.WithCancel as net/http's Transport does for every request,
// asks for its Done channel (the transport selects on it) and ends both,
// the call finishing long before its deadline:
//
//   - std: context.WithDeadline, what Run does;
//   - caller-first: the caller's deadline comes first, so Run makes no
//     context of its own (the try runs on the caller's);
//   - own: the cheapest context type of our own that still keeps net/http
//     from starting a goroutine per child (an AfterFunc method, see
//     context.AfterFunc) and still needs a timer, since a deadline must fire
//     while the call hangs with nobody polling it.
func BenchmarkTryDeadline(b *testing.B) {
	b.Run("ctx=std", func(b *testing.B) {
		b.ReportAllocs()
		parent := context.Background()
		for b.Loop() {
			ctx, cancel := context.WithDeadline(parent, time.Now().Add(time.Second))
			c, cc := context.WithCancel(ctx)
			_ = c.Done()
			cc()
			cancel()
		}
	})
	b.Run("ctx=caller-first", func(b *testing.B) {
		b.ReportAllocs()
		parent, stop := context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
		defer stop()
		for b.Loop() {
			deadline := time.Now().Add(2 * time.Hour)
			ctx := parent
			if d, ok := parent.Deadline(); !ok || d.After(deadline) {
				b.Fatal("the caller's deadline comes first")
			}
			c, cc := context.WithCancel(ctx)
			_ = c.Done()
			cc()
		}
	})
	b.Run("ctx=own", func(b *testing.B) {
		b.ReportAllocs()
		parent := context.Background()
		for b.Loop() {
			ctx := newOwnDeadline(parent, time.Now().Add(time.Second))
			c, cc := context.WithCancel(ctx)
			_ = c.Done()
			cc()
			ctx.stop()
		}
	})
}

// ownDeadline is the experiment's context type: a deadline with one timer,
// children registered through AfterFunc (no goroutine per child), the
// parent assumed never to end (Background, as in the benchmark).
type ownDeadline struct {
	context.Context
	deadline time.Time
	timer    *time.Timer

	mu   sync.Mutex
	done chan struct{}
	err  error
	fns  []func()
}

func newOwnDeadline(parent context.Context, d time.Time) *ownDeadline {
	c := &ownDeadline{Context: parent, deadline: d}
	c.timer = time.AfterFunc(time.Until(d), c.expire)
	return c
}

func (c *ownDeadline) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *ownDeadline) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		if c.err != nil {
			close(c.done)
		}
	}
	return c.done
}

func (c *ownDeadline) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *ownDeadline) expire() { c.end(context.DeadlineExceeded) }

func (c *ownDeadline) stop() {
	c.timer.Stop()
	c.end(context.Canceled)
}

func (c *ownDeadline) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()
	for _, f := range fns {
		if f != nil {
			go f()
		}
	}
}

// AfterFunc is what context.WithCancel uses for a parent of a type it
// does not know, instead of a goroutine.
func (c *ownDeadline) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		go f()
		return func() bool { return false }
	}
	i := len(c.fns)
	c.fns = append(c.fns, f)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if i < len(c.fns) && c.fns[i] != nil {
			c.fns[i] = nil
			return true
		}
		return false
	}
}
