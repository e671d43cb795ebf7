package breaker_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
)

// TestAdaptiveFormula steps an adaptive breaker through a window with a
// fixed clock: the drop ratio is max(0, (requests − K·accepts) /
// (requests + 1)), refusals change nothing, and the window forgets.
func TestAdaptiveFormula(t *testing.T) {
	now := time.Unix(1000, 0)
	var changes []breaker.State
	b := breaker.New("svc", breaker.Settings{Mode: breaker.ModeAdaptive, Window: time.Second, Buckets: 10},
		breaker.WithClock(func() time.Time { return now }),
		breaker.WithOnStateChange(func(_ string, _, to breaker.State) { changes = append(changes, to) }))
	record := func(o breaker.Outcome) {
		t.Helper()
		for {
			tk, err := b.Allow()
			if err == nil {
				b.Done(tk, o)
				return
			}
		}
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	for range 4 {
		record(breaker.Success)
	}
	for range 2 {
		record(breaker.Failure)
	}
	// 6 requests, 4 accepts: 6 − 1.5·4 = 0 → nothing refused.
	if got := b.DropRatio(); got != 0 || b.State() != breaker.StateClosed {
		t.Fatalf("at a third failing: drop %v, state %v; want 0, closed", got, b.State())
	}
	record(breaker.Failure)
	record(breaker.Ignored) // not counted at all
	if got := b.DropRatio(); !near(got, 1.0/8) || b.State() != breaker.StateHalfOpen {
		t.Fatalf("7 requests, 4 accepts: drop %v (state %v), want 1/8, half-open", got, b.State())
	}
	for range 20 {
		record(breaker.Failure)
	}
	want := (27 - 1.5*4) / 28
	refused := 0
	for range 1000 {
		if _, err := b.Allow(); errors.Is(err, breaker.ErrOpen) {
			refused++
		} // admitted tickets are dropped unreported: calls still running
	}
	if got := b.DropRatio(); !near(got, want) {
		t.Fatalf("after 1000 Allow calls drop = %v, want %v unchanged (refusals are not counted)", got, want)
	}
	if refused < 600 || refused > 900 {
		t.Fatalf("refused %d of 1000 at drop ratio %.2f", refused, want)
	}
	now = now.Add(time.Second)
	if got := b.DropRatio(); got != 0 || b.State() != breaker.StateClosed {
		t.Fatalf("a window later: drop %v, state %v; want 0, closed", got, b.State())
	}
	if len(changes) != 2 || changes[0] != breaker.StateHalfOpen || changes[1] != breaker.StateClosed {
		t.Fatalf("hook saw %v, want [half-open closed]", changes)
	}
}

func TestAdaptiveAllowDoesNotAllocate(t *testing.T) {
	b := breaker.New("svc", breaker.Settings{Mode: breaker.ModeAdaptive})
	if n := testing.AllocsPerRun(1000, func() {
		tk, err := b.Allow()
		if err == nil {
			b.Done(tk, breaker.Success)
		}
	}); n != 0 {
		t.Fatalf("Allow+Done allocates %v times", n)
	}
}
