package discovery

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// reduced is what NewSchedule must lay out when no scaling is needed:
// weights <= 0 count as 1, divided by their greatest common divisor.
func reduced(weights []int) (w []int, total int) {
	w = make([]int, len(weights))
	g := 0
	for i, x := range weights {
		w[i] = max(x, 1)
		g = gcd(w[i], g)
	}
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	return w, total
}

// cycle returns the first total picks of s and checks that the schedule
// repeats with that period.
func cycle(t *testing.T, s Schedule, total int) []int {
	t.Helper()
	order := make([]int, total)
	for k := range order {
		order[k] = s.At(uint64(k))
		if order[k] < 0 || order[k] >= s.Len() {
			t.Fatalf("At(%d) = %d, out of range [0,%d)", k, order[k], s.Len())
		}
	}
	for k := range 2 * total {
		if a, b := s.At(uint64(k)), s.At(uint64(k+total)); a != b {
			t.Fatalf("not periodic with period %d: At(%d)=%d, At(%d)=%d", total, k, a, k+total, b)
		}
	}
	return order
}

// checkSmooth checks the stride-scheduling bound on every prefix of one
// cycle: slot i's count after m picks is within 1/2 + (n/2)(w_i/T) of its
// ideal share m*w_i/T (each slot is within 1/2 of its share of the virtual
// time reached, and the n slots together within n/2 of m). For two slots
// 9:1 that keeps the 1 within 0.6 of its share: it cannot wait 9 picks.
func checkSmooth(t *testing.T, order []int, w []int, total int) {
	t.Helper()
	n := len(w)
	count := make([]int, n)
	check := func(slot, m int) {
		ideal := float64(m) * float64(w[slot]) / float64(total)
		bound := 0.5 + float64(n)/2*float64(w[slot])/float64(total) + 0.02
		if d := math.Abs(float64(count[slot]) - ideal); d > bound {
			t.Fatalf("after %d picks slot %d has %d, ideal %.2f: off by %.2f > %.2f", m, slot, count[slot], ideal, d, bound)
		}
	}
	// A slot's count only changes at its own picks while its ideal share
	// grows steadily, so its worst lags are just before and just after
	// its picks: checking there covers every prefix.
	for m, slot := range order {
		check(slot, m) // before the pick
		count[slot]++
		check(slot, m+1) // after it
	}
}

func TestScheduleExactProportions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randomWeights := func(n, maxW int) []int {
		w := make([]int, n)
		for i := range w {
			w[i] = 1 + rng.IntN(maxW)
		}
		return w
	}
	tests := [][]int{
		{9, 1},
		{90, 10},
		{1, 9},
		{2, 1},
		{1, 2, 3},
		{3, 1, 1},
		{5, 5, 1},
		{100, 1},
		{7, 11, 13},
		{1, 1, 1, 1, 50},
		{0, 2},     // zero counts as 1
		{-5, 3, 0}, // so do negatives
		{1000, 999, 1},
		{65535, 1},
		randomWeights(10, 10),
		randomWeights(100, 100),
		randomWeights(1000, 60),
		randomWeights(10000, 6),
	}
	for _, weights := range tests {
		name := fmt.Sprint(weights)
		if len(weights) > 8 {
			name = fmt.Sprintf("n=%d", len(weights))
		}
		t.Run(name, func(t *testing.T) {
			s := NewSchedule(weights)
			if s.Len() != len(weights) {
				t.Fatalf("Len = %d, want %d", s.Len(), len(weights))
			}
			w, total := reduced(weights)
			if total > maxScheduleLen {
				t.Fatalf("test vector too large: %d", total)
			}
			order := cycle(t, s, total)
			count := make([]int, len(w))
			for _, slot := range order {
				count[slot]++
			}
			if !slices.Equal(count, w) {
				t.Fatalf("counts per cycle differ from the reduced weights %v", diffCounts(count, w))
			}
			checkSmooth(t, order, w, total)
		})
	}
}

func diffCounts(got, want []int) string {
	var b strings.Builder
	for i := range got {
		if got[i] != want[i] {
			fmt.Fprintf(&b, " slot %d: %d want %d;", i, got[i], want[i])
		}
	}
	return b.String()
}

// TestScheduleOrder pins the order for small cases: stride scheduling with
// ties to the lower slot.
func TestScheduleOrder(t *testing.T) {
	tests := []struct {
		weights []int
		want    string // slot i written as 'A'+i
	}{
		{[]int{9, 1}, "AAAAABAAAA"},
		{[]int{1, 9}, "BBBBBABBBB"},
		{[]int{90, 10}, "AAAAABAAAA"},
		{[]int{2, 1}, "ABA"},
		{[]int{3, 1}, "AABA"},
		{[]int{1, 2, 3}, "CBCABC"},
		{[]int{4, 2, 1, 1}, "ABACDABA"},
	}
	for _, tt := range tests {
		s := NewSchedule(tt.weights)
		var b strings.Builder
		for k := range len(tt.want) {
			b.WriteByte(byte('A' + s.At(uint64(k))))
		}
		if b.String() != tt.want {
			t.Errorf("NewSchedule(%v) order %s, want %s", tt.weights, b.String(), tt.want)
		}
	}
}

// TestScheduleInterleaves checks that a heavy slot never runs on for its
// whole share: with 9:1 the 1 comes in the middle of the cycle. In stride
// scheduling slot j's k-th pick falls at virtual time (k-1/2)/w_j of the
// cycle, so the light slot l is first picked at time 1/(2w_l), after at
// most sum_j floor(w_j/(2w_l)+1/2) - 1 other picks, and between two of its
// picks (1/w_l apart) each other slot j fits at most floor(w_j/w_l)+1.
func TestScheduleInterleaves(t *testing.T) {
	for _, weights := range [][]int{{9, 1}, {99, 1}, {50, 50, 1}, {3, 3, 3, 1}, {10, 7, 3}, {1000, 1, 500}} {
		s := NewSchedule(weights)
		w, total := reduced(weights)
		light := slices.Index(w, slices.Min(w))
		firstBound, gapBound := -1, 1
		for j, x := range w {
			firstBound += (2*x + 2*w[light]) / (4 * w[light]) // floor(x/(2w_l) + 1/2)
			if j != light {
				gapBound += x/w[light] + 1
			}
		}
		first, last, longest := -1, -1, 0
		for k := range 3 * total {
			if s.At(uint64(k)) == light {
				if first < 0 {
					first = k
				}
				if last >= 0 {
					longest = max(longest, k-last)
				}
				last = k
			}
		}
		if first > firstBound {
			t.Errorf("%v: light slot first picked at %d, want by %d", weights, first, firstBound)
		}
		if longest > gapBound {
			t.Errorf("%v: light slot waits %d picks, want at most %d", weights, longest, gapBound)
		}
	}
}

func TestScheduleEqualWeightsIsRoundRobin(t *testing.T) {
	for _, weights := range [][]int{{1, 1}, {5, 5, 5}, {0, -1, 1}, {1000000, 1000000}, make([]int, 10000)} {
		s := NewSchedule(weights)
		if s.order != nil {
			t.Errorf("%d equal weights: a %d-entry order table, want none", len(weights), len(s.order))
		}
		for k := range uint64(3 * len(weights)) {
			if got := s.At(k); got != int(k%uint64(len(weights))) {
				t.Fatalf("%d equal weights: At(%d) = %d", len(weights), k, got)
			}
		}
	}
	for _, weights := range [][]int{nil, {}, {7}, {-3}} {
		s := NewSchedule(weights)
		if s.Len() != len(weights) {
			t.Fatalf("Len = %d", s.Len())
		}
		if len(weights) == 1 {
			for k := range uint64(5) {
				if s.At(k) != 0 {
					t.Fatalf("one slot: At(%d) = %d", k, s.At(k))
				}
			}
		}
	}
}

// TestScheduleHugeWeights checks weight sums past the table limit and past
// the range of int: the schedule stays bounded, every slot keeps a place
// and the proportions hold as far as the table's size allows.
func TestScheduleHugeWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
	}{
		{"sum over limit", []int{100000, 1}},
		{"one huge", []int{math.MaxInt, 1}},
		{"two huge", []int{math.MaxInt, math.MaxInt - 1, 1}},
		{"2^50", []int{1 << 50, 1 << 49, 1}},
		{"2^47 boundary", []int{1<<47 + 1, 1 << 47, 3}},
		{"many huge", slices.Repeat([]int{math.MaxInt, math.MaxInt / 3}, 500)},
		{"10000 slots over limit", func() []int {
			w := make([]int, 10000)
			for i := range w {
				w[i] = 1 + i%1000
			}
			return w
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSchedule(tt.weights)
			n := len(tt.weights)
			if s.Len() != n {
				t.Fatalf("Len = %d", s.Len())
			}
			limit := max(maxScheduleLen, n)
			if len(s.order) == 0 || len(s.order) > limit+n {
				t.Fatalf("order has %d entries, want 1..%d", len(s.order), limit+n)
			}
			count := make([]int, n)
			for k := range len(s.order) {
				count[s.At(uint64(k))]++
			}
			sum := 0.0
			for _, x := range tt.weights {
				sum += float64(x)
			}
			for i, c := range count {
				if c == 0 {
					t.Fatalf("slot %d (weight %d) never picked", i, tt.weights[i])
				}
				// Within 1 pick (rounding, the floor of 1) plus 0.1% of
				// its ideal share.
				ideal := float64(tt.weights[i]) / sum * float64(len(s.order))
				if d := math.Abs(float64(c) - ideal); d > 1+ideal/1000 {
					t.Fatalf("slot %d (weight %d): %d picks of %d, ideal %.1f", i, tt.weights[i], c, len(s.order), ideal)
				}
			}
		})
	}
}

func TestScheduleDoesNotKeepWeights(t *testing.T) {
	w := []int{3, 1}
	s := NewSchedule(w)
	w[0], w[1] = 1, 100
	if got := []int{s.At(0), s.At(1), s.At(2), s.At(3)}; !slices.Equal(got, []int{0, 0, 1, 0}) {
		t.Fatalf("order changed with the caller's slice: %v", got)
	}
}
