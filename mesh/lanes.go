package mesh

import (
	"slices"

	"github.com/lightmesh/lightmesh/router"
)

// warnLaneHeaders logs a warning for each lanes header of rules that is
// not one of the mesh's lane keys: calls would be routed by it here, but
// the next hop would not read it back, so the lane would stop after one
// hop.
func (m *Mesh) warnLaneHeaders(rules *router.Rules) {
	keys := m.eng.Propagator().LaneKeys()
	for _, h := range rules.LaneHeaders() {
		if !slices.Contains(keys, h) {
			m.cfg.logger.Warn("lightmesh: a lanes rule reads a header that is not a lane key: its lane is not read back at the next hop; add it with mesh.WithTrace(trace.WithLaneKeys(...))",
				"header", h, "lane_keys", keys)
		}
	}
}
