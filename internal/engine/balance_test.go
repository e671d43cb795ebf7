package engine

import (
	"net/http"
	"testing"

	"github.com/lightmesh/lightmesh/router"
)

// TestLoadAwarePickDoesNotAllocate: the whole decision (admission, the
// p2c-ewma or least-request pick among 500 instances, the outcome with its
// latency sample) allocates no more than round-robin's.
func TestLoadAwarePickDoesNotAllocate(t *testing.T) {
	req := &router.Request{Method: http.MethodGet, Path: "/", Header: http.Header{"X-Env": {"staging"}}}
	allocs := map[string]float64{}
	for _, lb := range []string{"round-robin", "p2c-ewma", "least-request"} {
		st := admitState(t, "    loadBalancer: "+lb+"\n    outlierDetection: {minRequests: 20}\n    slowStart: {window: 1s}\n")
		var c Call
		a := &succeed{}
		allocs[lb] = testing.AllocsPerRun(500, func() {
			if err := decide(st, req, &c, a); err != nil {
				t.Fatal(err)
			}
		})
	}
	if allocs["p2c-ewma"] > allocs["round-robin"] || allocs["least-request"] > allocs["round-robin"] {
		t.Fatalf("allocations per call: %v", allocs)
	}
	t.Logf("allocations per call: %v", allocs)
}
