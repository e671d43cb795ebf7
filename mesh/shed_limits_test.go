package mesh_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/rules"
)

// Lowering maxLimit below the limit the service had learned takes effect
// in what Status reports and in how the limit moves: the learned limit
// (1000 here) stayed stored above the new maximum, the "limit not in
// use" test compared the requests in flight against it, so the limit
// never moved again — pinned at maxLimit however slow the service grew —
// and Status and lightmesh_inbound_concurrency_limit kept showing 1000.
func TestInboundSheddingFollowsALoweredMaxLimit(t *testing.T) {
	src := rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: adaptive, initialLimit: 1000}\n"))
	m, srv := shedServer(t, src)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000}}
	t.Cleanup(c.CloseIdleConnections)
	for range 3 { // the limit is learned on the first request
		resp, err := c.Get(srv.URL + "/work")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := m.Status().Inbound.Limit; got != 1000 {
		t.Fatalf("limit before: %d, want 1000", got)
	}
	src.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: adaptive, maxLimit: 16}\n"))
	meshtest.WaitFor(t, 5*time.Second, "the new rules", func() bool {
		in := m.Table().Rules().InForce("me").InboundShedding
		return in != nil && in.MaxLimit == 16
	})
	if got := m.Status().Inbound.Limit; got > 16 {
		t.Errorf("limit right after maxLimit became 16: Status reports %d", got)
	}
	// 3x the capacity of 4 slots x 20ms: at 16 in flight the latency is
	// four times the no-load latency, so the limit must come down from
	// the maximum, to about tolerance x 4 slots.
	meshtest.StartLoad(t, c, srv.URL+"/work", 900, 600, nil).Wait(t, 30*time.Second)
	if got := m.Status().Inbound.Limit; got >= 16 {
		t.Errorf("limit after 1.5s at 3x capacity under maxLimit 16: %d, want below 16 (about 6)", got)
	}
}
