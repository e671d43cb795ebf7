package engine

import "sync/atomic"

// Budget lets retries add at most a ratio of the calls sent, plus a
// reserve: every call deposits ratio tokens and every retry takes one.
// Counted in thousandths so it stays lock-free.
type Budget struct {
	ratio   float64
	milli   atomic.Int64
	deposit int64
}

// BudgetReserve is the number of retries a budget starts with and can hold
// beyond what calls have earned, so low-traffic services can still retry.
const BudgetReserve = 10

// NewBudget returns a full budget for ratio.
func NewBudget(ratio float64) *Budget {
	b := &Budget{ratio: ratio, deposit: int64(ratio * 1000)}
	b.milli.Store(BudgetReserve * 1000)
	return b
}

// OnCall deposits the share one call earns.
func (b *Budget) OnCall() {
	const full = BudgetReserve * 1000
	for {
		v := b.milli.Load()
		if v >= full {
			return // full: no write, so a full budget costs one shared read
		}
		if b.milli.CompareAndSwap(v, min(v+b.deposit, full)) {
			return
		}
	}
}

// Take spends one retry, reporting false when the budget is exhausted.
func (b *Budget) Take() bool {
	for {
		v := b.milli.Load()
		if v < 1000 {
			return false
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// Left returns the retries the budget allows now, in thousandths.
func (b *Budget) Left() int64 { return b.milli.Load() }
