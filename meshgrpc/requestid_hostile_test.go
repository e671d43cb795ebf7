package meshgrpc_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/trace"
)

// TestRequestIDInvalidIncomingNotForwarded: a gRPC handler that forwards
// its incoming metadata on its outgoing calls (the usual gateway shape)
// must not pass on an over-long x-request-id beside the id the mesh
// minted for the call: the next hop gets the minted one.
func TestRequestIDInvalidIncomingNotForwarded(t *testing.T) {
	back := grpctest.Start(t, "back")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(back, "base")}})
	m, _ := newMesh(t, laneRules, static, mesh.WithTrace(trace.WithRequestIDMinting(trace.UUIDv4)))
	front := grpctest.Start(t, "front", meshgrpc.ServerOptions(m)...)
	toBack := dial(t, m, "echo")
	seen := make(chan string, 1)
	fwd := func(ctx context.Context) (string, error) {
		seen <- trace.RequestIDFromContext(ctx)
		in, _ := metadata.FromIncomingContext(ctx)
		return call(metadata.NewOutgoingContext(ctx, in.Copy()), toBack)
	}
	front.Forward.Store(&fwd)
	conn := plainConn(t, front.Addr)

	hostile := strings.Repeat("a", trace.MaxRequestIDLen+1)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", hostile)
	if _, err := call(ctx, conn); err != nil {
		t.Fatal(err)
	}
	id := <-seen
	if id == "" || id == hostile {
		t.Fatalf("front's handler has request id %.40q, want a minted one", id)
	}
	if got := back.LastMetadata().Get("x-request-id"); len(got) != 1 || got[0] != id {
		t.Errorf("second hop got x-request-id %.40q (%d values), want only the minted %q", got, len(got), id)
	}
}
