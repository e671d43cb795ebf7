package breaker

// window counts completed, failed and slow calls while the breaker is
// closed, over a rolling window with the same bucket geometry as
// gobreaker's. It has no lock of its own: the Breaker guards it with mu.
// It is cleared on every state change, as gobreaker clears its counts.
type window struct {
	bucketNs            int64 // bucket length
	start               int64 // ns since the Breaker's epoch when the window was cleared
	age                 int64 // index since start of the newest bucket
	total, failed, slow uint32
	buckets             []windowBucket
}

type windowBucket struct{ total, failed, slow uint32 }

func newWindow(bucketNs int64, n int) window {
	return window{bucketNs: max(bucketNs, 1), buckets: make([]windowBucket, max(n, 1))}
}

func (w *window) reset(now int64) {
	clear(w.buckets)
	w.total, w.failed, w.slow = 0, 0, 0
	w.start, w.age = now, 0
}

// advance expires the buckets that have left the window by now.
func (w *window) advance(now int64) {
	age := (now - w.start) / w.bucketNs
	if age <= w.age {
		return
	}
	n := int64(len(w.buckets))
	if age-w.age >= n {
		clear(w.buckets)
		w.total, w.failed, w.slow = 0, 0, 0
		w.age = age
		return
	}
	for w.age < age {
		w.age++
		bk := &w.buckets[w.age%n]
		w.total -= bk.total
		w.failed -= bk.failed
		w.slow -= bk.slow
		*bk = windowBucket{}
	}
}

func (w *window) record(now int64, failed, slow bool) {
	w.advance(now)
	bk := &w.buckets[w.age%int64(len(w.buckets))]
	bk.total++
	w.total++
	if failed {
		bk.failed++
		w.failed++
	}
	if slow {
		bk.slow++
		w.slow++
	}
}

// failExceeded reports whether the window holds at least minRequests
// calls and the failed ones make up at least ratio of them.
func (w *window) failExceeded(minRequests uint32, ratio float64) bool {
	return w.total > 0 && w.total >= minRequests && float64(w.failed)/float64(w.total) >= ratio
}

// slowExceeded is failExceeded for slow calls.
func (w *window) slowExceeded(minRequests uint32, ratio float64) bool {
	return w.total > 0 && w.total >= minRequests && float64(w.slow)/float64(w.total) >= ratio
}
