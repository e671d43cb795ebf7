package breaker

import "sync/atomic"

// window counts completed, failed and slow calls while the breaker is
// closed, over a rolling window with the same bucket geometry as
// gobreaker's. It is cleared on every state change, as gobreaker clears
// its counts.
//
// A success that is not slow is counted without a lock (addSuccess): on
// two cores the Breaker's mutex, taken by every success, was where
// parallel callers queued (92% of the decision path's mutex profile).
// Everything else (failures, slow calls, rolling a bucket) runs under the
// Breaker's mu.
type window struct {
	bucketNs int64
	start    atomic.Int64 // ns since the Breaker's epoch when the window was cleared
	// newest is the age of the newest bucket rolled in (buckets since
	// start), written under mu: a lock-free success counts only in a
	// bucket of the window it ends, so that a tag that wrapped (32 bits
	// of bucket ages) never matches a bucket not rolled in yet.
	newest atomic.Int64
	// calls is the calls of the buckets in the window: a success adds to
	// it beside its bucket, and rolling a bucket out takes its count off,
	// so that the trip decision reads it without summing the buckets.
	calls atomic.Int64
	// Guarded by mu: the failed and slow calls of the buckets in the
	// window.
	failed, slow uint32
	buckets      []windowBucket
}

// windowBucket holds the calls of one bucket. calls packs the bucket's
// tag (its age + 1, truncated to 32 bits; 0 = empty) in the high half and
// the calls counted in the low half, so that a lock-free success counts
// only in the bucket it was timed in: a tag that does not match sends it
// to the locked path, which rolls the bucket.
type windowBucket struct {
	calls        atomic.Uint64
	failed, slow uint32 // guarded by mu; belong to calls' tag
}

const countMask = 1<<32 - 1

func tagOf(age int64) uint64 { return uint64(uint32(age+1)) << 32 }

// init sizes an empty window: n buckets of bucketNs each.
func (w *window) init(bucketNs int64, n int) {
	w.bucketNs = max(bucketNs, 1)
	w.buckets = make([]windowBucket, max(n, 1))
}

// reset clears the window; called under mu.
func (w *window) reset(now int64) {
	for i := range w.buckets {
		bk := &w.buckets[i]
		// Paired with calls, as a roll is: a success that counted in its
		// bucket before this and in calls after (or the reverse) would
		// otherwise leave calls off for the whole next closed period.
		w.calls.Add(-int64(bk.calls.Swap(0) & countMask))
		bk.failed, bk.slow = 0, 0
	}
	w.failed, w.slow = 0, 0
	w.start.Store(now)
	w.newest.Store(0)
}

func (w *window) ageAt(now int64) int64 { return max(now-w.start.Load(), 0) / w.bucketNs }

// addSuccess counts a call that neither failed nor was slow, without a
// lock, when the bucket of now is current; false means the caller must
// record it under mu. A success whose goroutine stalls between its clock
// read and the add may land in a bucket rolled meanwhile, or in a window
// cleared by a state change that happened in between: one call counted
// one bucket late, which the ratio can bear.
func (w *window) addSuccess(now int64) bool {
	age := w.ageAt(now)
	n := int64(len(w.buckets))
	if newest := w.newest.Load(); age > newest || age <= newest-n {
		return false
	}
	bk := &w.buckets[age%n]
	if bk.calls.Load()&^countMask != tagOf(age) {
		return false
	}
	bk.calls.Add(1)
	w.calls.Add(1)
	return true
}

// record counts one call under mu, rolling the buckets now has moved past.
func (w *window) record(now int64, failed, slow bool) {
	age := w.ageAt(now)
	n := int64(len(w.buckets))
	newest := w.newest.Load() // written only under mu
	if age > newest {
		// The buckets of the ages between the old newest and age are
		// reused: their calls leave the window.
		for a := max(newest+1, age-n+1); a <= age; a++ {
			w.rollIn(a)
		}
		w.newest.Store(age)
		newest = age
	}
	if age <= newest-n {
		age = newest // older than the window: counted in the newest bucket
	}
	bk := &w.buckets[age%n]
	if bk.calls.Load()&^countMask != tagOf(age) {
		// A bucket of the window not rolled in since the window was
		// cleared.
		w.rollIn(age)
	}
	bk.calls.Add(1)
	w.calls.Add(1)
	if failed {
		bk.failed++
		w.failed++
	}
	if slow {
		bk.slow++
		w.slow++
	}
}

// rollIn makes the bucket of age an empty bucket of that age, taking the
// calls it held for an older age out of the window's counts; under mu.
func (w *window) rollIn(age int64) {
	bk := &w.buckets[age%int64(len(w.buckets))]
	w.failed -= bk.failed
	w.slow -= bk.slow
	bk.failed, bk.slow = 0, 0
	w.calls.Add(-int64(bk.calls.Swap(tagOf(age)) & countMask))
}

// total returns the calls of the buckets in the window.
func (w *window) total() uint32 { return uint32(max(w.calls.Load(), 0)) }

// failExceeded reports whether the window holds at least minRequests
// calls and the failed ones make up at least ratio of them. Called under
// mu.
func (w *window) failExceeded(minRequests uint32, ratio float64) bool {
	return w.failed > 0 && exceeded(w.total(), w.failed, minRequests, ratio)
}

// slowExceeded is failExceeded for slow calls.
func (w *window) slowExceeded(minRequests uint32, ratio float64) bool {
	return w.slow > 0 && exceeded(w.total(), w.slow, minRequests, ratio)
}

func exceeded(total, bad, minRequests uint32, ratio float64) bool {
	return total > 0 && total >= minRequests && float64(bad)/float64(total) >= ratio
}
