package breaker

import (
	"errors"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ErrRateLimited is returned (possibly wrapped) when a [Limiter] refuses a
// request. Servers answer it with HTTP 429 or gRPC ResourceExhausted.
var ErrRateLimited = errors.New("breaker: rate limited")

// Limiter is a token bucket (golang.org/x/time/rate) whose rate and burst
// carry over to a limiter of new settings, so a rule update keeps the
// tokens already spent instead of handing every caller a fresh burst. All methods are
// safe for concurrent use. Create it with [NewLimiter].
type Limiter struct {
	lim *rate.Limiter
	// epoch and latest keep the latest time a token was asked for at, in
	// ns since epoch: see notBefore.
	epoch  time.Time
	latest atomic.Int64
}

// NewLimiter returns a full bucket of burst tokens refilled at rps tokens per
// second. rps = math.Inf(1) (or rate.Inf) means no limit; rps = 0 (or a
// negative or NaN rps) allows the initial burst and nothing after; burst 0
// refuses everything unless rps is infinite.
func NewLimiter(rps float64, burst int) *Limiter {
	return newLimiter(rate.NewLimiter(limitOf(rps), max(burst, 0)), time.Now())
}

// newLimiter wraps lim; epoch is any time (the origin of latest).
func newLimiter(lim *rate.Limiter, epoch time.Time) *Limiter {
	l := &Limiter{lim: lim, epoch: epoch}
	l.latest.Store(math.MinInt64) // none yet
	return l
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

// Allow takes a token if one is available now and reports whether it did.
func (l *Limiter) Allow() bool { return l.AllowAt(time.Now()) }

// AllowAt is Allow at time now, a clock read the caller made already (the
// start of its call). A now before the latest time a token was asked for
// counts as that latest time.
func (l *Limiter) AllowAt(now time.Time) bool { return l.lim.AllowN(l.notBefore(now), 1) }

// notBefore returns now, or the latest time AllowAt was given if that is
// later. x/time/rate takes a time before its last one as the new last:
// the next token then refills for the time in between a second time, so a
// caller held up between its clock read and AllowAt (preempted, a GC
// pause) would let later callers through beyond the rate. What remains is
// the moment between this and the limiter's lock, as in rate.Allow's own
// clock read.
func (l *Limiter) notBefore(now time.Time) time.Time {
	d := int64(now.Sub(l.epoch))
	for {
		last := l.latest.Load()
		if d <= last {
			return l.epoch.Add(time.Duration(last))
		}
		if l.latest.CompareAndSwap(last, d) {
			return now
		}
	}
}

// RetryAfter returns how long until a token is available, without taking
// one: 0 if Allow would succeed now. If no token will ever come (rps 0 with
// an empty bucket, or burst 0) it returns rate.InfDuration; cap it before
// putting it in a Retry-After header.
func (l *Limiter) RetryAfter() time.Duration { return l.RetryAfterAt(time.Now()) }

// RetryAfterAt is RetryAfter at time now.
func (l *Limiter) RetryAfterAt(now time.Time) time.Duration {
	limit := l.lim.Limit()
	if limit == rate.Inf {
		return 0
	}
	if l.lim.Burst() < 1 {
		return rate.InfDuration
	}
	missing := 1 - l.lim.TokensAt(now)
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
// neither refills nor drains the bucket. l itself is not changed: requests
// still holding it keep its old rate. When rps and burst are l's own, Carry
// returns l.
func (l *Limiter) Carry(rps float64, burst int) *Limiter {
	return l.CarryAt(time.Now(), rps, burst)
}

// CarryAt is Carry at time now.
func (l *Limiter) CarryAt(now time.Time, rps float64, burst int) *Limiter {
	limit, burst := limitOf(rps), max(burst, 0)
	if l.lim.Limit() == limit && l.lim.Burst() == burst {
		return l
	}
	// Start without refill, take what l has spent, then set the rate: the
	// new bucket holds min(l's tokens, burst), less any fraction.
	next := rate.NewLimiter(0, burst)
	held := min(max(l.lim.TokensAt(now), 0), float64(burst))
	next.AllowN(now, int(math.Ceil(float64(burst)-held)))
	next.SetLimitAt(now, limit)
	return newLimiter(next, now)
}

// TokensAt returns the tokens the bucket holds at time now.
func (l *Limiter) TokensAt(now time.Time) float64 { return l.lim.TokensAt(now) }

// Limit returns the current rate in tokens per second (float64(rate.Inf)
// when unlimited).
func (l *Limiter) Limit() float64 { return float64(l.lim.Limit()) }

// Burst returns the current bucket size.
func (l *Limiter) Burst() int { return l.lim.Burst() }
