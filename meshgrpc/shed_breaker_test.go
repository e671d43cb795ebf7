package meshgrpc_test

import (
	"context"
	"errors"
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

// A caller's window breaker stays closed while the server it calls sheds
// the calls beyond its capacity, as an HTTP caller's does with 429: the
// server serves what it can, and an open breaker would refuse those too.
func TestBreakerDoesNotOpenOnShedding(t *testing.T) {
	server := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rulesMemory(
			"apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: adaptive, initialLimit: 1, minLimit: 1, maxLimit: 1}\n")),
			mesh.WithLocalService("me"))
	})
	s := grpctest.Start(t, "shedding", meshgrpc.ServerOptions(server)...)
	s.Delay.Store(int64(20 * time.Millisecond))
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 10, failureRatio: 0.5}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	var ok, shed, open atomic.Int64
	errs := make(chan error, 4)
	deadline := time.Now().Add(time.Second)
	for range 4 {
		go func() {
			for n := 0; n < 2000 && time.Now().Before(deadline); n++ {
				_, err := call(context.Background(), conn)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, mesh.ErrCircuitOpen):
					open.Add(1)
				case status.Code(err) == codes.ResourceExhausted:
					shed.Add(1)
				default:
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d served, %d shed, %d refused by the open breaker", ok.Load(), shed.Load(), open.Load())
	if open.Load() != 0 || ok.Load() < 25 {
		t.Fatalf("%d calls refused by the caller's breaker and %d served in 1s; want none refused and at least 25 served (the server serves 50/s)", open.Load(), ok.Load())
	}
}
