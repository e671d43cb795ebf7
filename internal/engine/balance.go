package engine

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// The p2c-ewma constants. tau is the time constant the latency average
// decays with (a sample t ns after the last one weighs 1 − e^(−t/tau)),
// kratos' 600ms: a slowed instance's average rises within a few calls,
// and one call after a pause is enough to learn it recovered. An
// instance not picked for forcePick is taken once when drawn, as go-zero
// and kratos do, so an instance shunned while slow is tried again.
const (
	ewmaTau   = float64(600 * time.Millisecond)
	forcePick = int64(time.Second)
)

// instLoad is the load of one instance for the load-aware balancers.
type instLoad struct {
	inflight atomic.Int64
	ewma     atomic.Uint64 // math.Float64bits of the latency average, ns
	stamp    atomic.Int64  // Unix ns of the last latency sample
	picked   atomic.Int64  // Unix ns of the last pick
	// fail is math.Float64bits of the failure average, weighted by time
	// as ewma is but each sample by at least failStep: 0 while the
	// instance's calls succeed, toward 1 while they fail.
	fail atomic.Uint64
}

// minSuccess bounds the success share cost divides by: an instance
// failing every call costs 1000 times its latency and load (100 times
// was not enough on a loaded host, where a healthy instance's average
// can grow tenfold), so it takes calls only when forced (forcePick),
// which is how it is found again once it recovers.
const minSuccess = 0.001

// failStep is the least share by which one sample moves the failure
// average: 8 failures in a row make an instance cost ten times more, 24
// a thousand times, however fast they come.
const failStep = 0.25

// observe adds a sample ending at now, rtt ns long (negative: no latency
// sample, the call never reached the instance) and failed or not: each
// average moves toward it by 1 − e^(−t/ewmaTau), t the time since the
// last sample. Weighting by time, not by count, keeps one stall of an instance
// picked every millisecond from moving its average much, while the first
// sample after a long pause (an instance shunned while slow) replaces
// most of it. Not peak-sensitive (as Finagle's is): on a loaded host a
// single scheduling stall on a healthy instance would then outweigh an
// instance that is slow on every call (measured: the slowed instance of
// TestP2CEWMAAvoidsASlowedInstance got 28% of the calls in a loaded run).
func (l *instLoad) observe(now, rtt int64, failed bool) {
	last := l.stamp.Swap(now)
	w := 0.0 // the first sample replaces the zero averages
	if last != 0 {
		w = math.Exp(-float64(max(0, now-last)) / ewmaTau)
	}
	if rtt >= 0 {
		prev := math.Float64frombits(l.ewma.Load())
		if last == 0 || prev == 0 {
			prev = float64(rtt)
		}
		l.ewma.Store(math.Float64bits(prev*w + float64(rtt)*(1-w)))
	}
	f := 0.0
	if failed {
		f = 1
	}
	// By time alone, an instance failing every call of a busy service
	// within a millisecond would need a second of failures to be avoided.
	w = min(w, 1-failStep)
	l.fail.Store(math.Float64bits(math.Float64frombits(l.fail.Load())*w + f*(1-w)))
}

// EWMA returns the instance's latency average.
func (l *instLoad) EWMA() time.Duration {
	return time.Duration(math.Float64frombits(l.ewma.Load()))
}

// cost is the instance's load for lb: for p2c-ewma its latency average
// times (in-flight + 1) (the most there is while its first call is in
// flight or when it has failed without a latency sample), for least-request its in-flight calls + 1, over
// its share of calls that succeed (at least minSuccess) either way. The
// weight is not in it: it is in how often the instance is drawn (pair). Without the success share an instance that
// fails fast (503 at once) would look the least loaded and draw most
// calls, as kratos' p2c weighs by success for.
func (l *instLoad) cost(lb router.LoadBalancer) float64 {
	inflight := l.inflight.Load()
	n := float64(inflight + 1)
	if lb == router.P2CEWMA {
		ewma := math.Float64frombits(l.ewma.Load())
		if ewma == 0 && (inflight > 0 || l.fail.Load() != 0) {
			// No latency known yet and a call pending: as Finagle's
			// penalty, the instance takes one call at a time until its
			// first answer, rather than every concurrent call at once.
			// No latency known and failures (connections refused): a
			// zero average would make it the cheapest of all; it is
			// tried again by forcePick.
			return math.MaxFloat64
		}
		n *= ewma + 1
	}
	ok := max(minSuccess, 1-math.Float64frombits(l.fail.Load()))
	return n / ok
}

// loads returns the load trackers of list for a service with a
// load-aware balancer, keeping those of old's instances.
func loads(svc, old *Service, list []discovery.Instance) map[string]*instLoad {
	if svc.policy.LoadBalancer == router.RoundRobin {
		return nil
	}
	out := make(map[string]*instLoad, len(list))
	for _, in := range list {
		if old != nil && old.load[in.Address] != nil {
			out[in.Address] = old.load[in.Address]
			continue
		}
		out[in.Address] = new(instLoad)
	}
	return out
}

// balance picks from list by the service's load-aware balancer: two
// instances drawn at random that accept takes, the one of lower cost, or
// the other one when that has not been picked for forcePick. It returns
// nil, for the round-robin pick to decide, when the balancer is
// round-robin or three draws found no instance accept takes.
func (t *Try) balance(p *discovery.Picker, accept func(*discovery.Instance) bool) *discovery.Instance {
	s := t.c.svc
	if s == nil || s.load == nil || p == nil || p.Len() == 0 {
		return nil
	}
	list := p.Instances()
	lb := s.policy.LoadBalancer
	if len(list) == 1 {
		if accept(&list[0]) {
			return &list[0]
		}
		return nil
	}
	for range 3 {
		i, j := pair(p)
		a, b := &list[i], &list[j]
		okA, okB := accept(a), accept(b)
		switch {
		case i == j && okA:
			return a
		case okA && okB:
			la, lbd := s.load[a.Address], s.load[b.Address]
			if la == nil || lbd == nil {
				return a
			}
			if la.cost(lb) > lbd.cost(lb) {
				a, la, b, lbd = b, lbd, a, la
			}
			// a is the cheaper; b gets a turn if it has waited too long.
			if now := time.Now().UnixNano(); now-lbd.picked.Load() > forcePick {
				return b
			}
			return a
		case okA:
			return a
		case okB:
			return b
		}
	}
	return nil
}

// pair draws two instances of p (at least two): two distinct ones,
// uniformly, when every weight is equal; else each by its weight,
// independently (from p's weighted schedule, in constant time), so that
// the same one may come twice. Drawn by weight and compared by load
// alone, an instance of weight w of the total takes w² + 2·w·(1−w)·(how
// often it is the cheaper) of the calls: its weight's share at equal
// load. Weight in the cost instead made the comparison winner-take-all:
// with two instances, both drawn every time, one of weight 1 beside one of
// 9 got one call a second (forcePick), not a tenth of them.
func pair(p *discovery.Picker) (int, int) {
	if !p.EqualWeights() {
		return p.Weighted(rand.Uint64()), p.Weighted(rand.Uint64())
	}
	n := p.Len()
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	return i, j
}

// track starts counting the try's call on in: one more in flight.
func (t *Try) track(in *discovery.Instance) {
	t.untrack(false, false)
	if s := t.c.svc; s != nil && s.load != nil {
		if l := s.load[in.Address]; l != nil {
			now := time.Now().UnixNano()
			l.inflight.Add(1)
			l.picked.Store(now)
			t.ld, t.ldStart = l, now
		}
	}
}

// untrack ends the count of track; sent says the call reached the
// instance, whose latency is then a sample of its average, and failed
// that it failed (a connect failure is one, with no latency sample).
func (t *Try) untrack(sent, failed bool) {
	l := t.ld
	if l == nil {
		return
	}
	t.ld = nil
	l.inflight.Add(-1)
	if sent || failed {
		now := time.Now().UnixNano()
		rtt := now - t.ldStart
		if !sent {
			rtt = -1
		}
		l.observe(now, rtt, failed)
	}
}

// LoadInfo describes the load of one instance of a service with a
// load-aware balancer, for status pages and metrics.
type LoadInfo struct {
	Service, Instance string
	// InFlight is the calls sent to the instance and not yet done.
	InFlight int64
	// EWMA is the instance's latency average (zero before its first
	// call).
	EWMA time.Duration
}

// Loads lists the load of every instance of the services with a
// load-aware balancer, by service then address.
func (s *State) Loads() []LoadInfo {
	var out []LoadInfo
	for _, name := range s.services.Keys() {
		svc := s.Service(name)
		for _, addr := range slices.Sorted(maps.Keys(svc.load)) {
			l := svc.load[addr]
			out = append(out, LoadInfo{Service: name, Instance: addr, InFlight: l.inflight.Load(), EWMA: l.EWMA()})
		}
	}
	return out
}
