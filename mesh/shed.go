package mesh

import (
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
)

// InboundStatus describes the shedding of the requests the local service
// (WithLocalService) receives through Handler and meshgrpc's server
// interceptors (its rules' inboundShedding).
type InboundStatus struct {
	Service string `json:"service"`
	// Mode is adaptive or off.
	Mode string `json:"mode"`
	// Limit is the adaptive concurrency limit now, InFlight the requests
	// being served under it (0 while off).
	Limit    int `json:"limit,omitempty"`
	InFlight int `json:"inFlight,omitempty"`
	// Shed counts the requests shed since the mesh started.
	Shed uint64 `json:"shed"`
}

// inboundStatus describes the inbound shedding of local in snap; nil
// for no local service.
func inboundStatus(snap *engine.State, local string) *InboundStatus {
	if local == "" {
		return nil
	}
	sh := snap.Shedder()
	is := &InboundStatus{Service: local, Mode: router.ShedModeOff, Shed: sh.Shed()}
	if p := snap.ShedPolicy(local); p != nil {
		is.Mode, is.Limit, is.InFlight = router.ShedModeAdaptive, sh.Limit(), sh.InFlight()
		if is.Limit == 0 {
			is.Limit = p.InitialLimit
		}
	}
	return is
}
