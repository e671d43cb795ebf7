package breaker

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestLimiterBurstThenRefuse(t *testing.T) {
	l := NewLimiter(2, 5) // a token every 500ms
	t0 := time.Now()
	for i := range 5 {
		if !l.AllowAt(t0) {
			t.Fatalf("call %d of burst 5 refused", i+1)
		}
	}
	if l.AllowAt(t0) {
		t.Fatal("6th call allowed with burst 5")
	}
	// RetryAfter does not take a token, however often it is asked.
	for range 10 {
		if got := l.RetryAfterAt(t0); got != 500*time.Millisecond {
			t.Fatalf("RetryAfter = %v, want 500ms", got)
		}
	}
	if got := l.RetryAfterAt(t0.Add(200 * time.Millisecond)); got != 300*time.Millisecond {
		t.Fatalf("RetryAfter 200ms later = %v, want 300ms", got)
	}
	if l.AllowAt(t0.Add(499 * time.Millisecond)) {
		t.Fatal("allowed before a token was due")
	}
	at := t0.Add(500 * time.Millisecond)
	if got := l.RetryAfterAt(at); got != 0 {
		t.Fatalf("RetryAfter when a token is there = %v, want 0", got)
	}
	if !l.AllowAt(at) {
		t.Fatal("refused when a token was due")
	}
	if l.AllowAt(at) {
		t.Fatal("allowed twice on one refilled token")
	}
}

func TestLimiterCarry(t *testing.T) {
	now := time.Now()
	t.Run("rate", func(t *testing.T) {
		l := NewLimiter(1, 1)
		if !l.AllowAt(now) || l.AllowAt(now) {
			t.Fatal("want one call then a refusal")
		}
		next := l.CarryAt(now, 1000, 1)
		if next.Limit() != 1000 || next.Burst() != 1 || l.Limit() != 1 {
			t.Fatalf("carried Limit %v Burst %d; old Limit %v", next.Limit(), next.Burst(), l.Limit())
		}
		// At the old rate the next token is a second away, at the new one
		// a millisecond.
		if next.AllowAt(now) || !next.AllowAt(now.Add(time.Millisecond)) {
			t.Fatal("new rate not in effect, or the spent token came back")
		}
		if l.AllowAt(now.Add(time.Millisecond)) {
			t.Fatal("Carry changed the old limiter")
		}
	})

	t.Run("burst grows, bucket kept", func(t *testing.T) {
		l := NewLimiter(1, 2)
		if !l.AllowAt(now) || !l.AllowAt(now) || l.AllowAt(now) {
			t.Fatal("want two calls then a refusal")
		}
		next := l.CarryAt(now, 1, 5)
		if next.AllowAt(now) {
			t.Fatal("Carry refilled the bucket")
		}
		// Much later the bucket holds the new burst, and no more.
		later := now.Add(time.Hour)
		for i := range 5 {
			if !next.AllowAt(later) {
				t.Fatalf("call %d of new burst 5 refused", i+1)
			}
		}
		if next.AllowAt(later) {
			t.Fatal("6th call allowed with burst 5")
		}
	})

	t.Run("burst shrinks", func(t *testing.T) {
		next := NewLimiter(1, 10).CarryAt(now, 1, 3)
		n := 0
		for next.AllowAt(now) && n < 100 {
			n++
		}
		if n != 3 {
			t.Fatalf("%d calls allowed after shrinking burst to 3", n)
		}
	})

	t.Run("partly spent", func(t *testing.T) {
		l := NewLimiter(1, 10)
		for range 4 {
			l.AllowAt(now)
		}
		next := l.CarryAt(now, 100, 20)
		n := 0
		for next.AllowAt(now) && n < 100 {
			n++
		}
		if n != 6 {
			t.Fatalf("%d calls allowed, want the 6 tokens left", n)
		}
	})

	t.Run("unchanged returns the same limiter", func(t *testing.T) {
		l := NewLimiter(1, 1)
		if l.Carry(1, 1) != l {
			t.Fatal("Carry with the same settings made a new limiter")
		}
	})
}

func TestLimiterEdges(t *testing.T) {
	now := time.Now()

	inf := NewLimiter(math.Inf(1), 0)
	for range 100 {
		if !inf.AllowAt(now) {
			t.Fatal("infinite rate refused")
		}
	}
	if got := inf.RetryAfterAt(now); got != 0 {
		t.Fatalf("infinite RetryAfter = %v", got)
	}

	for _, rps := range []float64{0, -5, math.NaN()} {
		l := NewLimiter(rps, 2)
		if l.Limit() != 0 {
			t.Fatalf("rps %v: Limit = %v, want 0", rps, l.Limit())
		}
		if !l.AllowAt(now) || !l.AllowAt(now) || l.AllowAt(now.Add(time.Hour)) {
			t.Fatalf("rps %v: want the burst and nothing after", rps)
		}
		if got := l.RetryAfterAt(now); got != rate.InfDuration {
			t.Fatalf("rps %v: RetryAfter = %v, want InfDuration", rps, got)
		}
	}

	zero := NewLimiter(100, 0)
	if zero.AllowAt(now) || zero.AllowAt(now.Add(time.Hour)) {
		t.Fatal("burst 0 allowed a call")
	}
	if got := zero.RetryAfterAt(now); got != rate.InfDuration {
		t.Fatalf("burst 0: RetryAfter = %v, want InfDuration", got)
	}
	if NewLimiter(1, -3).Burst() != 0 {
		t.Fatal("negative burst not clamped to 0")
	}
}

func TestLimiterAllowDoesNotAllocate(t *testing.T) {
	l := NewLimiter(1e9, 1<<20)
	if n := testing.AllocsPerRun(1000, func() { l.Allow() }); n != 0 {
		t.Fatalf("Allow allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.RetryAfter() }); n != 0 {
		t.Fatalf("RetryAfter allocates %v times", n)
	}
}

// rateRef is the limiter as it was built on rate.Limiter, the reference
// the Limiter's own token count must agree with; latest starts at the
// limiter's making.
type rateRef struct {
	lim    *rate.Limiter
	latest time.Time
}

func (r *rateRef) allowAt(now time.Time) bool {
	if now.Before(r.latest) {
		now = r.latest
	}
	r.latest = now
	return r.lim.AllowN(now, 1)
}

// TestLimiterAgreesWithRate: for every kind of limiter (a rate, none, an
// infinite one, burst 0 and 1) and calls at times that go back and forth,
// AllowAt, TokensAt and RetryAfterAt answer exactly as rate.Limiter's
// AllowN, TokensAt and its refill time do, with a time earlier than the
// latest (or than the making) counting as that; and a Carry keeps the
// tokens rate.Limiter holds, at most the new burst.
func TestLimiterAgreesWithRate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		rps   float64
		burst int
	}{{2, 5}, {1000, 1}, {0.5, 3}, {0, 2}, {math.Inf(1), 0}, {100, 0}, {1e12, 1000000000}, {7.3, 10}} {
		start := time.Unix(1_700_000_000, 0)
		l := newLimiter(limitOf(tc.rps), tc.burst, float64(tc.burst), start)
		ref := &rateRef{lim: rate.NewLimiter(limitOf(tc.rps), tc.burst), latest: start}
		at := start
		for i := range 5000 {
			// Mostly forward by up to 1.5 refill periods, sometimes back.
			step := time.Duration(rng.Int64N(int64(1500 * time.Millisecond)))
			if tc.rps > 0 && !math.IsInf(tc.rps, 1) {
				step = time.Duration(rng.Float64() * 1.5 * float64(time.Second) / tc.rps)
			}
			if rng.IntN(8) == 0 {
				step = -step
			}
			at = at.Add(step)
			if got, want := l.AllowAt(at), ref.allowAt(at); got != want {
				t.Fatalf("rps %v burst %d call %d at +%v: AllowAt %v, rate.Limiter %v", tc.rps, tc.burst, i, at.Sub(start), got, want)
			}
			if got, want := l.TokensAt(at), ref.lim.TokensAt(at); got != want && !(math.IsInf(tc.rps, 1) && got == float64(tc.burst)) {
				t.Fatalf("rps %v burst %d call %d: TokensAt %v, rate.Limiter %v", tc.rps, tc.burst, i, got, want)
			}
			if i%97 == 0 {
				// Carry a copy: the carried limiter takes over its bucket.
				shadow := newLimiter(l.limit, l.burst, l.tokens, l.epoch)
				shadow.last, shadow.latest = l.last, l.latest
				next := shadow.CarryAt(at, tc.rps*2, tc.burst+1)
				want := min(max(ref.lim.TokensAt(at), 0), float64(tc.burst+1))
				if got := next.TokensAt(at); got != want && !math.IsInf(tc.rps, 1) {
					t.Fatalf("rps %v burst %d call %d: carried TokensAt %v, rate.Limiter %v", tc.rps, tc.burst, i, got, want)
				}
			}
		}
	}
}

// TestLimiterTimeBeforeItsBucket: a call whose clock read was made before
// the limiter counted its bucket (a gRPC call reads its start before it
// loads the rules a Carry built the limiter for; a limiter made mid-call)
// counts as made at that moment: the time in between is not refilled a
// second time, so the bucket admits no more than it held.
func TestLimiterTimeBeforeItsBucket(t *testing.T) {
	t.Run("carried", func(t *testing.T) {
		now := time.Now()
		l := NewLimiter(1, 3)
		if !l.AllowAt(now) || !l.AllowAt(now) {
			t.Fatal("want two calls of burst 3")
		}
		next := l.CarryAt(now, 1, 4) // holds the one token left
		if !next.AllowAt(now.Add(-10 * time.Second)) {
			t.Fatal("the carried token refused")
		}
		n := 0
		for next.AllowAt(now) && n < 100 {
			n++
		}
		if n != 0 {
			t.Fatalf("%d more calls admitted at the carry time after its one token was taken, want 0 (3 of burst 3 + 1 carried)", n)
		}
	})
	t.Run("new", func(t *testing.T) {
		before := time.Now()
		l := NewLimiter(0.1, 2) // a token every 10s
		after := time.Now()
		stale := before.Add(-time.Hour)
		if !l.AllowAt(stale) || !l.AllowAt(stale) {
			t.Fatal("want the burst of 2")
		}
		n := 0
		for l.AllowAt(after) && n < 100 {
			n++
		}
		if n != 0 {
			t.Fatalf("%d calls admitted beyond the burst of 2 of a new limiter, want 0", n)
		}
	})
}

// TestLimiterCarryKeepsPartOfAToken: a rule change neither refills nor
// drains the bucket, a part-refilled token included: raising the rate
// admits a call no later than the old rate would have.
func TestLimiterCarryKeepsPartOfAToken(t *testing.T) {
	now := time.Now()
	l := NewLimiter(1, 1)
	if !l.AllowAt(now) {
		t.Fatal("want one call")
	}
	at := now.Add(900 * time.Millisecond)
	next := l.CarryAt(at, 2, 1) // 0.9 of a token refilled, at twice the rate
	if got, want := next.TokensAt(at), l.TokensAt(at); got != want {
		t.Fatalf("carried bucket holds %v tokens, the old one %v", got, want)
	}
	if !next.AllowAt(now.Add(time.Second)) {
		t.Fatal("at twice the rate, a call the old rate admits 1s after the last is refused")
	}
	if next.AllowAt(now.Add(time.Second)) {
		t.Fatal("two calls admitted on one token")
	}
}

// TestLimiterCarryIsOneBucket: a carried limiter, once it takes over (the
// rules it was carried for are published), is the one bucket of the old
// one too: the calls the old limiter admitted after the carry (they
// loaded the rules before the change was published) are taken from it,
// and calls still holding the old limiter take their tokens from it at
// the new rate. Over a rule change the two together admit no more than
// the bucket held. Until then the old limiter is left as it was.
func TestLimiterCarryIsOneBucket(t *testing.T) {
	now := time.Now()
	l := NewLimiter(1, 5)
	next := l.CarryAt(now, 2, 5) // the bucket of 5, to be refilled at 2 rps
	n := 0
	for i := 0; i < 2 && l.AllowAt(now); i++ { // calls on the old rules
		n++
	}
	if l.Limit() != 1 || l.TokensAt(now) != 3 {
		t.Fatalf("before the take-over the old limiter changed: rate %v, %v tokens", l.Limit(), l.TokensAt(now))
	}
	next.TakeOver()
	for i := 0; i < 100 && l.AllowAt(now); i++ {
		n++
	}
	for i := 0; i < 100 && next.AllowAt(now); i++ {
		n++
	}
	if n != 5 {
		t.Fatalf("%d calls admitted at once over a rule change by the old and the new limiter, want the bucket's 5", n)
	}
	// Half a second on, the new rate has refilled one token, whichever
	// limiter a call holds.
	later := now.Add(500 * time.Millisecond)
	if got := l.RetryAfterAt(now); got != 500*time.Millisecond {
		t.Fatalf("old limiter's RetryAfter %v, want the new rate's 500ms", got)
	}
	if !l.AllowAt(later) || next.AllowAt(later) {
		t.Fatal("want one call at the new rate after 500ms, on the old limiter, and no second one")
	}
	next.TakeOver() // a second take-over changes nothing
	if next.AllowAt(later) {
		t.Fatal("a second TakeOver gave tokens back")
	}
	// Carrying the old limiter again carries the bucket in force.
	again := l.CarryAt(later, 4, 5)
	if got := again.TokensAt(later); got != 0 {
		t.Fatalf("a second Carry of the old limiter holds %v tokens, want the bucket's 0", got)
	}
}
