package meshgrpc_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/trace"
)

// A gRPC service at the edge puts calls into a lane by its entry rule on
// a metadata key, with WithoutInboundLanes: a caller's own x-env is
// ignored, the rule's lane is taken, and b's lane instance serves it.
func TestLaneEntryOverGRPC(t *testing.T) {
	bBase, bFeat := grpctest.Start(t, "b-base"), grpctest.Start(t, "b-feat1")
	static := discovery.NewStatic(map[string][]discovery.Instance{"b": {instance(bBase, "base"), instance(bFeat, "feat1")}})
	doc := `apiVersion: lightmesh/v1
defaults:
  lanes: {label: env, base: {labels: {env: base}}}
services:
  edge:
    lanes: {label: env, base: {labels: {env: base}}, entry: [{header: x-feature}]}
`
	m, _ := newMesh(t, doc, static, mesh.WithLocalService("edge"), mesh.WithServices("b"), mesh.WithTrace(trace.WithoutInboundLanes()))
	toB := dial(t, m, "b")
	edge := grpctest.Start(t, "edge", meshgrpc.ServerOptions(m)...)
	fwd := func(ctx context.Context) (string, error) { return grpctest.Call(ctx, toB) }
	edge.Forward.Store(&fwd)
	toEdge := plainConn(t, edge.Addr)
	for _, tc := range []struct {
		md   []string
		want string
	}{
		{[]string{"x-feature", "feat1"}, "edge>b-feat1"},
		{[]string{"x-env", "feat1"}, "edge>b-base"}, // a stranger's lane is not taken
		{nil, "edge>b-base"},
	} {
		ctx := context.Background()
		if tc.md != nil {
			ctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
		}
		for range 3 {
			if got, err := call(ctx, toEdge); err != nil || got != tc.want {
				t.Fatalf("metadata %v: %q %v, want %s", tc.md, got, err, tc.want)
			}
		}
	}
}
