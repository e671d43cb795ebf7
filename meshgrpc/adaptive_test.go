package meshgrpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
)

// TestAdaptiveBreakerTripsAndRecovers: breaker {mode: adaptive} alone
// spares an Unavailable server most calls (Unavailable matching
// mesh.ErrCircuitOpen, no RPC sent) and stops refusing by traffic alone
// once the server answers again.
func TestAdaptiveBreakerTripsAndRecovers(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Code.Store(uint32(codes.Unavailable))
	m, _ := newMesh(t, echoDoc("    breaker: {mode: adaptive}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	ctx := context.Background()
	const offered = 400
	refused := 0
	for range offered {
		_, err := call(ctx, conn)
		switch {
		case errors.Is(err, mesh.ErrCircuitOpen) && status.Code(err) == codes.Unavailable:
			refused++
		case status.Code(err) != codes.Unavailable:
			t.Fatalf("failing server: %v", err)
		}
	}
	if got := s.Calls.Load(); got+int64(refused) != offered || got > offered/4 {
		t.Fatalf("failing server reached by %d of %d calls (%d refused); want at most a quarter", got, offered, refused)
	}

	s.Code.Store(uint32(codes.OK))
	start := time.Now()
	streak := 0
	for i := 0; streak < 50; i++ {
		if i == 5000 || time.Since(start) > 5*time.Second {
			t.Fatalf("not recovered after %d calls, %v", i, time.Since(start))
		}
		name, err := call(ctx, conn)
		switch {
		case errors.Is(err, mesh.ErrCircuitOpen):
			streak = 0
		case err != nil || name != "s":
			t.Fatalf("recovered server: %q, %v", name, err)
		default:
			streak++
		}
	}
	for _, b := range m.Status().Breakers {
		if b.Service == "echo" && (b.Mode != "adaptive" || b.State != "closed") {
			t.Fatalf("status after recovery: %+v", b)
		}
	}
}
