package mesh

import (
	"bufio"
	"net"
	"net/http"

	"github.com/felixge/httpsnoop"

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
		is.Mode, is.Limit, is.InFlight = router.ShedModeAdaptive, sh.Limit(p), sh.InFlight()
	}
	return is
}

// detachOnStream returns w such that a handler that streams its response
// (Flush: server-sent events, a long download) or takes the connection
// over (Hijack: WebSocket) gives up its place under the adaptive inbound
// limit at that moment: its life from then on is no latency of the
// service, and held open it must not keep others out.
func detachOnStream(w http.ResponseWriter, in *engine.Incoming) http.ResponseWriter {
	return httpsnoop.Wrap(w, httpsnoop.Hooks{
		Flush: func(next httpsnoop.FlushFunc) httpsnoop.FlushFunc {
			return func() { in.Detach(); next() }
		},
		Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
			return func() (net.Conn, *bufio.ReadWriter, error) { in.Detach(); return next() }
		},
	})
}
