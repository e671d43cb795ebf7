package router_test

import (
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/router"
)

// A lanes header the mesh cannot carry as a lane key (one it reserves:
// baggage, traceparent, x-request-id, grpc-*, *-bin, or over 64 bytes) is
// refused at its place in the document: its entry rules would put no call
// into a lane and its lanes would never travel.
func TestLanesHeaderMustBeALaneKey(t *testing.T) {
	for _, h := range []string{"baggage", "traceparent", "x-request-id", "grpc-lane", "x-lane-bin", strings.Repeat("x", 65)} {
		doc := "apiVersion: lightmesh/v1\nservices:\n  a:\n    lanes: {label: env, header: " + h + ", entry: [{header: x-feature}]}\n"
		_, err := router.Load([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), "services.a.lanes.header") {
			t.Errorf("header %.20s: error %v, want one at services.a.lanes.header", h, err)
		}
	}
}
