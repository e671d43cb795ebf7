package engine

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/router"
)

// ReasonShed is the rejection reason of a request the local service's
// adaptive inbound limit shed (lightmesh_rejections_total, Refusal.Reason).
const ReasonShed = "shed"

// ErrShed reports that the local service was over its adaptive inbound
// concurrency limit (inboundShedding) and the request was shed; the
// error Enter returns is a *ShedError.
var ErrShed = errors.New("mesh: shed")

// ShedError names the local service that shed a request and the limit it
// was over.
type ShedError struct {
	Service string
	Limit   int
}

func (e *ShedError) Error() string {
	return fmt.Sprintf("mesh: shed: service %q is at its adaptive concurrency limit of %d", e.Service, e.Limit)
}

// Is reports whether target is ErrShed.
func (e *ShedError) Is(target error) bool { return target == ErrShed }

// baselinePeriod is how long a window's average latency may serve as the
// no-load latency: the baseline is the lowest window average of the
// current and the previous period, so a service that became slower for
// good is measured against its new latency after at most two periods.
const baselinePeriod = 30 * time.Second

// Shedder is the adaptive concurrency limit of the requests one engine's
// local service receives (router.ShedPolicy says how it moves). Admit
// and Release are safe for concurrent use; Admit is allocation-free and
// takes no lock; Release takes one short lock to add the request's
// latency to the window and, once a window, recompute the limit. There
// is no goroutine and no timer: the limit moves as requests finish.
// It outlives rule changes (the State carries it over), so a rule change
// between modes keeps the limit it learned.
type Shedder struct {
	inflight    atomic.Int64
	limit       atomic.Int64 // 0 until the first Admit under a policy
	maxInflight atomic.Int64 // the most in flight during the window
	shed        atomic.Uint64

	mu       sync.Mutex
	winStart time.Time
	winCount int
	winSum   time.Duration
	curStart time.Time     // the current baseline period began
	curMin   time.Duration // lowest window average in the current period
	prevMin  time.Duration // and in the previous one; 0: none
	baseline time.Duration // min(curMin, prevMin); 0: not yet measured
}

// NewShedder returns a Shedder with nothing measured yet.
func NewShedder() *Shedder { return &Shedder{} }

// Admit reports whether a request may be served under p; when it is,
// the caller must call Release once the request is done.
func (s *Shedder) Admit(p *router.ShedPolicy) bool {
	lim := s.limit.Load()
	if lim == 0 {
		s.limit.CompareAndSwap(0, int64(p.InitialLimit))
		lim = s.limit.Load()
	}
	lim = clampLimit(lim, p)
	n := s.inflight.Add(1)
	if n > lim {
		s.inflight.Add(-1)
		s.shed.Add(1)
		return false
	}
	for {
		m := s.maxInflight.Load()
		if n <= m || s.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
	return true
}

// Release ends a request Admit admitted, which took rtt, finishing at
// now; p (nil: shedding is off now) says how the limit moves.
func (s *Shedder) Release(p *router.ShedPolicy, rtt time.Duration, now time.Time) {
	s.inflight.Add(-1)
	if p == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.winCount == 0 {
		s.winStart = now
	}
	s.winCount++
	s.winSum += rtt
	// The first window closes at ShedMinSamples alone: a service that
	// starts overloaded still measures its first requests, which met no
	// queue, as its no-load latency.
	if s.winCount < router.ShedMinSamples || (s.baseline != 0 && now.Sub(s.winStart) < p.Window) {
		return
	}
	s.update(p, now)
}

// update recomputes the limit from the window that just closed.
func (s *Shedder) update(p *router.ShedPolicy, now time.Time) {
	mean := s.winSum / time.Duration(s.winCount)
	s.winCount, s.winSum = 0, 0
	mean = max(mean, time.Microsecond)
	if s.curStart.IsZero() || now.Sub(s.curStart) >= baselinePeriod {
		s.prevMin, s.curMin, s.curStart = s.curMin, mean, now
	} else {
		s.curMin = min(s.curMin, mean)
	}
	s.baseline = s.curMin
	if s.prevMin != 0 {
		s.baseline = min(s.baseline, s.prevMin)
	}
	// The limit in force: one learned under other rules may lie outside
	// this policy's bounds (maxLimit lowered), and compared with it the
	// requests in flight would never use half of it.
	lim := float64(clampLimit(s.limit.Load(), p))
	s.limit.Store(int64(lim))
	used := float64(s.maxInflight.Swap(s.inflight.Load()))
	if used*2 < lim {
		return // the limit was not what held the requests back
	}
	g := p.Tolerance * float64(s.baseline) / float64(mean)
	switch {
	case g < 1:
		lim *= max(g, 0.5)
	case float64(mean) <= float64(s.baseline)*(1+p.Tolerance)/2:
		// Far below the tolerance: grow fast, as Envoy's headroom does.
		lim += math.Sqrt(lim)
	default:
		// Near it: one more, so the limit does not overshoot by its
		// square root into a queue every window.
		lim++
	}
	lim = min(max(lim, float64(p.MinLimit)), float64(p.MaxLimit))
	s.limit.Store(int64(lim))
}

// Limit returns the limit in force under p: the one learned, within p's
// minLimit..maxLimit, or p's initialLimit before any request was
// admitted.
func (s *Shedder) Limit(p *router.ShedPolicy) int {
	lim := s.limit.Load()
	if lim == 0 {
		lim = int64(p.InitialLimit)
	}
	return int(clampLimit(lim, p))
}

// clampLimit returns lim within p's minLimit..maxLimit.
func clampLimit(lim int64, p *router.ShedPolicy) int64 {
	return min(max(lim, int64(p.MinLimit)), int64(p.MaxLimit))
}

// Shed returns how many requests were shed so far.
func (s *Shedder) Shed() uint64 { return s.shed.Load() }

// InFlight returns how many admitted requests are being served.
func (s *Shedder) InFlight() int { return int(s.inflight.Load()) }

// ShedPolicy returns the inboundShedding policy in force for the local
// service local: its own (or the defaults document's) when the rules
// name it, else the defaults' over the built-in defaults (adaptive; see
// router.BuiltinDefaults), also before any rules. Nil means no shedding.
func (s *State) ShedPolicy(local string) *router.ShedPolicy {
	if local == "" {
		return nil
	}
	if svc := s.Service(local); svc != nil {
		return svc.policy.Shed
	}
	rules := s.table.Rules()
	if p := rules.Policy(local); p != nil {
		return p.Shed
	}
	return rules.DefaultPolicy().Shed
}

// Shedder returns the local service's adaptive inbound limit.
func (s *State) Shedder() *Shedder { return s.shed }

// shedAdmit applies the local service's inboundShedding to req: it
// returns the policy the request was admitted under (nil: not counted,
// nothing to release) or, over the limit, a *ShedError and how long the
// caller should wait (the policy's window: the limit is recomputed
// within it).
func (e *Engine) shedAdmit(st *State, protocol string, req *router.Request) (*router.ShedPolicy, time.Duration, error) {
	p := st.ShedPolicy(e.local)
	if p == nil || st.shed == nil || router.ShedExempt(req.Path) {
		return nil, 0, nil
	}
	if !st.shed.Admit(p) {
		e.metrics.Reject(Inbound, protocol, e.local, ReasonShed)
		return nil, p.Window, &ShedError{Service: e.local, Limit: st.shed.Limit(p)}
	}
	return p, 0, nil
}

// Release gives back the place the call took under the local service's
// adaptive inbound limit, with its latency; it does nothing for a call
// not counted there, or the second time. Adapters defer it so a handler
// that panics does not keep its place.
func (in *Incoming) Release() {
	if in.shed == nil {
		return
	}
	now := time.Now()
	in.shed.Release(in.shedPolicy, now.Sub(in.start), now)
	in.shed = nil
}

// Detach releases the call's place under the adaptive inbound limit
// without counting its latency: a gRPC stream, admitted like a call,
// runs as long as its peer keeps it open, which measures no service
// latency and must not hold a place for that long.
func (in *Incoming) Detach() {
	if in.shed == nil {
		return
	}
	in.shed.Release(nil, 0, time.Time{})
	in.shed = nil
}

// shedLimitDesc describes lightmesh_inbound_concurrency_limit.
var shedLimitDesc = prometheus.NewDesc("lightmesh_inbound_concurrency_limit",
	"The local service's adaptive inbound concurrency limit (inboundShedding mode adaptive), read at scrape time: requests beyond it are shed (lightmesh_rejections_total reason shed). No series while shedding is off.",
	[]string{"destination_service"}, nil)

// shedInFlightDesc describes lightmesh_inbound_in_flight.
var shedInFlightDesc = prometheus.NewDesc("lightmesh_inbound_in_flight",
	"Requests the local service is serving under its adaptive inbound concurrency limit, read at scrape time. No series while shedding is off.",
	[]string{"destination_service"}, nil)

// shedCollector reports the local service's adaptive inbound limit.
type shedCollector struct {
	state func() *State
	local string
}

// Describe implements prometheus.Collector.
func (c *shedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- shedLimitDesc
	ch <- shedInFlightDesc
}

// Collect implements prometheus.Collector.
func (c *shedCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.state()
	p := st.ShedPolicy(c.local)
	if p == nil || st.shed == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(shedLimitDesc, prometheus.GaugeValue, float64(st.shed.Limit(p)), c.local)
	ch <- prometheus.MustNewConstMetric(shedInFlightDesc, prometheus.GaugeValue, float64(st.shed.InFlight()), c.local)
}

// Shedding reports whether the call holds a place under the local
// service's adaptive inbound limit (until Release or Detach).
func (in *Incoming) Shedding() bool { return in.shed != nil }
