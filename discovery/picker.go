package discovery

import "sync/atomic"

// Picker balances calls over one immutable list of instances with smooth
// weighted round-robin. Pick is lock-free and allocation-free; a Picker is
// safe for concurrent use and is replaced, not changed, when the list
// changes. Its one shared write is the round-robin cursor, an atomic add
// per pick among two or more instances (none for a single instance): it
// keeps the weighted split exact over whole cycles however many
// goroutines pick, which per-CPU cursors would not.
type Picker struct {
	instances []Instance
	schedule  Schedule
	next      atomic.Uint64
}

// probesBeforeScan is how many schedule positions Pick tries before it
// scans the whole list for an acceptable instance.
const probesBeforeScan = 4

// NewPicker returns a Picker over instances. It keeps the slice: the caller
// must not change it afterwards.
func NewPicker(instances []Instance) *Picker {
	weights := make([]int, len(instances))
	for i := range instances {
		weights[i] = instances[i].weight()
	}
	return &Picker{instances: instances, schedule: NewSchedule(weights)}
}

// Len is the number of instances.
func (p *Picker) Len() int { return len(p.instances) }

// Instances returns the picker's list. Callers must not modify it.
func (p *Picker) Instances() []Instance { return p.instances }

// EqualWeights reports whether every instance has the same weight.
func (p *Picker) EqualWeights() bool { return p.schedule.order == nil }

// Weighted returns the index of the instance whose share of the weighted
// schedule holds position r (any value: a random one draws an instance in
// proportion to its weight, in constant time).
func (p *Picker) Weighted(r uint64) int { return p.schedule.At(r) }

// Pick returns the next instance in weighted round-robin order for which
// accept returns true (a nil accept takes any), or nil when none does.
// A rejected instance's turn is given away, not handed to its successor,
// so the accepted instances keep their shares relative to each other.
func (p *Picker) Pick(accept func(*Instance) bool) *Instance {
	n := len(p.instances)
	switch n {
	case 0:
		return nil
	case 1:
		// No turn to take: the cursor, a cache line every caller would
		// otherwise write, is left alone.
		if in := &p.instances[0]; accept == nil || accept(in) {
			return in
		}
		return nil
	}
	k := p.next.Add(1) - 1
	if accept == nil {
		return &p.instances[p.schedule.At(k)]
	}
	for range min(n, probesBeforeScan) {
		in := &p.instances[p.schedule.At(k)]
		if accept(in) {
			return in
		}
		// Take a fresh position: probing k+1 instead would give the
		// next instance this turn on top of its own.
		k = p.next.Add(1) - 1
	}
	start := p.schedule.At(k)
	for i := range n {
		in := &p.instances[(start+i)%n]
		if accept(in) {
			return in
		}
	}
	return nil
}

// Peek returns the instance Pick would return now, without taking a turn:
// the round-robin position is read, not advanced. Other calls may pick
// first, so it is a forecast, for tools that explain a decision.
func (p *Picker) Peek(accept func(*Instance) bool) *Instance {
	n := len(p.instances)
	if n == 0 {
		return nil
	}
	k := p.next.Load()
	if accept == nil {
		return &p.instances[p.schedule.At(k)]
	}
	for i := range uint64(min(n, probesBeforeScan)) {
		// Pick takes a fresh position after each refusal: k, k+1, ...
		// when no other call comes in between.
		if in := &p.instances[p.schedule.At(k+i)]; accept(in) {
			return in
		}
	}
	start := p.schedule.At(k + uint64(min(n, probesBeforeScan)))
	for i := range n {
		if in := &p.instances[(start+i)%n]; accept(in) {
			return in
		}
	}
	return nil
}
