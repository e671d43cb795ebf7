package backoff

import (
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
