package meshgrpc_test

import (
	"context"
	"regexp"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/trace"
)

// TestRequestIDMintedCrossesTwoGRPCHops: a gRPC call arriving at a mesh
// server without a request id gets one minted (WithRequestIDMinting),
// visible to the handler in its context and sent on to the next service
// under x-request-id and x-trace-id; a received one is kept.
func TestRequestIDMintedCrossesTwoGRPCHops(t *testing.T) {
	back := grpctest.Start(t, "back")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(back, "base")}})
	m, _ := newMesh(t, laneRules, static, mesh.WithTrace(trace.WithRequestIDMinting(trace.UUIDv4)))
	front := grpctest.Start(t, "front", meshgrpc.ServerOptions(m)...)
	toBack := dial(t, m, "echo")
	seen := make(chan string, 2)
	fwd := func(ctx context.Context) (string, error) {
		seen <- trace.RequestIDFromContext(ctx)
		return call(ctx, toBack)
	}
	front.Forward.Store(&fwd)
	conn := plainConn(t, front.Addr)
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

	if _, err := call(context.Background(), conn); err != nil {
		t.Fatal(err)
	}
	id := <-seen
	if !uuid.MatchString(id) {
		t.Fatalf("front's handler has request id %q, want a UUIDv4", id)
	}
	md := back.LastMetadata()
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != id {
		t.Errorf("second hop got x-request-id %q, want the minted %q", got, id)
	}
	if got := md.Get("x-trace-id"); len(got) != 1 || got[0] != id {
		t.Errorf("second hop got x-trace-id %q, want the minted %q", got, id)
	}

	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-request-id", "from-caller")
	if _, err := call(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if id := <-seen; id != "from-caller" {
		t.Errorf("with x-request-id from the caller the handler saw %q, want it kept", id)
	}
	if got := back.LastMetadata().Get("x-request-id"); len(got) != 1 || got[0] != "from-caller" {
		t.Errorf("second hop got x-request-id %q, want from-caller", got)
	}
}
