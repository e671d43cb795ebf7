package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDelayGrowsAndCaps(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.1}
	for attempt, want := range []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} {
		want *= time.Millisecond
		for range 50 {
			got := p.Delay(attempt)
			lo, hi := time.Duration(float64(want)*0.9), time.Duration(float64(want)*1.1)
			if got < lo || got > hi {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", attempt, got, lo, hi)
			}
		}
	}
}

func TestDelayHugeAttemptDoesNotOverflow(t *testing.T) {
	p := Policy{Base: time.Millisecond, Max: 5 * time.Second}
	if got := p.Delay(1 << 30); got <= 0 || got > 6*time.Second {
		t.Fatalf("delay = %v, want about 5s", got)
	}
}

func TestDelayNeverAboveMax(t *testing.T) {
	p := Policy{Base: 10 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2, Jitter: 0.5}
	for attempt := range 10 {
		for range 1000 {
			if d := p.Delay(attempt); d > p.Max {
				t.Fatalf("Delay(%d) = %v, above Max %v", attempt, d, p.Max)
			}
		}
	}
}

func TestLoopReportsNilReturns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var got []error
	Loop(ctx, Policy{Base: time.Millisecond, Max: time.Millisecond}, func(context.Context) error { return nil },
		func(err error, _ time.Duration) {
			got = append(got, err)
			if len(got) == 3 {
				cancel()
			}
		})
	if len(got) != 3 || !errors.Is(got[0], ErrReturned) {
		t.Fatalf("failed got %v, want ErrReturned for each nil return", got)
	}
}
