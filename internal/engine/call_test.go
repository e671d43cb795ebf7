package engine

import (
	"testing"
	"time"
)

// The README promises that the wait between retries doubles from
// retry.backoff and never exceeds ten times it, jitter included.
func TestRetryBackoffAtMostTenTimesBase(t *testing.T) {
	const base = 10 * time.Millisecond
	for n := range 8 {
		lo, hi := time.Duration(1<<62), time.Duration(0)
		for range 2000 {
			d := retryBackoff(base, n)
			lo, hi = min(lo, d), max(hi, d)
		}
		if hi > 10*base {
			t.Fatalf("retry %d waited up to %v, over 10× the %v base", n, hi, base)
		}
		want := min(base<<n, 10*base) // before jitter
		if lo < want/2 || lo > want {
			t.Fatalf("retry %d waited from %v, want about half of %v", n, lo, want)
		}
	}
}
