package breaker

// slowWindow counts completed and slow calls over a rolling window with the
// same bucket geometry as gobreaker's. It has no lock of its own: the
// Breaker only touches it from gobreaker's hooks, under gobreaker's mutex.
// It is cleared on every state change, as gobreaker clears its counts.
type slowWindow struct {
	bucketNs    int64 // bucket length
	start       int64 // ns since the Breaker's epoch when the window was cleared
	age         int64 // index since start of the newest bucket
	total, slow uint32
	buckets     []slowBucket
}

type slowBucket struct{ total, slow uint32 }

func newSlowWindow(bucketNs int64, n int) slowWindow {
	return slowWindow{bucketNs: max(bucketNs, 1), buckets: make([]slowBucket, max(n, 1))}
}

func (w *slowWindow) reset(now int64) {
	clear(w.buckets)
	w.total, w.slow = 0, 0
	w.start, w.age = now, 0
}

// advance expires the buckets that have left the window by now.
func (w *slowWindow) advance(now int64) {
	age := (now - w.start) / w.bucketNs
	if age <= w.age {
		return
	}
	n := int64(len(w.buckets))
	if age-w.age >= n {
		clear(w.buckets)
		w.total, w.slow = 0, 0
		w.age = age
		return
	}
	for w.age < age {
		w.age++
		bk := &w.buckets[w.age%n]
		w.total -= bk.total
		w.slow -= bk.slow
		*bk = slowBucket{}
	}
}

func (w *slowWindow) record(now int64, slow bool) {
	w.advance(now)
	bk := &w.buckets[w.age%int64(len(w.buckets))]
	bk.total++
	w.total++
	if slow {
		bk.slow++
		w.slow++
	}
}

// exceeded reports whether the window holds at least minRequests calls and
// the slow ones make up at least ratio of them.
func (w *slowWindow) exceeded(minRequests uint32, ratio float64) bool {
	return w.total > 0 && w.total >= minRequests && float64(w.slow)/float64(w.total) >= ratio
}
