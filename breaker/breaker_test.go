package breaker

import (
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// recorder collects state-change events.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func (r *recorder) hook(_ string, from, to State) {
	r.mu.Lock()
	r.events = append(r.events, event{from, to})
	r.mu.Unlock()
}

func (r *recorder) got() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

func ev(from, to State) event { return event{from, to} }

func checkEvents(t *testing.T, r *recorder, want ...event) {
	t.Helper()
	got := r.got()
	if len(got) != len(want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("events = %v, want %v", got, want)
		}
	}
}

func do(t *testing.T, b *Breaker, o Outcome) {
	t.Helper()
	ran := false
	if err := b.Do(func() Outcome { ran = true; return o }); err != nil {
		t.Fatalf("Do(%v) = %v, want admitted (state %v)", o, err, b.State())
	}
	if !ran {
		t.Fatal("Do returned nil without running the call")
	}
}

func refused(t *testing.T, b *Breaker) {
	t.Helper()
	ran := false
	err := b.Do(func() Outcome { ran = true; return Success })
	if !errors.Is(err, ErrOpen) {
		t.Fatalf("Do = %v, want ErrOpen", err)
	}
	if ran {
		t.Fatal("refused call ran")
	}
}

// clock is a manual clock for WithClock: time moves only when a test says.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// waitReady moves the clock to the end of the open period.
func waitReady(t *testing.T, c *clock, b *Breaker) {
	t.Helper()
	if u := b.OpenUntil(); !u.IsZero() {
		c.Advance(u.Sub(c.Now()))
	}
	if b.OpenUntil() != (time.Time{}) || b.State() == StateOpen {
		t.Fatalf("breaker still open after its period (open until %v)", b.OpenUntil())
	}
}

// trip runs failing calls, checks that they open the breaker and returns
// the clock's time of the trip.
func trip(t *testing.T, c *clock, b *Breaker, failing func()) time.Time {
	t.Helper()
	failing()
	if s := b.State(); s != StateOpen {
		t.Fatalf("state after tripping calls = %v, want open", s)
	}
	return c.Now()
}

// checkPeriod asserts the open period of the trip at tripped is want.
func checkPeriod(t *testing.T, b *Breaker, tripped time.Time, want time.Duration) {
	t.Helper()
	until := b.OpenUntil()
	if until.IsZero() {
		t.Fatal("OpenUntil is zero right after a trip")
	}
	if got := until.Sub(tripped); got != want {
		t.Fatalf("open period = %v, want %v", got, want)
	}
}

func TestStateWalk(t *testing.T) {
	const base = 40 * time.Millisecond
	rec := &recorder{}
	c := newClock()
	b := New("svc", Settings{
		MinRequests:    4,
		FailureRatio:   0.5,
		OpenBase:       base,
		Multiplier:     2,
		OpenMax:        4 * base,
		HalfOpenProbes: 2,
	}, WithOnStateChange(rec.hook), WithClock(c.Now))

	if b.State() != StateClosed || !b.Ready() || b.Trips() != 0 || !b.OpenUntil().IsZero() {
		t.Fatalf("new breaker: state %v ready %v trips %d until %v", b.State(), b.Ready(), b.Trips(), b.OpenUntil())
	}

	// Below MinRequests nothing trips, even at 100% failures.
	do(t, b, Success)
	do(t, b, Failure)
	do(t, b, Failure)
	if b.State() != StateClosed {
		t.Fatalf("tripped below MinRequests")
	}
	// The 4th completed call reaches MinRequests with 3/4 failures.
	tripped := trip(t, c, b, func() { do(t, b, Failure) })
	checkPeriod(t, b, tripped, base)
	if b.Trips() != 1 || b.Ready() {
		t.Fatalf("after trip: trips %d ready %v", b.Trips(), b.Ready())
	}
	refused(t, b)
	checkEvents(t, rec, ev(StateClosed, StateOpen))

	// Open → half-open after the period; not a nanosecond earlier.
	c.Advance(base - time.Nanosecond)
	refused(t, b)
	if s := b.State(); s != StateOpen {
		t.Fatalf("state 1ns before the period ends = %v, want open", s)
	}
	c.Advance(time.Nanosecond)
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("state after open period = %v, want half-open", s)
	}
	checkEvents(t, rec, ev(StateClosed, StateOpen), ev(StateOpen, StateHalfOpen))

	// A failed probe trips again, with longer and longer periods up to the cap.
	want := []time.Duration{2 * base, 4 * base, 4 * base}
	for i, p := range want {
		tripped = trip(t, c, b, func() { do(t, b, Failure) })
		checkPeriod(t, b, tripped, p)
		if b.Trips() != i+2 {
			t.Fatalf("trips = %d, want %d", b.Trips(), i+2)
		}
		refused(t, b)
		waitReady(t, c, b)
	}

	// HalfOpenProbes good probes close it and reset the trip count.
	do(t, b, Success)
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("state after 1 of 2 probes = %v, want half-open", s)
	}
	do(t, b, Success)
	if s := b.State(); s != StateClosed {
		t.Fatalf("state after 2 good probes = %v, want closed", s)
	}
	if b.Trips() != 0 || !b.OpenUntil().IsZero() || !b.Ready() {
		t.Fatalf("after recovery: trips %d until %v ready %v", b.Trips(), b.OpenUntil(), b.Ready())
	}

	// The next trip starts again from OpenBase. The window was cleared on
	// the state change, so MinRequests applies afresh.
	do(t, b, Failure)
	do(t, b, Failure)
	do(t, b, Failure)
	if b.State() != StateClosed {
		t.Fatal("window not cleared on recovery")
	}
	tripped = trip(t, c, b, func() { do(t, b, Failure) })
	checkPeriod(t, b, tripped, base)
	if b.Trips() != 1 {
		t.Fatalf("trips after recovery and new trip = %d, want 1", b.Trips())
	}

	o, h := StateOpen, StateHalfOpen
	checkEvents(t, rec,
		ev(StateClosed, o), ev(o, h),
		ev(h, o), ev(o, h),
		ev(h, o), ev(o, h),
		ev(h, o), ev(o, h),
		ev(h, StateClosed), ev(StateClosed, o))
}

func TestGrowthCapWithLargeMultiplier(t *testing.T) {
	c := newClock()
	b := New("svc", Settings{MinRequests: 1, OpenBase: 10 * time.Millisecond, OpenMax: 30 * time.Millisecond, Multiplier: 1e300, HalfOpenProbes: 1}, WithClock(c.Now))
	checkPeriod(t, b, trip(t, c, b, func() { do(t, b, Failure) }), 10*time.Millisecond)
	for range 3 {
		waitReady(t, c, b)
		checkPeriod(t, b, trip(t, c, b, func() { do(t, b, Failure) }), 30*time.Millisecond)
	}
}

func TestMultiplierOneKeepsPeriod(t *testing.T) {
	c := newClock()
	b := New("svc", Settings{MinRequests: 1, OpenBase: 20 * time.Millisecond, Multiplier: 1, HalfOpenProbes: 1}, WithClock(c.Now))
	for range 3 {
		checkPeriod(t, b, trip(t, c, b, func() { do(t, b, Failure) }), 20*time.Millisecond)
		waitReady(t, c, b)
	}
}

func TestJitter(t *testing.T) {
	const base = 100 * time.Millisecond
	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{
		{0, 80 * time.Millisecond},     // 1 - 0.2
		{0.5, base},                    // no change
		{0.75, 110 * time.Millisecond}, // 1 + 0.2*0.5
		{2, 120 * time.Millisecond},    // clamped to just below 1: ~1+0.2
		{math.NaN(), 80 * time.Millisecond},
	} {
		c := newClock()
		b := New("svc", Settings{MinRequests: 1, OpenBase: base, OpenMax: time.Second, Jitter: 0.2},
			WithJitterSource(func() float64 { return tc.u }), WithClock(c.Now))
		tripped := trip(t, c, b, func() { do(t, b, Failure) })
		// Allow 1µs for float rounding of the clamped source.
		if got := b.OpenUntil().Sub(tripped); got < tc.want-time.Microsecond || got > tc.want {
			t.Errorf("u=%v: open period %v, want %v", tc.u, got, tc.want)
		}
	}

	// Jitter never pushes the period above OpenMax.
	c := newClock()
	b := New("svc", Settings{MinRequests: 1, OpenBase: base, OpenMax: base, Jitter: 0.5},
		WithJitterSource(func() float64 { return 0.99 }), WithClock(c.Now))
	checkPeriod(t, b, trip(t, c, b, func() { do(t, b, Failure) }), base)
}

func TestSlowCalls(t *testing.T) {
	const threshold = 50 * time.Millisecond
	// slow returns a call that takes threshold on c and ends with o.
	slow := func(c *clock, o Outcome) func() Outcome {
		return func() Outcome { c.Advance(threshold); return o }
	}
	fast := func(c *clock, o Outcome) func() Outcome {
		return func() Outcome { c.Advance(threshold - time.Nanosecond); return o }
	}
	run := func(t *testing.T, b *Breaker, call func() Outcome) {
		t.Helper()
		if err := b.Do(call); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("trips on slow ratio", func(t *testing.T) {
		c := newClock()
		b := New("svc", Settings{
			MinRequests:       4,
			SlowCallThreshold: threshold,
			SlowCallRatio:     0.5,
			OpenBase:          20 * time.Millisecond,
			HalfOpenProbes:    1,
		}, WithClock(c.Now))
		run(t, b, fast(c, Success))
		run(t, b, fast(c, Success))
		run(t, b, slow(c, Success))
		if b.State() != StateClosed {
			t.Fatal("tripped below MinRequests")
		}
		run(t, b, slow(c, Success))
		if s := b.State(); s != StateOpen {
			t.Fatalf("state after 2 slow of 4 = %v, want open", s)
		}
		// A slow probe is a failed probe.
		waitReady(t, c, b)
		run(t, b, slow(c, Success))
		if s := b.State(); s != StateOpen || b.Trips() != 2 {
			t.Fatalf("after slow probe: state %v trips %d, want open, 2", s, b.Trips())
		}
		// A fast probe closes it.
		waitReady(t, c, b)
		run(t, b, fast(c, Success))
		if s := b.State(); s != StateClosed {
			t.Fatalf("after fast probe: %v, want closed", s)
		}
	})

	t.Run("default ratio needs all slow", func(t *testing.T) {
		c := newClock()
		b := New("svc", Settings{MinRequests: 2, SlowCallThreshold: threshold}, WithClock(c.Now))
		run(t, b, fast(c, Success))
		run(t, b, slow(c, Success))
		run(t, b, slow(c, Success))
		if s := b.State(); s != StateClosed {
			t.Fatalf("1 fast + 2 slow tripped with ratio 1: %v", s)
		}
		b2 := New("svc", Settings{MinRequests: 2, SlowCallThreshold: threshold}, WithClock(c.Now))
		run(t, b2, slow(c, Success))
		run(t, b2, slow(c, Success))
		if s := b2.State(); s != StateOpen {
			t.Fatalf("all slow: %v, want open", s)
		}
	})

	t.Run("slow failures do not double count", func(t *testing.T) {
		// Failure ratio 1 and slow ratio 1: two slow failures and two fast
		// successes trip neither way.
		c := newClock()
		b := New("svc", Settings{MinRequests: 4, FailureRatio: 1, SlowCallThreshold: threshold}, WithClock(c.Now))
		run(t, b, fast(c, Success))
		run(t, b, fast(c, Success))
		run(t, b, slow(c, Failure))
		run(t, b, slow(c, Failure))
		if s := b.State(); s != StateClosed {
			t.Fatalf("state = %v, want closed", s)
		}
	})

	t.Run("off by default", func(t *testing.T) {
		c := newClock()
		b := New("svc", Settings{MinRequests: 2}, WithClock(c.Now))
		run(t, b, slow(c, Success))
		run(t, b, slow(c, Success))
		if s := b.State(); s != StateClosed {
			t.Fatalf("state = %v, want closed", s)
		}
	})

	t.Run("ignored slow calls do not count", func(t *testing.T) {
		c := newClock()
		b := New("svc", Settings{MinRequests: 2, SlowCallThreshold: threshold}, WithClock(c.Now))
		run(t, b, slow(c, Ignored))
		run(t, b, slow(c, Ignored))
		if s := b.State(); s != StateClosed {
			t.Fatalf("state = %v, want closed", s)
		}
	})
}

func TestWindowRolls(t *testing.T) {
	var w window
	w.init(10, 3) // buckets of 10ns, window of 30ns
	w.reset(0)
	w.record(0, true, true)
	w.record(12, false, false)
	w.record(25, false, true)
	if w.total() != 3 || w.slow != 2 || w.failed != 1 {
		t.Fatalf("total %d failed %d slow %d, want 3 1 2", w.total(), w.failed, w.slow)
	}
	w.record(31, false, false) // bucket 0 (one slow failure) expires
	if w.total() != 3 || w.slow != 1 || w.failed != 0 {
		t.Fatalf("after roll: total %d failed %d slow %d, want 3 0 1", w.total(), w.failed, w.slow)
	}
	if !w.slowExceeded(3, 1.0/3) || w.slowExceeded(3, 0.5) || w.slowExceeded(4, 0.1) || w.failExceeded(3, 0.1) {
		t.Fatal("exceeded misjudged the window")
	}
	w.record(1000, true, false) // everything expired
	if w.total() != 1 || w.slow != 0 || w.failed != 1 {
		t.Fatalf("after long gap: total %d failed %d slow %d, want 1 1 0", w.total(), w.failed, w.slow)
	}
}

func TestIgnoredOutcomes(t *testing.T) {
	c := newClock()
	b := New("svc", Settings{MinRequests: 4, OpenBase: 20 * time.Millisecond, HalfOpenProbes: 1}, WithClock(c.Now))
	for range 10 {
		do(t, b, Ignored)
	}
	do(t, b, Failure)
	do(t, b, Failure)
	do(t, b, Failure)
	if s := b.State(); s != StateClosed {
		t.Fatalf("ignored calls counted towards MinRequests: %v", s)
	}
	do(t, b, Failure)
	if s := b.State(); s != StateOpen {
		t.Fatalf("state = %v, want open", s)
	}

	// In half-open an ignored probe neither closes nor reopens, and frees
	// its slot for the next probe.
	waitReady(t, c, b)
	do(t, b, Ignored)
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("after ignored probe: %v, want half-open", s)
	}
	do(t, b, Success)
	if s := b.State(); s != StateClosed {
		t.Fatalf("after good probe: %v, want closed", s)
	}
}

func TestUnknownOutcomeIsFailure(t *testing.T) {
	b := New("svc", Settings{MinRequests: 1})
	do(t, b, Outcome(42))
	if s := b.State(); s != StateOpen {
		t.Fatalf("state = %v, want open", s)
	}
}

func TestHalfOpenProbeBound(t *testing.T) {
	const probes = 3
	c := newClock()
	b := New("svc", Settings{MinRequests: 1, OpenBase: 20 * time.Millisecond, HalfOpenProbes: probes}, WithClock(c.Now))
	do(t, b, Failure)
	waitReady(t, c, b)

	var tickets []Ticket
	for i := range probes {
		if !b.Ready() {
			t.Fatalf("Ready is false with %d of %d probe slots taken", i, probes)
		}
		tk, err := b.Allow()
		if err != nil || !tk.Admitted() {
			t.Fatalf("probe %d: %v", i, err)
		}
		tickets = append(tickets, tk)
	}
	// Every slot is busy: more callers are refused without running, and a
	// balancer asking Ready is told to look elsewhere.
	for range 5 {
		refused(t, b)
	}
	if b.Ready() {
		t.Fatal("Ready is true with every probe slot taken")
	}
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("state with probes in flight = %v, want half-open", s)
	}
	// An ignored probe frees its slot without deciding anything.
	b.Done(tickets[0], Ignored)
	if !b.Ready() {
		t.Fatal("Ready is false after a probe slot was freed")
	}
	tk, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	tickets[0] = tk
	for _, tk := range tickets {
		b.Done(tk, Success)
	}
	if s := b.State(); s != StateClosed {
		t.Fatalf("state after %d good probes = %v, want closed", probes, s)
	}
}

// TestStaleOutcomeIgnored: a call admitted while closed that ends after the
// breaker tripped says nothing about the half-open state that follows.
func TestStaleOutcomeIgnored(t *testing.T) {
	c := newClock()
	b := New("svc", Settings{MinRequests: 1, OpenBase: time.Second, HalfOpenProbes: 1}, WithClock(c.Now))
	slowCall, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	do(t, b, Failure) // trips
	waitReady(t, c, b)
	probe, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	b.Done(slowCall, Failure) // from the closed generation: ignored
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("a stale failure moved the breaker to %v", s)
	}
	b.Done(probe, Success)
	if s := b.State(); s != StateClosed {
		t.Fatalf("after the probe: %v, want closed", s)
	}
	// Done on a refusal's zero Ticket does nothing.
	b.Done(Ticket{}, Failure)
	if s := b.State(); s != StateClosed {
		t.Fatalf("Done(zero ticket) changed the state to %v", s)
	}
}

func TestRollingWindowExpires(t *testing.T) {
	// Failures older than the window no longer count.
	b := New("svc", Settings{Window: 60 * time.Millisecond, Buckets: 3, MinRequests: 2, FailureRatio: 1})
	do(t, b, Failure)
	time.Sleep(150 * time.Millisecond) // well past the 60ms window
	do(t, b, Success)
	do(t, b, Failure)
	if s := b.State(); s != StateClosed {
		t.Fatalf("state = %v, want closed (old failure should have expired)", s)
	}
}

func TestPanicCountsAsFailure(t *testing.T) {
	rec := &recorder{}
	b := New("svc", Settings{MinRequests: 1}, WithOnStateChange(rec.hook))
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		b.Do(func() Outcome { panic("boom") })
	}()
	if s := b.State(); s != StateOpen {
		t.Fatalf("state = %v, want open", s)
	}
	checkEvents(t, rec, ev(StateClosed, StateOpen))
}

func TestNestedBreakers(t *testing.T) {
	svc := New("svc", Settings{MinRequests: 2})
	inst := New("svc/10.0.0.1", Settings{MinRequests: 2})
	call := func(o Outcome) error {
		return svc.Do(func() Outcome {
			var got Outcome
			if err := inst.Do(func() Outcome { got = o; return o }); err != nil {
				return Ignored // refused locally: says nothing about the service
			}
			return got
		})
	}
	for range 2 {
		if err := call(Failure); err != nil {
			t.Fatal(err)
		}
	}
	if svc.State() != StateOpen || inst.State() != StateOpen {
		t.Fatalf("svc %v inst %v, want both open", svc.State(), inst.State())
	}
	if err := call(Success); !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v, want ErrOpen", err)
	}
}

// halfOpenInside drives gobreaker itself to half-open (its own timeout is
// 1ns) while the breaker's clock says the open period still holds.
func halfOpenInside(t *testing.T, b *Breaker) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for b.cb.State() != gobreaker.StateHalfOpen {
		if time.Now().After(deadline) {
			t.Fatal("gobreaker did not go half-open")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReportedStateFollowsGate has gobreaker go half-open while the
// breaker's own open period still holds, and checks that the breaker keeps
// reporting and acting open until its deadline.
func TestReportedStateFollowsGate(t *testing.T) {
	rec := &recorder{}
	c := newClock()
	b := New("svc", Settings{MinRequests: 1, OpenBase: 100 * time.Millisecond, HalfOpenProbes: 1},
		WithOnStateChange(rec.hook), WithClock(c.Now))
	do(t, b, Failure)
	halfOpenInside(t, b)
	if s := b.State(); s != StateOpen {
		t.Fatalf("State = %v while our open period holds, want open", s)
	}
	refused(t, b)
	if b.Ready() {
		t.Fatal("Ready while the open period holds")
	}
	checkEvents(t, rec, ev(StateClosed, StateOpen))

	waitReady(t, c, b)
	if s := b.State(); s != StateHalfOpen {
		t.Fatalf("State after our period = %v, want half-open", s)
	}
	checkEvents(t, rec, ev(StateClosed, StateOpen), ev(StateOpen, StateHalfOpen))
	do(t, b, Success)
	if s := b.State(); s != StateClosed {
		t.Fatalf("after probe: %v, want closed", s)
	}
	checkEvents(t, rec, ev(StateClosed, StateOpen), ev(StateOpen, StateHalfOpen), ev(StateHalfOpen, StateClosed))
}

// TestPendingHalfOpenReportedBeforeNextTransition covers the deferred
// open → half-open report when nobody asks for the state in between.
func TestPendingHalfOpenReportedBeforeNextTransition(t *testing.T) {
	rec := &recorder{}
	c := newClock()
	b := New("svc", Settings{MinRequests: 1, OpenBase: 100 * time.Millisecond, HalfOpenProbes: 1},
		WithOnStateChange(rec.hook), WithClock(c.Now))
	do(t, b, Failure)
	halfOpenInside(t, b)
	c.Advance(time.Second)
	// Fail a probe without asking for the state first: the hook must still
	// see a coherent chain.
	do(t, b, Failure)
	o, h := StateOpen, StateHalfOpen
	checkEvents(t, rec, ev(StateClosed, o), ev(o, h), ev(h, o))
}

// TestHookMayCallBreaker checks that a hook calling back into the breaker
// neither deadlocks nor reorders events, under concurrent load.
func TestHookMayCallBreaker(t *testing.T) {
	var (
		mu     sync.Mutex
		events []event
		b      *Breaker
	)
	b = New("svc", Settings{MinRequests: 5, OpenBase: time.Millisecond, OpenMax: 4 * time.Millisecond, HalfOpenProbes: 2},
		WithOnStateChange(func(_ string, from, to State) {
			_ = b.State()
			_ = b.Ready()
			_ = b.Trips()
			_ = b.Do(func() Outcome { return Ignored })
			mu.Lock()
			events = append(events, event{from, to})
			mu.Unlock()
		}))
	var wg sync.WaitGroup
	var calls atomic.Int64
	stop := time.Now().Add(300 * time.Millisecond)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := g
			for time.Now().Before(stop) {
				i++
				o := Success
				if i%3 != 0 {
					o = Failure
				}
				b.Do(func() Outcome { calls.Add(1); return o })
				if i%7 == 0 {
					b.State()
					b.OpenUntil()
				}
			}
		}()
	}
	wg.Wait()
	b.State() // deliver anything left
	mu.Lock()
	defer mu.Unlock()
	if len(events) < 2 {
		t.Fatalf("only %d events in %d calls; the load should trip the breaker", len(events), calls.Load())
	}
	prev := StateClosed
	for i, e := range events {
		if e.from != prev || e.from == e.to {
			t.Fatalf("event %d = %v after state %v: chain broken: %v", i, e, prev, events)
		}
		if e.from == StateClosed && e.to != StateOpen || e.from == StateOpen && e.to != StateHalfOpen {
			t.Fatalf("impossible transition %v → %v", e.from, e.to)
		}
		prev = e.to
	}
}

func TestInvalidSettingsAreSanitized(t *testing.T) {
	b := New("svc", Settings{Window: -1, Buckets: 5000, FailureRatio: 7, OpenBase: 2 * time.Minute, Multiplier: 0.5, Jitter: 3})
	s := b.Settings()
	if err := s.Validate(); err != nil {
		t.Fatalf("effective settings invalid: %v", err)
	}
	if s.Window != DefaultWindow || s.Buckets != DefaultBuckets || s.FailureRatio != DefaultFailureRatio ||
		s.OpenMax != 2*time.Minute || s.Multiplier != DefaultMultiplier || s.Jitter != 0 {
		t.Fatalf("sanitized settings = %+v", s)
	}
	if got := New("x", Settings{}).Settings(); got != (Settings{}).WithDefaults() {
		t.Fatalf("Settings() = %+v, want defaults", got)
	}
}

func TestSettingsValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		s     Settings
		field string // "" = valid
	}{
		{"zero", Settings{}, ""},
		{"full", Settings{Window: time.Minute, Buckets: 60, MinRequests: 1, FailureRatio: 1, SlowCallThreshold: time.Second,
			SlowCallRatio: 0.1, OpenBase: time.Second, OpenMax: time.Second, Multiplier: 1, Jitter: 0.99, HalfOpenProbes: 1}, ""},
		{"negative window", Settings{Window: -time.Second}, "window"},
		{"negative buckets", Settings{Buckets: -1}, "buckets"},
		{"too many buckets", Settings{Buckets: MaxBuckets + 1}, "buckets"},
		{"buckets exceed window ns", Settings{Window: 5, Buckets: 6}, "buckets"},
		{"buckets exactly window ns", Settings{Window: 5, Buckets: 5}, ""},
		{"failure ratio > 1", Settings{FailureRatio: 1.5}, "failureRatio"},
		{"failure ratio < 0", Settings{FailureRatio: -0.1}, "failureRatio"},
		{"failure ratio NaN", Settings{FailureRatio: math.NaN()}, "failureRatio"},
		{"negative slow threshold", Settings{SlowCallThreshold: -1}, "slowCallThreshold"},
		{"slow ratio > 1", Settings{SlowCallRatio: 2}, "slowCallRatio"},
		{"negative open base", Settings{OpenBase: -1}, "openBase"},
		{"negative open max", Settings{OpenMax: -1}, "openMax"},
		{"open max < base", Settings{OpenBase: 2 * time.Second, OpenMax: time.Second}, "openMax"},
		{"default open max < base", Settings{OpenBase: 2 * time.Minute}, "openMax"},
		{"multiplier < 1", Settings{Multiplier: 0.5}, "multiplier"},
		{"multiplier inf", Settings{Multiplier: math.Inf(1)}, "multiplier"},
		{"jitter 1", Settings{Jitter: 1}, "jitter"},
		{"negative jitter", Settings{Jitter: -0.1}, "jitter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var se *SettingsError
			if !errors.As(err, &se) {
				t.Fatalf("Validate = %v, want a *SettingsError", err)
			}
			if se.Field != tc.field {
				t.Fatalf("field = %q, want %q (%v)", se.Field, tc.field, err)
			}
			if !strings.HasPrefix(err.Error(), "breaker: "+tc.field+": ") {
				t.Fatalf("message %q", err)
			}
		})
	}

	// Several problems are all reported.
	err := Settings{FailureRatio: 2, Jitter: -1}.Validate()
	if n := strings.Count(err.Error(), "breaker: "); n != 2 {
		t.Fatalf("want 2 problems, got %q", err)
	}
}

func TestWithDefaultsComparable(t *testing.T) {
	a := Settings{Window: DefaultWindow, OpenBase: time.Second}.WithDefaults()
	b := Settings{}.WithDefaults()
	if a != b {
		t.Fatalf("explicit defaults differ from zero values: %+v vs %+v", a, b)
	}
	if (Settings{MinRequests: 5}).WithDefaults() == b {
		t.Fatal("changed settings compare equal")
	}
}

func TestStrings(t *testing.T) {
	for s, want := range map[State]string{StateClosed: "closed", StateHalfOpen: "half-open", StateOpen: "open", State(9): "State(9)"} {
		if s.String() != want {
			t.Errorf("%d: %q, want %q", int(s), s.String(), want)
		}
	}
	for o, want := range map[Outcome]string{Success: "success", Failure: "failure", Ignored: "ignored", Outcome(9): "Outcome(9)"} {
		if o.String() != want {
			t.Errorf("%d: %q, want %q", int(o), o.String(), want)
		}
	}
}

func TestDoDoesNotAllocate(t *testing.T) {
	two := New("svc", Settings{SlowCallThreshold: time.Second})
	if allocs := testing.AllocsPerRun(1000, func() {
		b := two
		tk, err := b.Allow()
		if err == nil {
			b.Done(tk, Success)
		}
	}); allocs != 0 {
		t.Fatalf("Allow+Done allocates %v times per call", allocs)
	}
	b := New("svc", Settings{SlowCallThreshold: time.Second})
	n := 0
	allocs := testing.AllocsPerRun(1000, func() {
		_ = b.Do(func() Outcome { n++; return Success })
	})
	if allocs != 0 {
		t.Fatalf("Do allocates %v times per call", allocs)
	}
	// Refusals do not allocate either.
	b2 := New("svc", Settings{MinRequests: 1, OpenBase: time.Hour, OpenMax: time.Hour})
	_ = b2.Do(func() Outcome { return Failure })
	allocs = testing.AllocsPerRun(1000, func() {
		_ = b2.Do(func() Outcome { n++; return Success })
	})
	if allocs != 0 {
		t.Fatalf("refused Do allocates %v times per call", allocs)
	}
}

// TestPeekStateHasNoSideEffect: PeekState follows the breaker through a
// trip, the end of its open period and a recovery, and asking it never
// moves the breaker (no transition is reported for it).
func TestPeekStateHasNoSideEffect(t *testing.T) {
	c := newClock()
	var transitions []State
	b := New("svc", Settings{MinRequests: 1, OpenBase: 10 * time.Millisecond, HalfOpenProbes: 1},
		WithClock(c.Now), WithOnStateChange(func(_ string, _, to State) { transitions = append(transitions, to) }))
	if s := b.PeekState(); s != StateClosed {
		t.Fatalf("new breaker: %v", s)
	}
	do(t, b, Failure)
	if s := b.PeekState(); s != StateOpen {
		t.Fatalf("after a trip: %v", s)
	}
	c.Advance(10 * time.Millisecond)
	n := len(transitions)
	for range 3 {
		if s := b.PeekState(); s != StateHalfOpen {
			t.Fatalf("after the open period: %v", s)
		}
	}
	if len(transitions) != n {
		t.Fatalf("PeekState moved the breaker: transitions %v", transitions[n:])
	}
	do(t, b, Success)
	if s := b.PeekState(); s != StateClosed {
		t.Fatalf("after a successful probe: %v", s)
	}
}

// TestIgnoredOutcomeCostsNothing: an ignored outcome changes no count, so
// Done records it without reading the clock (with slow-call timing on,
// it used to read it once, and gobreaker twice more under its lock).
func TestIgnoredOutcomeCostsNothing(t *testing.T) {
	c := newClock()
	reads := 0
	b := New("svc", Settings{MinRequests: 2, SlowCallThreshold: time.Second}, WithClock(func() time.Time { reads++; return c.Now() }))
	tk, err := b.Allow()
	if err != nil {
		t.Fatal(err)
	}
	reads = 0
	b.Done(tk, Ignored)
	if reads != 0 {
		t.Fatalf("Done(Ignored) read the clock %d times", reads)
	}
	tk, _ = b.Allow()
	b.Done(tk, Success)
	if reads == 0 {
		t.Fatal("the clock is not the breaker's: the test proves nothing")
	}
}

// TestWindowRollsByTheBreakersClock: the failure ratio is taken over the
// window on the breaker's own clock (WithClock), so a test or a caller
// that steps time sees old failures leave the window; counts once rolled
// by the wall clock whatever the breaker was given.
func TestWindowRollsByTheBreakersClock(t *testing.T) {
	c := newClock()
	b := New("svc", Settings{MinRequests: 4, FailureRatio: 0.5, Window: 10 * time.Second, Buckets: 10}, WithClock(c.Now))
	for range 3 {
		do(t, b, Failure)
	}
	c.Advance(11 * time.Second) // the three failures leave the window
	do(t, b, Failure)
	do(t, b, Success)
	do(t, b, Success)
	do(t, b, Success)
	if s := b.State(); s != StateClosed {
		t.Fatalf("state = %v after 1 failure in 4 calls within the window, want closed", s)
	}
	// Within one window, failures count until the ratio is reached.
	do(t, b, Failure)
	do(t, b, Failure)
	if s := b.State(); s != StateOpen {
		t.Fatalf("state = %v after 3 failures in 6 calls within the window, want open", s)
	}
}

// TestConcurrentSuccessesAllCount: successes counted without the lock by
// many goroutines at once are all in the ratio the trip is judged by: with
// 4,000 successes in the window the breaker trips at the 4,000th failure
// (ratio 0.5) and not one failure earlier, in the first bucket as in a
// later one.
func TestConcurrentSuccessesAllCount(t *testing.T) {
	for _, start := range []time.Duration{0, 3500 * time.Millisecond} {
		c := newClock()
		b := New("svc", Settings{MinRequests: 2, FailureRatio: 0.5, Window: 10 * time.Second, Buckets: 10}, WithClock(c.Now))
		c.Advance(start)
		do(t, b, Failure) // opens the bucket: later successes take the lock-free path
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 1000 {
					tk, err := b.Allow()
					if err != nil {
						t.Error(err)
						return
					}
					b.Done(tk, Success)
				}
			}()
		}
		wg.Wait()
		for i := 2; i < 4000; i++ {
			do(t, b, Failure)
		}
		if s := b.State(); s != StateClosed {
			t.Fatalf("start %v: state = %v after 3,999 failures and 4,000 successes, want closed", start, s)
		}
		do(t, b, Failure)
		if s := b.State(); s != StateOpen {
			t.Fatalf("start %v: state = %v after 4,000 failures and 4,000 successes, want open", start, s)
		}
	}
}

// TestSuccessesLeaveTheWindow: successes counted without the lock expire
// with their bucket like any other call.
func TestSuccessesLeaveTheWindow(t *testing.T) {
	c := newClock()
	b := New("svc", Settings{MinRequests: 4, FailureRatio: 0.5, Window: 10 * time.Second, Buckets: 10}, WithClock(c.Now))
	do(t, b, Failure)
	for range 10 {
		do(t, b, Success)
	}
	c.Advance(10500 * time.Millisecond) // the first bucket's 11 calls leave the window
	do(t, b, Success)
	for range 3 {
		do(t, b, Failure)
	}
	if s := b.State(); s != StateOpen {
		t.Fatalf("state = %v after 3 failures in 4 calls in the window, want open (old successes still counted?)", s)
	}
}
