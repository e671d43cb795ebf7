package breaker

import "testing"

// TestReview2ResetKeepsTotalPaired replays, step by step, the interleaving
// TestReview2NoDriftAcrossStateChanges finds by chance: a lock-free
// success has passed addSuccess's checks and added to its bucket when a
// state change resets the window, and it adds to the running total after
// the reset. Once every bucket has rolled out, the running total must be
// back to the calls actually in the window.
func TestReview2ResetKeepsTotalPaired(t *testing.T) {
	var w window
	w.init(10, 4)
	w.reset(0)
	w.record(0, false, false) // rolls bucket 0 in: successes are lock-free
	if !w.addSuccess(1) {
		t.Fatal("addSuccess refused a success in the newest bucket")
	}
	w.buckets[0].calls.Add(1)   // a success's bucket add, before the reset
	w.reset(5)                  // gbStateChange
	w.calls.Add(1)              // its running-total add, after
	w.record(1000, true, false) // far later: every bucket rolls out
	if got := w.total(); got != 1 {
		t.Fatalf("total %d after the window rolled over, want 1 (the failure alone)", got)
	}
}
