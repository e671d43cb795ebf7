package meshgrpc_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// Inside the lightmesh picker, p2c-ewma keeps calls off a server that
// sheds (RESOURCE_EXHAUSTED at once) beside one with room, whatever the
// breaker counts as a failure (here UNAVAILABLE only): the refusals,
// judged a success of a few microseconds, made the shedding server the
// cheapest and it drew 99% of the calls, all refused (13-21% after,
// bound 35% for a loaded run). The HTTP twin is mesh's
// TestP2CEWMAAvoidsASheddingInstance.
func TestP2CEWMAAvoidsASheddingInstance(t *testing.T) {
	server := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rulesMemory(
			"apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: adaptive, initialLimit: 1, minLimit: 1, maxLimit: 1}\n")),
			mesh.WithLocalService("me"))
	})
	shedding := grpctest.Start(t, "shedding", meshgrpc.ServerOptions(server)...)
	roomy := grpctest.Start(t, "roomy")
	shedding.Delay.Store(int64(20 * time.Millisecond))
	roomy.Delay.Store(int64(20 * time.Millisecond))
	m, _ := newMesh(t, echoDoc("    loadBalancer: p2c-ewma\n    breaker: {failureCodes: [unavailable]}\n"), staticOf(shedding, roomy))
	conn := dial(t, m, "echo")
	var calls, refused atomic.Int64
	errs := make(chan error, 4)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for range 4 {
		go func() {
			for n := 0; n < 2000 && time.Now().Before(deadline); n++ {
				_, err := call(context.Background(), conn)
				switch status.Code(err) {
				case codes.OK:
				case codes.ResourceExhausted:
					refused.Add(1)
				default:
					errs <- err
					return
				}
				calls.Add(1)
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	share := float64(refused.Load()) / float64(calls.Load())
	t.Logf("%d calls, %d refused (RESOURCE_EXHAUSTED), %d served by the server with room", calls.Load(), refused.Load(), roomy.Calls.Load())
	if share > 0.35 {
		t.Fatalf("%.2f of %d calls were shed by the server at its limit while the other had room; want under 0.35", share, calls.Load())
	}
}
