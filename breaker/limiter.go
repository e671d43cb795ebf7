package breaker

import (
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ErrRateLimited is returned (possibly wrapped) when a [Limiter] refuses a
// request. Servers answer it with HTTP 429 or gRPC ResourceExhausted.
var ErrRateLimited = errors.New("breaker: rate limited")

// Limiter is a token bucket with golang.org/x/time/rate's arithmetic
// whose rate and burst carry over to a limiter of new settings, so a rule
// update keeps the tokens already spent instead of handing every caller a
// fresh burst. All methods are safe for concurrent use. Create it with
// [NewLimiter].
//
// It is rate.Limiter's Allow path alone, under one short lock: a call's
// admission is the hottest lock of the decision, and rate.Limiter's
// general reservation (a Reservation value, a deferred unlock, the
// wait-time arithmetic) costs as much again as the token count itself.
type Limiter struct {
	limit rate.Limit // tokens per second; rate.Inf: no limit
	burst int
	// epoch is the origin of the times below, in ns: last is the time
	// tokens was counted at, latest the latest time a token was asked
	// for, at least 0 (see AllowAt).
	epoch time.Time
	// next is the limiter that took l's bucket over (see TakeOver), from
	// which l's calls take their tokens; set under mu. from is the
	// limiter this one was carried from until it takes it over, and
	// fromAdmits that limiter's admits at the carry.
	next       atomic.Pointer[Limiter]
	from       atomic.Pointer[Limiter]
	fromAdmits int64

	mu     sync.Mutex
	tokens float64
	last   int64
	latest int64
	admits int64 // calls admitted, for TakeOver
}

// NewLimiter returns a full bucket of burst tokens refilled at rps tokens per
// second. rps = math.Inf(1) (or rate.Inf) means no limit; rps = 0 (or a
// negative or NaN rps) allows the initial burst and nothing after; burst 0
// refuses everything unless rps is infinite.
func NewLimiter(rps float64, burst int) *Limiter {
	burst = max(burst, 0)
	return newLimiter(limitOf(rps), burst, float64(burst), time.Now())
}

// newLimiter returns a limiter holding tokens at now. A time before now
// counts as now (see AllowAt): the bucket was counted at now, so the time
// before it must not refill it again.
func newLimiter(limit rate.Limit, burst int, tokens float64, now time.Time) *Limiter {
	return &Limiter{limit: limit, burst: burst, epoch: now, tokens: tokens}
}

func limitOf(rps float64) rate.Limit {
	switch {
	case !(rps > 0): // also NaN
		return 0
	case rps >= float64(rate.Inf): // rate.Inf or +Inf
		return rate.Inf
	}
	return rate.Limit(rps)
}

// Allow reports whether a request may proceed now, taking a token if so.
func (l *Limiter) Allow() bool { return l.AllowAt(time.Now()) }

// AllowAt is Allow at time now, a clock read the caller made already (the
// start of its call). A now before the latest time a token was asked for,
// or before the limiter was made or carried, counts as that time:
// rate.Limiter takes a time before its last one as the new last, and the
// next token would then refill for the time in between a second time, so
// a caller held up between its clock read and AllowAt (preempted, a GC
// pause, a gRPC call that read its start before loading the rules the
// limiter was carried for) would let later callers through beyond the
// rate.
func (l *Limiter) AllowAt(now time.Time) bool {
	if l.limit == rate.Inf {
		if n := l.next.Load(); n != nil {
			return n.AllowAt(now)
		}
		return true
	}
	t := int64(now.Sub(l.epoch))
	l.mu.Lock()
	if n := l.next.Load(); n != nil {
		l.mu.Unlock()
		return n.AllowAt(now)
	}
	if t < l.latest {
		t = l.latest
	}
	l.latest = t
	tokens := l.advance(t) - 1
	// As rate.Limiter.AllowN: a deficit worth less than a nanosecond
	// counts as none.
	ok := l.burst >= 1 && (tokens >= 0 || durationFromTokens(l.limit, -tokens) <= 0)
	if ok {
		l.last, l.tokens = t, tokens
		l.admits++
	}
	l.mu.Unlock()
	return ok
}

// advance returns the tokens the bucket holds at t (ns since epoch),
// without counting them; l.mu is held. As rate.Limiter's advance.
func (l *Limiter) advance(t int64) float64 {
	last := l.last
	if t < last {
		last = t
	}
	tokens := l.tokens
	if l.limit > 0 {
		tokens += time.Duration(t-last).Seconds() * float64(l.limit)
	}
	return min(tokens, float64(l.burst))
}

// durationFromTokens is rate's: the time limit takes to refill tokens.
func durationFromTokens(limit rate.Limit, tokens float64) time.Duration {
	if limit <= 0 {
		return rate.InfDuration
	}
	d := tokens / float64(limit) * float64(time.Second)
	if d > float64(math.MaxInt64) {
		return rate.InfDuration
	}
	return time.Duration(d)
}

// RetryAfter returns how long until a token is available, without taking
// one: 0 if Allow would succeed now. If no token will ever come (rps 0 with
// an empty bucket, or burst 0) it returns rate.InfDuration; cap it before
// putting it in a Retry-After header.
func (l *Limiter) RetryAfter() time.Duration { return l.RetryAfterAt(time.Now()) }

// RetryAfterAt is RetryAfter at time now.
func (l *Limiter) RetryAfterAt(now time.Time) time.Duration {
	l = l.current()
	limit := l.limit
	if limit == rate.Inf {
		return 0
	}
	if l.burst < 1 {
		return rate.InfDuration
	}
	missing := 1 - l.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	if limit <= 0 {
		return rate.InfDuration
	}
	d := math.Ceil(missing / float64(limit) * float64(time.Second))
	if d >= math.MaxInt64 {
		return rate.InfDuration
	}
	return time.Duration(d)
}

// Carry returns a new limiter of rps and burst (see [NewLimiter]) that
// starts with the tokens l holds now, at most burst, so a rule change
// neither refills nor drains the bucket. l itself is not changed until the
// new limiter takes its bucket over ([Limiter.TakeOver]) once it is in
// force. When rps and burst are those of the limiter in force for l, Carry
// returns it.
func (l *Limiter) Carry(rps float64, burst int) *Limiter {
	return l.CarryAt(time.Now(), rps, burst)
}

// CarryAt is Carry at time now.
func (l *Limiter) CarryAt(now time.Time, rps float64, burst int) *Limiter {
	limit, burst := limitOf(rps), max(burst, 0)
	for {
		l = l.current()
		if l.limit == limit && l.burst == burst {
			return l
		}
		l.mu.Lock()
		if l.next.Load() != nil { // taken over meanwhile
			l.mu.Unlock()
			continue
		}
		// The new bucket holds min(l's tokens, burst), a part-refilled
		// token included: dropping it would delay the next call by up to
		// a whole refill period on every rule change.
		held := float64(l.burst)
		if l.limit != rate.Inf {
			held = l.advance(int64(now.Sub(l.epoch)))
		}
		next := newLimiter(limit, burst, min(max(held, 0), float64(burst)), now)
		next.fromAdmits = l.admits
		l.mu.Unlock()
		next.from.Store(l)
		return next
	}
}

// TakeOver makes l, a limiter [Limiter.Carry] returned, the one bucket of
// the limiter it was carried from, once l is in force (the rules it was
// carried for are published): the calls still holding the old limiter
// take their tokens from l from then on, at l's rate, and the calls the
// old limiter admitted since the carry are taken from l's tokens. Without
// it a rule change would let through a second copy of the bucket: what
// the calls holding the old rules spend of it after the carry. Only the
// first TakeOver of l does anything.
func (l *Limiter) TakeOver() {
	from := l.from.Swap(nil)
	if from == nil {
		return
	}
	from.mu.Lock()
	if from.next.Load() == nil {
		spent := from.admits - l.fromAdmits
		l.mu.Lock()
		l.tokens -= float64(spent)
		l.mu.Unlock()
		from.next.Store(l)
	}
	from.mu.Unlock()
}

// current returns the limiter in force for l: l, or the last one that
// took its bucket over.
func (l *Limiter) current() *Limiter {
	for {
		n := l.next.Load()
		if n == nil {
			return l
		}
		l = n
	}
}

// TokensAt returns the tokens the bucket holds at time now.
func (l *Limiter) TokensAt(now time.Time) float64 {
	l = l.current()
	if l.limit == rate.Inf {
		return float64(l.burst)
	}
	t := int64(now.Sub(l.epoch))
	l.mu.Lock()
	tokens := l.advance(t)
	l.mu.Unlock()
	return tokens
}

// Limit returns the current rate in tokens per second (float64(rate.Inf)
// when unlimited): that of the limiter that took l's bucket over, if one
// did.
func (l *Limiter) Limit() float64 { return float64(l.current().limit) }

// Burst returns the current bucket size: that of the limiter that took
// l's bucket over, if one did.
func (l *Limiter) Burst() int { return l.current().burst }
