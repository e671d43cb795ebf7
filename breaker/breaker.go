package breaker

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// State is the state of a [Breaker].
type State int

// The states of a Breaker.
const (
	// StateClosed admits every call and counts outcomes.
	StateClosed State = iota
	// StateHalfOpen admits at most Settings.HalfOpenProbes concurrent probes.
	StateHalfOpen
	// StateOpen refuses every call until the open period has elapsed.
	StateOpen
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case StateClosed:
		return "closed"
	case StateHalfOpen:
		return "half-open"
	case StateOpen:
		return "open"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// Outcome classifies a finished call for the breaker. How long the call took
// is measured by [Breaker.Do] itself.
type Outcome int

// The outcomes a call reports to [Breaker.Do]. Any other value counts as
// Failure.
const (
	// Success counts as a good call.
	Success Outcome = iota
	// Failure counts against the destination (for instance a transport
	// error, an HTTP 5xx or a gRPC Unavailable).
	Failure
	// Ignored counts neither way and frees a half-open probe slot: use it
	// when the outcome says nothing about the destination, e.g. the caller's
	// own context was cancelled or the request was never sent.
	Ignored
)

// String returns "success", "failure" or "ignored".
func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Failure:
		return "failure"
	case Ignored:
		return "ignored"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

// ErrOpen is returned by [Breaker.Do] when it refuses a call: the breaker is
// open, or half-open with every probe slot in use. Test for it with
// errors.Is; callers may wrap it with the destination's name.
var ErrOpen = errors.New("breaker: circuit open")

// The verdicts Do passes through gobreaker to its hooks. They never leave
// the package.
var (
	errFailure     = errors.New("breaker: failure")
	errSlowSuccess = errors.New("breaker: slow success")
	errSlowFailure = errors.New("breaker: slow failure")
	errIgnored     = errors.New("breaker: ignored")
	errGated       = errors.New("breaker: open period not elapsed")
)

// Option configures a [Breaker]. Options are built with the With functions
// of this package.
type Option interface{ apply(*options) }

type options struct {
	onStateChange func(name string, from, to State)
	jitter        func() float64
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithOnStateChange registers f to be called on every state transition of
// the breaker, with the breaker's name. f is called synchronously by a
// goroutine that is using the breaker (the one that caused the transition,
// or one already delivering earlier transitions), after all locks are
// released and in transition order, so f may call any method of the
// breaker, Do included. A slow f delays that goroutine's call. nil means no
// hook.
func WithOnStateChange(f func(name string, from, to State)) Option {
	return optionFunc(func(o *options) {
		if f != nil {
			o.onStateChange = f
		}
	})
}

// WithJitterSource replaces the random source for Settings.Jitter: f must
// return a number in [0, 1) (values outside are clamped). It is called once
// per trip; if one f is shared by several breakers it must be safe for
// concurrent use. nil means math/rand/v2.Float64. Tests use it to make
// jitter deterministic.
func WithJitterSource(f func() float64) Option {
	return optionFunc(func(o *options) {
		if f != nil {
			o.jitter = f
		}
	})
}

// event is one reported state transition waiting for the hook.
type event struct{ from, to State }

// Breaker is a circuit breaker for one destination (a service or one of its
// instances). All methods are safe for concurrent use. Create it with [New].
type Breaker struct {
	name  string
	set   Settings
	cb    *gobreaker.CircuitBreaker[struct{}]
	epoch time.Time // origin of the monotonic nanosecond clock below

	slowNs      int64 // Settings.SlowCallThreshold in ns; 0 = off
	openFloor   int64 // gobreaker's Timeout: the shortest open period, ns
	onChange    func(name string, from, to State)
	jitterFloat func() float64

	// Lock-free state read on the request path.
	openUntil atomic.Int64  // deadline of the open period in ns since epoch; 0 = none
	trips     atomic.Uint32 // consecutive trips; written under gobreaker's lock
	pending   atomic.Bool   // mirrors halfOpenPending
	queued    atomic.Bool   // events are waiting for the hook
	// lastEnd is the end time of a recently finished call (slow-call mode
	// only). The slow-call window rolls by it instead of reading the clock
	// again; it lags the true time by at most a lock wait.
	lastEnd atomic.Int64

	// Guarded by gobreaker's mutex: only touched from its hooks, which it
	// calls with the mutex held.
	gbState gobreaker.State
	slow    slowWindow

	// Guarded by evMu. Lock order: gobreaker's mutex, then evMu.
	evMu     sync.Mutex
	reported State // the state last reported to the hook
	// halfOpenPending: gobreaker went half-open while our deadline still
	// held; the open → half-open transition is reported once it passes.
	halfOpenPending bool
	delivering      bool
	queue, spare    []event
}

// New returns a closed breaker named name (the name is passed to the
// state-change hook; it is not interpreted). New never fails: fields of s
// that [Settings.Validate] would reject are replaced by their defaults (or,
// for OpenMax below OpenBase, by OpenBase), and [Breaker.Settings] reports
// what is in effect. Validate rule input before calling New.
func New(name string, s Settings, opts ...Option) *Breaker {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	if o.jitter == nil {
		o.jitter = rand.Float64
	}
	s = s.sanitize()
	b := &Breaker{
		name:        name,
		set:         s,
		epoch:       time.Now(),
		slowNs:      int64(s.SlowCallThreshold),
		onChange:    o.onStateChange,
		jitterFloat: o.jitter,
	}
	b.openFloor = max(int64(float64(s.OpenBase)*(1-s.Jitter)), 1)
	bucket := s.Window / time.Duration(s.Buckets)
	if b.slowNs > 0 {
		b.slow = newSlowWindow(int64(bucket), s.Buckets)
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          name,
		MaxRequests:   s.HalfOpenProbes,
		Interval:      bucket * time.Duration(s.Buckets),
		BucketPeriod:  bucket,
		Timeout:       time.Duration(b.openFloor),
		ReadyToTrip:   b.readyToTrip,
		OnStateChange: b.gbStateChange,
		IsSuccessful:  b.isSuccessful,
		IsExcluded:    isExcluded,
	})
	return b
}

// now reads the monotonic clock as nanoseconds since b.epoch (always >= 0).
func (b *Breaker) now() int64 { return int64(time.Since(b.epoch)) }

// Do runs call if the breaker admits it and records the [Outcome] call
// returns; how long call took decides whether it was slow. Do returns nil
// when call ran and [ErrOpen], without running call, when the breaker
// refused it. Results of call (a response, an error) travel through
// variables the closure captures:
//
//	var resp *http.Response
//	var err error
//	if berr := b.Do(func() breaker.Outcome {
//		resp, err = next.RoundTrip(req)
//		return classify(resp, err)
//	}); berr != nil {
//		return nil, berr
//	}
//
// Do does not allocate when call does not escape (a closure literal passed
// straight to Do). No lock is held while call runs, so calls may nest: a
// per-service breaker's call may run a per-instance breaker's Do. If call
// panics, the call counts as a failure and the panic propagates.
func (b *Breaker) Do(call func() Outcome) error {
	if u := b.openUntil.Load(); u != 0 {
		if b.now() < u {
			return ErrOpen
		}
		if b.pending.Load() {
			b.syncPending()
		}
	}
	return b.run(call)
}

// run is Do after the lock-free gate check.
func (b *Breaker) run(call func() Outcome) error {
	gated := false
	// Deliver transitions this call caused, even if call panics.
	defer b.flushQueued()
	_, err := b.cb.Execute(func() (struct{}, error) {
		// gobreaker may have gone half-open before our longer open period
		// elapsed (a goroutine that passed the check in Do long ago). Such a
		// call gives its probe slot back as an exclusion and is refused.
		if u := b.openUntil.Load(); u != 0 && b.now() < u {
			gated = true
			return struct{}{}, errGated
		}
		if b.slowNs == 0 {
			return struct{}{}, verdict(call(), false)
		}
		start := b.now()
		o := call()
		end := b.now()
		b.lastEnd.Store(end)
		return struct{}{}, verdict(o, end-start >= b.slowNs)
	})
	if gated || err == gobreaker.ErrOpenState || err == gobreaker.ErrTooManyRequests {
		return ErrOpen
	}
	return nil
}

// verdict encodes an outcome and its slowness as the error gobreaker sees.
func verdict(o Outcome, slow bool) error {
	switch o {
	case Success:
		if slow {
			return errSlowSuccess
		}
		return nil
	case Ignored:
		return errIgnored
	default:
		if slow {
			return errSlowFailure
		}
		return errFailure
	}
}

// State returns the breaker's state. It reports StateOpen while the open
// period holds, whatever gobreaker thinks internally, and moves the breaker
// to half-open once the period has elapsed (transitions are lazy: they
// happen when the breaker is used or asked).
func (b *Breaker) State() State {
	if u := b.openUntil.Load(); u != 0 && b.now() < u {
		return StateOpen
	}
	s := fromGobreaker(b.cb.State())
	if b.pending.Load() {
		b.syncPending()
	}
	b.flushQueued()
	return s
}

// Ready reports, without locking, whether the breaker's open period is over,
// i.e. false while it is open. A load balancer uses it to skip ejected
// instances. A ready breaker may still refuse a call when it is half-open
// and all its probes are in flight.
func (b *Breaker) Ready() bool {
	u := b.openUntil.Load()
	return u == 0 || b.now() >= u
}

// OpenUntil returns when the current open period ends, or the zero Time if
// the breaker is not open.
func (b *Breaker) OpenUntil() time.Time {
	u := b.openUntil.Load()
	if u == 0 || b.now() >= u {
		return time.Time{}
	}
	return b.epoch.Add(time.Duration(u))
}

// Trips returns the number of consecutive trips: 1 after the first trip,
// growing with each failed recovery, and 0 again once the breaker closes.
func (b *Breaker) Trips() int { return int(b.trips.Load()) }

// Settings returns the policy in effect, defaults filled in; compare it with
// a rule's Settings.WithDefaults() to tell whether the rule changed.
func (b *Breaker) Settings() Settings { return b.set }

// Name returns the name given to New.
func (b *Breaker) Name() string { return b.name }

func fromGobreaker(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return StateOpen
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	default:
		return StateClosed
	}
}

// openPeriod returns the open period, in ns, for the given trip number.
// Called under gobreaker's lock.
func (b *Breaker) openPeriod(trip uint32) int64 {
	base, maxP := float64(b.set.OpenBase), float64(b.set.OpenMax)
	d := base * math.Pow(b.set.Multiplier, float64(trip-1))
	if !(d <= maxP) { // also catches +Inf and NaN
		d = maxP
	}
	if j := b.set.Jitter; j > 0 {
		u := b.jitterFloat()
		if !(u >= 0) { // also NaN
			u = 0
		} else if u >= 1 {
			u = math.Nextafter(1, 0)
		}
		d *= 1 + j*(2*u-1)
		d = min(d, maxP)
	}
	p := int64(d)
	if d >= math.MaxInt64 {
		p = math.MaxInt64
	}
	return max(p, b.openFloor)
}

// The hooks below are called by gobreaker with its mutex held.

// gbStateChange follows gobreaker's transitions: it counts trips, sets the
// open deadline, clears the slow-call window and queues the transitions to
// report.
func (b *Breaker) gbStateChange(_ string, _, to gobreaker.State) {
	now := b.now()
	b.gbState = to
	if b.slowNs > 0 {
		b.slow.reset(now)
	}
	switch to {
	case gobreaker.StateOpen:
		trip := b.trips.Add(1)
		p := b.openPeriod(trip)
		if p > math.MaxInt64-now {
			p = math.MaxInt64 - now
		}
		b.openUntil.Store(now + p)
	case gobreaker.StateClosed:
		b.trips.Store(0)
		b.openUntil.Store(0)
	}

	b.evMu.Lock()
	defer b.evMu.Unlock()
	if to == gobreaker.StateHalfOpen {
		if now < b.openUntil.Load() {
			b.halfOpenPending = true
			b.pending.Store(true)
			return
		}
		b.emit(StateHalfOpen)
		return
	}
	if b.halfOpenPending {
		b.clearPending()
		b.emit(StateHalfOpen)
	}
	b.emit(fromGobreaker(to))
}

// isSuccessful decodes Do's verdict. It also feeds the slow-call window and
// turns a call into a failure when the window crosses the slow-call ratio,
// so that gobreaker consults readyToTrip.
func (b *Breaker) isSuccessful(err error) bool {
	ok, slow := false, false
	switch err {
	case nil:
		ok = true
	case errSlowSuccess:
		ok, slow = true, true
	case errSlowFailure:
		slow = true
	}
	if b.slowNs == 0 {
		return ok
	}
	if b.gbState == gobreaker.StateHalfOpen {
		return ok && !slow // a slow probe is a failed probe
	}
	b.slow.record(b.lastEnd.Load(), slow)
	if b.slow.exceeded(b.set.MinRequests, b.set.SlowCallRatio) {
		return false
	}
	return ok
}

func isExcluded(err error) bool { return err == errIgnored || err == errGated }

// readyToTrip is gobreaker's ReadyToTrip, called after a failure while
// closed. Ratios are over completed calls: calls still running and ignored
// calls count neither in the numerator nor in MinRequests.
func (b *Breaker) readyToTrip(c gobreaker.Counts) bool {
	n := c.TotalSuccesses + c.TotalFailures
	if n > 0 && n >= b.set.MinRequests && float64(c.TotalFailures)/float64(n) >= b.set.FailureRatio {
		return true
	}
	return b.slowNs > 0 && b.slow.exceeded(b.set.MinRequests, b.set.SlowCallRatio)
}

// Event delivery.

// emit records a transition of the reported state and queues it for the
// hook. Called with evMu held.
func (b *Breaker) emit(to State) {
	from := b.reported
	if from == to {
		return
	}
	b.reported = to
	if b.onChange == nil {
		return
	}
	b.queue = append(b.queue, event{from, to})
	b.queued.Store(true)
}

// clearPending is called with evMu held.
func (b *Breaker) clearPending() {
	b.halfOpenPending = false
	b.pending.Store(false)
}

// syncPending reports a deferred open → half-open transition once the open
// deadline has passed. While halfOpenPending is set gobreaker is half-open:
// any later gobreaker transition clears it under evMu.
func (b *Breaker) syncPending() {
	b.evMu.Lock()
	if b.halfOpenPending && b.now() >= b.openUntil.Load() {
		b.clearPending()
		b.emit(StateHalfOpen)
	}
	b.evMu.Unlock()
	b.flushQueued()
}

// flushQueued delivers queued transitions, if any.
func (b *Breaker) flushQueued() {
	if b.queued.Load() {
		b.flush()
	}
}

// flush calls the hook for queued transitions, outside every lock. One
// goroutine delivers at a time, so transitions arrive in order; others just
// leave their transitions in the queue for it.
func (b *Breaker) flush() {
	b.evMu.Lock()
	if b.delivering {
		b.evMu.Unlock()
		return
	}
	b.delivering = true
	done := false
	defer func() {
		if !done { // the hook panicked: let the next caller deliver
			b.evMu.Lock()
			b.delivering = false
			b.evMu.Unlock()
		}
	}()
	for len(b.queue) > 0 {
		batch := b.queue
		b.queue = b.spare[:0]
		b.spare = nil
		b.queued.Store(false)
		b.evMu.Unlock()
		for _, e := range batch {
			b.onChange(b.name, e.from, e.to)
		}
		b.evMu.Lock()
		b.spare = batch[:0]
	}
	b.delivering = false
	done = true
	b.evMu.Unlock()
}
