package engine

import (
	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
)

// ejected reports whether in is ejected: its outlier breaker refuses calls
// (open, or half-open with every probe slot taken) and in is within the
// service's ejection cap, outlierDetection.maxEjectionPercent of its
// instances (at least one). When more breakers refuse than the cap allows,
// those with the most consecutive trips are ejected (then by address, so
// every call agrees); the rest keep taking calls, past their breaker, as
// Envoy keeps hosts over max_ejection_percent in the pool.
//
// It reads every instance's breaker only when in's refuses: the cost is
// on the failure path, and it does not allocate.
func (s *Service) ejected(in *discovery.Instance) bool {
	b := s.instanceBreaker(in)
	return b != nil && !b.Ready() && !s.overCap(in, b)
}

// overCap reports, for an instance in whose outlier breaker b refuses
// calls, whether the ejection cap keeps it taking calls past b (see
// ejected): the pick path has b at hand already and asks b.Ready once.
func (s *Service) overCap(in *discovery.Instance, b *breaker.Breaker) bool {
	limit := s.ejectionCap()
	if limit >= len(s.outlier) {
		return false
	}
	trips := b.Trips()
	before := 0
	for addr, o := range s.outlier {
		if addr == in.Address || o.Ready() {
			continue
		}
		if t := o.Trips(); t > trips || t == trips && addr < in.Address {
			if before++; before >= limit {
				return true
			}
		}
	}
	return false
}

// KeptByEjectionCap reports whether the instance at address of service,
// whose outlier breaker b refuses calls, is kept in the pool by the
// ejection cap (see ejected): it takes calls when no healthy instance of
// its subset does. The status page tells it from an ejected one.
func (s *State) KeptByEjectionCap(service, address string, b *breaker.Breaker) bool {
	svc := s.Service(service)
	return svc != nil && svc.overCap(&discovery.Instance{Address: address}, b)
}

// ejectionCap is how many of the service's instances may be ejected at
// once.
func (s *Service) ejectionCap() int {
	n := len(s.outlier)
	return max(1, n*s.policy.Outlier.MaxEjectionPercent/100)
}
