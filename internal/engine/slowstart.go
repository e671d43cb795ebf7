package engine

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
)

// slowStarts returns, for a service with slowStart, when each instance of
// list started its ramp (Unix ns), keeping the clocks of old's instances.
// An instance joining a service that already had instances starts now;
// the instances a service is first seen with, or has when slowStart is
// first set, start fully warm (a mesh that just started has nothing to
// ramp against).
func slowStarts(svc, old *Service, list []discovery.Instance) map[string]*atomic.Int64 {
	if svc.policy.SlowStart == nil {
		return nil
	}
	now := time.Now().UnixNano()
	out := make(map[string]*atomic.Int64, len(list))
	for _, in := range list {
		if old != nil {
			if at := old.since[in.Address]; at != nil {
				out[in.Address] = at
				continue
			}
		}
		at := new(atomic.Int64)
		if old != nil && len(old.since) > 0 {
			at.Store(now)
		}
		out[in.Address] = at
	}
	return out
}

// warming reports whether in gives this turn away because it is ramping
// up: an instance that joined or whose outlier breaker closed again less
// than slowStart.window ago takes a turn with probability
// max(minPercent/100, elapsed/window), so its share of calls grows
// linearly, relative to its discovery weight, as Envoy's slow start does
// with aggression 1. An instance whose breaker is not closed restarts its
// ramp (it is ramped once the breaker closes) and is not held back while
// probed.
func (s *Service) warming(in *discovery.Instance) bool {
	if s == nil || s.since == nil {
		return false
	}
	at := s.since[in.Address]
	if at == nil {
		return false
	}
	now := time.Now().UnixNano()
	if b := s.instanceBreaker(in); b != nil && b.PeekState() != breaker.StateClosed {
		at.Store(now)
		return false
	}
	ss := s.policy.SlowStart
	elapsed := now - at.Load()
	if elapsed >= int64(ss.Window) {
		return false
	}
	f := max(float64(ss.MinPercent)/100, float64(elapsed)/float64(ss.Window))
	return rand.Float64() >= f
}
