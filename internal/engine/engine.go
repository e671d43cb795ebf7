package engine

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/trace"
)

// Engine is what the adapters of one mesh share: the State in force, the
// propagator, the metrics and the logger, and two hooks into the mesh's
// manager for adapters that learn of services at run time (a gRPC
// resolver): Demand and Subscribe. Create it with New; it is safe for
// concurrent use.
type Engine struct {
	state   atomic.Pointer[State]
	prop    *trace.Propagator
	metrics *Metrics
	log     *slog.Logger
	local   string
	demand  func(service string) (release func())

	mu      sync.Mutex
	subs    map[uint64]func()
	nextSub uint64
}

// New returns an engine serving initial for the service local (the one
// whose inbound rules servers apply; "" for none). demand asks the mesh to
// discover a service until release is called; nil means the mesh cannot
// (then Demand does nothing).
func New(initial *State, prop *trace.Propagator, log *slog.Logger, local string, demand func(service string) (release func())) *Engine {
	e := &Engine{prop: prop, log: log, local: local, demand: demand, subs: map[uint64]func(){}}
	e.state.Store(initial)
	return e
}

// SetMetrics sets the metrics the adapters record into; call it before the
// engine serves.
func (e *Engine) SetMetrics(m *Metrics) { e.metrics = m }

// Load returns the State in force. The request path calls it once per call.
func (e *Engine) Load() *State { return e.state.Load() }

// Publish makes s the State in force, has the limiters it carried over
// take their old buckets over, and then calls every subscriber. Only the
// mesh's manager goroutine publishes.
func (e *Engine) Publish(s *State) {
	e.state.Store(s)
	for _, l := range s.carried {
		l.TakeOver() // once: a State WithInstances derives repeats the list
	}
	e.mu.Lock()
	subs := make([]func(), 0, len(e.subs))
	for _, f := range e.subs {
		subs = append(subs, f)
	}
	e.mu.Unlock()
	for _, f := range subs {
		f()
	}
}

// Subscribe registers f to be called after every Publish, from the
// publishing goroutine: f must not block (signal a goroutine of your own
// instead). cancel unregisters it.
func (e *Engine) Subscribe(f func()) (cancel func()) {
	e.mu.Lock()
	id := e.nextSub
	e.nextSub++
	e.subs[id] = f
	e.mu.Unlock()
	return func() {
		e.mu.Lock()
		delete(e.subs, id)
		e.mu.Unlock()
	}
}

// Demand asks the mesh to discover service (if it does not already) until
// release is called.
func (e *Engine) Demand(service string) (release func()) {
	if e.demand == nil {
		return func() {}
	}
	return e.demand(service)
}

// FirstUseWait bounds how long the first call to a service the mesh does
// not know yet waits for discovery to report an instance of it.
const FirstUseWait = 2 * time.Second

// AwaitInstances waits until the State in force has an instance of
// service and reports whether it does, waiting at most d (and never past
// ctx). It is the bounded wait of a service found on first use: after
// Demand, the mesh starts discovering it, and the first instance list
// takes the source's time to come.
func (e *Engine) AwaitInstances(ctx context.Context, service string, d time.Duration) bool {
	has := func() bool { return len(e.Load().Table().Instances(service, "")) > 0 }
	if has() {
		return true
	}
	changed := make(chan struct{}, 1)
	cancel := e.Subscribe(func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	})
	defer cancel()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for !has() {
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Propagator returns the mesh's trace and lane propagator.
func (e *Engine) Propagator() *trace.Propagator { return e.prop }

// Metrics returns the mesh's metrics, nil when they are off.
func (e *Engine) Metrics() *Metrics { return e.metrics }

// Local returns the name of the local service, "" when none was given.
func (e *Engine) Local() string { return e.local }

// Logger returns the mesh's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }
