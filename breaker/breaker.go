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
// is measured by the breaker itself, from [Breaker.Allow] to [Breaker.Done].
type Outcome int

// The outcomes a call reports. Any other value counts as Failure.
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

// ErrOpen is returned by [Breaker.Allow] and [Breaker.Do] when the breaker
// refuses a call: it is open, or half-open with every probe slot in use.
// Test for it with errors.Is; callers may wrap it with the destination's
// name.
var ErrOpen = errors.New("breaker: circuit open")

// The verdicts Done passes through gobreaker to its hooks. They never leave
// the package.
var (
	errFailure     = errors.New("breaker: failure")
	errSlowSuccess = errors.New("breaker: slow success")
	errSlowFailure = errors.New("breaker: slow failure")
	errIgnored     = errors.New("breaker: ignored")
)

// Option configures a [Breaker]. Options are built with the With functions
// of this package.
type Option interface{ apply(*options) }

type options struct {
	onStateChange func(name string, from, to State)
	jitter        func() float64
	now           func() time.Time
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

// WithClock replaces the clock that times calls (slow-call detection),
// rolls the window's buckets and times the open period. now must be
// monotonic and safe for concurrent use; nil means time.Now. Tests use it
// to step a breaker through its states without sleeping. [Breaker.DoneAt]
// takes a time read from this clock.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(o *options) {
		if now != nil {
			o.now = now
		}
	})
}

// event is one reported state transition waiting for the hook.
type event struct{ from, to State }

// Ticket is the admission of one call by [Breaker.Allow]; pass it to
// [Breaker.Done] when the call ends. The zero Ticket is not an admission.
type Ticket struct {
	gen   uint64 // the breaker's state generation at admission
	start int64  // ns since the breaker's epoch; 0 when slow-call timing is off
	probe bool   // holds a half-open probe slot
	ok    bool
}

// Admitted reports whether t is an admission (false for the zero Ticket).
func (t Ticket) Admitted() bool { return t.ok }

// Probe reports whether t holds one of the breaker's half-open probe
// slots, given back by [Breaker.Done].
func (t Ticket) Probe() bool { return t.probe }

// Breaker is a circuit breaker for one destination (a service or one of its
// instances). All methods are safe for concurrent use. Create it with [New].
type Breaker struct {
	name    string
	set     Settings
	cb      *gobreaker.CircuitBreaker[struct{}]
	ad      *adaptive // ModeAdaptive only; nil in ModeWindow
	clock   func() time.Time
	epoch   time.Time // origin of the monotonic nanosecond clock below
	maxProb int64     // Settings.HalfOpenProbes

	slowNs      int64 // Settings.SlowCallThreshold in ns; 0 = off
	onChange    func(name string, from, to State)
	jitterFloat func() float64

	// Lock-free state read on the request path.
	openUntil atomic.Int64  // deadline of the open period in ns since epoch; 0 = closed
	gen       atomic.Uint64 // bumped on every gobreaker state change, under its lock
	probes    atomic.Int64  // half-open probes admitted and not yet done
	trips     atomic.Uint32 // consecutive trips; written under gobreaker's lock
	pending   atomic.Bool   // mirrors halfOpenPending
	queued    atomic.Bool   // events are waiting for the hook

	// The closed state's counts live here, not in gobreaker, so that a
	// success costs one clock read and, unless slow calls are timed, no
	// lock (gobreaker's Execute takes its mutex twice and reads the clock
	// twice). gobreaker sees only the outcomes that can change the state:
	// failures while closed, every outcome while half-open; its
	// readyToTrip reads win.
	// Guarded by mu, and gbState is written under gobreaker's mutex too.
	// Lock order: gobreaker's mutex, then mu.
	mu      sync.Mutex
	gbState gobreaker.State
	win     window
	// closedGen is gen while gobreaker is closed and noGen otherwise,
	// written under mu: Done counts a success of the current closed state
	// without taking mu.
	closedGen atomic.Uint64

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
	o := options{jitter: rand.Float64, now: time.Now}
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	s = s.sanitize()
	b := &Breaker{
		name:        name,
		set:         s,
		clock:       o.now,
		epoch:       o.now(),
		maxProb:     int64(s.HalfOpenProbes),
		slowNs:      int64(s.SlowCallThreshold),
		onChange:    o.onStateChange,
		jitterFloat: o.jitter,
	}
	bucket := s.Window / time.Duration(s.Buckets)
	b.win.init(int64(bucket), s.Buckets)
	if s.Mode == ModeAdaptive {
		b.ad = newAdaptive(s)
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		MaxRequests:  s.HalfOpenProbes,
		Interval:     bucket * time.Duration(s.Buckets),
		BucketPeriod: bucket,
		// The open period is the Breaker's own deadline (it grows with
		// every trip, which gobreaker's fixed Timeout cannot do); gobreaker
		// may go half-open as soon as that deadline lets a call through.
		Timeout:       time.Nanosecond,
		ReadyToTrip:   b.readyToTrip,
		OnStateChange: b.gbStateChange,
		IsSuccessful:  b.isSuccessful,
		IsExcluded:    isExcluded,
	})
	return b
}

// noGen is never a generation: closedGen holds it while not closed.
const noGen = math.MaxUint64

// now reads the clock as nanoseconds since b.epoch.
func (b *Breaker) now() int64 { return int64(b.clock().Sub(b.epoch)) }

// Allow admits one call, or refuses it with [ErrOpen] while the breaker is
// open or every half-open probe slot is taken. An admitted call must be
// reported with Done, exactly once, whatever happens to it; a refused one
// must not. Allow and Done are the two halves of Do for callers whose call
// does not fit in a closure, such as a gRPC picker and its Done callback.
// They do not allocate; in the closed state Allow takes no lock.
//
// Why not gobreaker's TwoStepCircuitBreaker: its Allow returns a new closure
// per call (an allocation on every request) and cannot share state with
// the CircuitBreaker that Do uses. Here gobreaker still owns the rolling
// window, the trip decision and the half-open verdict: Done hands it each
// outcome through Execute, and admission (the open deadline and the probe
// slots) is decided in front of it, lock-free.
func (b *Breaker) Allow() (Ticket, error) {
	if b.ad != nil {
		return b.allowAdaptive()
	}
	if u := b.openUntil.Load(); u != 0 {
		if b.now() < u {
			return Ticket{}, ErrOpen
		}
		return b.allowProbe()
	}
	t := Ticket{gen: b.gen.Load(), ok: true}
	if b.slowNs > 0 {
		t.start = b.now()
	}
	return t, nil
}

// allowProbe admits a call once the open period has passed: gobreaker is
// (or now becomes) half-open and admits at most HalfOpenProbes at once.
func (b *Breaker) allowProbe() (Ticket, error) {
	st := b.cb.State() // moves gobreaker to half-open, lazily
	if b.pending.Load() {
		b.syncPending()
	}
	b.flushQueued()
	gen := b.gen.Load()
	t := Ticket{gen: gen, ok: true}
	switch st {
	case gobreaker.StateClosed: // closed by probes that finished meanwhile
	case gobreaker.StateHalfOpen:
		if b.probes.Add(1) > b.maxProb {
			b.probes.Add(-1)
			return Ticket{}, ErrOpen
		}
		t.probe = true
	default:
		return Ticket{}, ErrOpen
	}
	if b.slowNs > 0 {
		t.start = b.now()
	}
	return t, nil
}

// Done reports the outcome of a call admitted by Allow. An outcome from
// before the breaker last changed state (a call admitted while closed that
// ends after the breaker tripped) is ignored, as gobreaker ignores results
// of an older generation; the one exception is a success whose goroutine
// stalled between its checks and its count across the state change, which
// counts once in the new window. Done on a ticket that is not an admission
// does nothing.
func (b *Breaker) Done(t Ticket, o Outcome) {
	if t.ok && o != Ignored {
		b.DoneAt(t, o, b.clock())
		return
	}
	b.DoneAt(t, o, time.Time{})
}

// DoneAt is Done with the call's end time now, read from the breaker's
// clock (time.Now unless WithClock), for a caller that has read it
// already: a clock read costs about as much as the rest of Done. now is
// not read for an ignored outcome.
func (b *Breaker) DoneAt(t Ticket, o Outcome, now time.Time) {
	if !t.ok {
		return
	}
	if b.ad != nil {
		b.doneAdaptive(t, o, now)
		return
	}
	if t.probe {
		defer b.probes.Add(-1)
	}
	if o == Ignored {
		// gobreaker would count it as a request and as an exclusion,
		// which cancel out; skip its lock and its two clock reads.
		return
	}
	end := int64(now.Sub(b.epoch)) // rolls the window and times the call
	if o == Success && b.slowNs == 0 && b.closedGen.Load() == t.gen && b.win.addSuccess(end) {
		return // counted without the lock: a success changes no state
	}
	slow := b.slowNs > 0 && end-t.start >= b.slowNs
	failed := o != Success
	b.mu.Lock()
	if b.gen.Load() != t.gen {
		b.mu.Unlock()
		return // stale: the state changed since admission
	}
	v := verdict(o, slow)
	if b.gbState == gobreaker.StateClosed {
		b.win.record(end, failed, slow)
		failed = failed || b.slowNs > 0 && b.win.slowExceeded(b.set.MinRequests, b.set.SlowCallRatio)
		b.mu.Unlock()
		if !failed {
			return // a success changes no state: gobreaker need not see it
		}
		v = errFailure // gobreaker consults readyToTrip
	} else {
		b.mu.Unlock()
	}
	// Deliver transitions this outcome caused.
	defer b.flushQueued()
	b.cb.Execute(func() (struct{}, error) {
		// Checked again between gobreaker's before and after steps: a state
		// change in between would otherwise count this outcome in the new
		// state (gobreaker itself drops it if the change comes later).
		if b.gen.Load() != t.gen {
			return struct{}{}, errIgnored
		}
		return struct{}{}, v
	})
}

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
// straight to Do). No lock is held while call runs, so calls may nest. If
// call panics, the call counts as a failure and the panic propagates.
func (b *Breaker) Do(call func() Outcome) error {
	t, err := b.Allow()
	if err != nil {
		return err
	}
	o := Failure // if call panics
	defer func() { b.Done(t, o) }()
	o = call()
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
	if b.ad != nil {
		p := b.ad.ratio(b.now())
		b.reportAdaptive(p)
		return adaptiveState(p)
	}
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

// PeekState returns the breaker's state without any side effect (State
// may move the breaker to half-open): open while the open period holds,
// half-open once it has passed and until a recovery closes the breaker,
// closed otherwise. For tools that explain a decision.
func (b *Breaker) PeekState() State {
	if b.ad != nil {
		return adaptiveState(b.ad.ratio(b.now()))
	}
	switch {
	case !b.OpenUntil().IsZero():
		return StateOpen
	case b.trips.Load() > 0:
		return StateHalfOpen
	}
	return StateClosed
}

// Ready reports, without locking, whether Allow would admit a call now as
// far as the open period and the probe slots tell: false while the breaker
// is open and while it is half-open with every probe slot taken. A load
// balancer uses it to skip ejected instances.
func (b *Breaker) Ready() bool {
	u := b.openUntil.Load()
	if u == 0 {
		return true
	}
	return b.now() >= u && b.probes.Load() < b.maxProb
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
	return max(p, 1)
}

// The hooks below are called by gobreaker with its mutex held.

// gbStateChange follows gobreaker's transitions: it bumps the generation,
// counts trips, sets the open deadline, clears the slow-call window and
// queues the transitions to report.
func (b *Breaker) gbStateChange(_ string, _, to gobreaker.State) {
	now := b.now()
	b.mu.Lock()
	gen := b.gen.Add(1)
	b.gbState = to
	if to == gobreaker.StateClosed {
		b.closedGen.Store(gen)
	} else {
		b.closedGen.Store(noGen)
	}
	b.win.reset(now)
	b.mu.Unlock()
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

// isSuccessful decodes Done's verdict for gobreaker, which sees failures
// while closed and every outcome while half-open, where a slow call is a
// failed probe.
func (b *Breaker) isSuccessful(err error) bool { return err == nil }

func isExcluded(err error) bool { return err == errIgnored }

// readyToTrip is gobreaker's ReadyToTrip, called after a failure while
// closed; it reads the breaker's own window (gobreaker's counts hold only
// the failures). Ratios are over completed calls: calls still running and
// ignored calls count neither in the numerator nor in MinRequests.
func (b *Breaker) readyToTrip(gobreaker.Counts) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.win.failExceeded(b.set.MinRequests, b.set.FailureRatio) ||
		b.slowNs > 0 && b.win.slowExceeded(b.set.MinRequests, b.set.SlowCallRatio)
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
