package discovery

import (
	"container/heap"
	"math"
	"math/bits"
	"slices"
)

// maxScheduleLen bounds a weighted schedule; larger weight sums are scaled
// down, keeping every weight at least 1.
const maxScheduleLen = 1 << 16

// Schedule is a precomputed smooth weighted round-robin order over n slots.
// Slot i appears in proportion to its weight and the appearances are
// interleaved rather than bunched. A Schedule is immutable.
type Schedule struct {
	n     int
	order []uint32 // nil when every weight is equal: plain round-robin
}

// NewSchedule builds the order for weights (zero or negative weights count
// as 1).
func NewSchedule(weights []int) Schedule {
	s := Schedule{n: len(weights)}
	if len(weights) < 2 {
		return s
	}
	w := make([]int, len(weights))
	equal := true
	for i, x := range weights {
		if x <= 0 {
			x = 1
		}
		w[i] = x
		if x != w[0] {
			equal = false
		}
	}
	if equal {
		return s
	}
	g := w[0]
	for _, x := range w {
		g = gcd(g, x)
	}
	// Reduce by the common divisor, then, if the sum would overflow, shift
	// every weight right until n of them fit in an int (a weight may be as
	// large as math.MaxInt; each stays at least 1).
	shift := 0
	if slices.Max(w)/g > math.MaxInt/len(w) {
		shift = bits.Len(uint(len(w)))
	}
	total := 0
	for i := range w {
		w[i] = max(1, (w[i]/g)>>shift)
		total += w[i]
	}
	if limit := max(maxScheduleLen, len(w)); total > limit {
		// Scale down to limit picks: w*limit/total, computed in 128 bits
		// (w*limit overflows an int for weights above 2^47).
		old := uint64(total)
		total = 0
		for i := range w {
			hi, lo := bits.Mul64(uint64(w[i]), uint64(limit))
			q, _ := bits.Div64(hi, lo, old) // w <= old, so q <= limit: no overflow
			w[i] = max(1, int(q))
			total += w[i]
		}
	}
	s.order = strideOrder(w, total)
	return s
}

// Len is the number of slots.
func (s Schedule) Len() int { return s.n }

// At returns the slot for the k-th pick.
func (s Schedule) At(k uint64) int {
	if s.order != nil {
		return int(s.order[k%uint64(len(s.order))])
	}
	return int(k % uint64(s.n))
}

// strideOrder lays out total picks by stride scheduling: each slot advances
// its pass by a stride inversely proportional to its weight, and the
// smallest pass goes next (ties to the lower slot).
func strideOrder(w []int, total int) []uint32 {
	const big = 1 << 40
	h := make(strideHeap, len(w))
	for i, x := range w {
		stride := uint64(big / x)
		h[i] = strideEntry{pass: stride / 2, stride: stride, slot: uint32(i)}
	}
	heap.Init(&h)
	order := make([]uint32, total)
	for k := range order {
		e := &h[0]
		order[k] = e.slot
		e.pass += e.stride
		heap.Fix(&h, 0)
	}
	return order
}

type strideEntry struct {
	pass, stride uint64
	slot         uint32
}

type strideHeap []strideEntry

func (h strideHeap) Len() int { return len(h) }
func (h strideHeap) Less(i, j int) bool {
	if h[i].pass != h[j].pass {
		return h[i].pass < h[j].pass
	}
	return h[i].slot < h[j].slot
}
func (h strideHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *strideHeap) Push(any)     { panic("strideHeap: fixed size") }
func (h *strideHeap) Pop() any     { panic("strideHeap: fixed size") }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
