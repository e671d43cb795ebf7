package breaker

import (
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Mode selects how a [Breaker] decides to refuse calls.
type Mode int

const (
	// ModeWindow is the window-and-ratio breaker: it trips when the failure
	// (or slow-call) ratio of a rolling window reaches a threshold, stays
	// open for a growing period, then probes. The zero Mode.
	ModeWindow Mode = iota
	// ModeAdaptive is client-side adaptive throttling as Google's SRE book
	// describes it ("Handling Overload"): over the rolling window the
	// breaker counts the calls it let through (requests) and those the
	// destination served (accepts), and refuses each new call with
	// probability max(0, (requests − K·accepts) / (requests + 1)). It needs
	// no threshold: with K = 1.5 it starts refusing once more than a third
	// of the calls fail, refuses in proportion to the failures, and lets
	// calls through again as fast as successes come back. Calls it refuses
	// are counted neither as requests nor as failures, so a refusal never
	// deepens the refusal.
	ModeAdaptive
)

// String returns "window" or "adaptive", as a rule document writes them.
func (m Mode) String() string {
	switch m {
	case ModeWindow:
		return "window"
	case ModeAdaptive:
		return "adaptive"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// DefaultK is the adaptive multiplier when Settings.K is zero. The SRE book
// suggests 2; 1.5, as go-zero uses, throttles earlier (from a third of the
// calls failing rather than half), which keeps less load on a destination
// that is already failing while still never refusing a healthy one.
const DefaultK = 1.5

// adaptive is the state of a ModeAdaptive breaker: a ring of buckets of
// (requests, accepts) counts covering the window, under one short mutex.
type adaptive struct {
	k        float64
	bucketNs int64

	mu       sync.Mutex
	req      []uint32 // per bucket
	acc      []uint32
	last     int64 // index (time / bucketNs) of the newest bucket
	reqSum   uint64
	accSum   uint64
	reported atomic.Int32  // State last reported to the hook
	drop     atomic.Uint64 // math.Float64bits of the last computed drop ratio
}

func newAdaptive(s Settings) *adaptive {
	return &adaptive{
		k:        s.K,
		bucketNs: max(1, int64(s.Window)/int64(s.Buckets)),
		req:      make([]uint32, s.Buckets),
		acc:      make([]uint32, s.Buckets),
	}
}

// roll moves the window to the bucket of now (ns since the epoch),
// clearing the buckets that fell out of it. Called with mu held.
func (a *adaptive) roll(now int64) {
	idx := now / a.bucketNs
	n := int64(len(a.req))
	if idx <= a.last {
		return
	}
	if idx-a.last >= n {
		clear(a.req)
		clear(a.acc)
		a.reqSum, a.accSum = 0, 0
	} else {
		for i := a.last + 1; i <= idx; i++ {
			j := i % n
			a.reqSum -= uint64(a.req[j])
			a.accSum -= uint64(a.acc[j])
			a.req[j], a.acc[j] = 0, 0
		}
	}
	a.last = idx
}

// ratio returns the probability of refusing a call at now, and stores it
// for DropRatio.
func (a *adaptive) ratio(now int64) float64 {
	a.mu.Lock()
	a.roll(now)
	req, acc := float64(a.reqSum), float64(a.accSum)
	a.mu.Unlock()
	p := max(0, (req-a.k*acc)/(req+1))
	a.drop.Store(math.Float64bits(p))
	return p
}

// record counts one completed call at now.
func (a *adaptive) record(now int64, accepted bool) {
	a.mu.Lock()
	a.roll(now)
	j := a.last % int64(len(a.req))
	a.req[j]++
	a.reqSum++
	if accepted {
		a.acc[j]++
		a.accSum++
	}
	a.mu.Unlock()
}

// state is the state an adaptive breaker reports for drop ratio p: closed
// when it refuses nothing, half-open while it refuses a share of calls.
func adaptiveState(p float64) State {
	if p > 0 {
		return StateHalfOpen
	}
	return StateClosed
}

// allowAdaptive is Allow in ModeAdaptive.
func (b *Breaker) allowAdaptive() (Ticket, error) {
	now := b.now()
	p := b.ad.ratio(now)
	b.reportAdaptive(p)
	if p > 0 && rand.Float64() < p {
		return Ticket{}, ErrOpen
	}
	t := Ticket{ok: true}
	if b.slowNs > 0 {
		t.start = now
	}
	return t, nil
}

// doneAdaptive is Done in ModeAdaptive: a success that was not slow (by
// the call's end, as DoneAt was given it) is an accept; a failure or a
// slow call is a request only; an ignored outcome is not counted.
func (b *Breaker) doneAdaptive(t Ticket, o Outcome, end time.Time) {
	if o == Ignored {
		return
	}
	now := b.now()
	ok := o == Success && (b.slowNs == 0 || int64(end.Sub(b.epoch))-t.start < b.slowNs)
	b.ad.record(now, ok)
	b.reportAdaptive(b.ad.ratio(now))
}

// reportAdaptive calls the state-change hook when the state that drop
// ratio p gives differs from the one last reported.
func (b *Breaker) reportAdaptive(p float64) {
	to := adaptiveState(p)
	for {
		from := State(b.ad.reported.Load())
		if from == to {
			return
		}
		if b.ad.reported.CompareAndSwap(int32(from), int32(to)) {
			if to == StateHalfOpen {
				b.trips.Store(1)
			} else {
				b.trips.Store(0)
			}
			if b.onChange != nil {
				b.onChange(b.name, from, to)
			}
			return
		}
	}
}

// DropRatio returns the probability with which the breaker refuses a call
// now: in ModeAdaptive, max(0, (requests − K·accepts) / (requests + 1))
// over the window; in ModeWindow 1 while open and 0 otherwise.
func (b *Breaker) DropRatio() float64 {
	if b.ad != nil {
		return b.ad.ratio(b.now())
	}
	if !b.OpenUntil().IsZero() {
		return 1
	}
	return 0
}
