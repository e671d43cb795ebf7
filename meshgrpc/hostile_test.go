package meshgrpc_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/trace"
)

// hostileMetadata is incoming metadata a stranger can send, with the lane
// the handler must see ("" for none).
func hostileMetadata() []struct {
	name     string
	md       metadata.MD
	wantLane string
} {
	members := meshtest.BaggageMembers
	repeated := func(n int, key, value string) metadata.MD {
		md := metadata.MD{}
		for range n {
			md.Append(key, value)
		}
		return md
	}
	distinct := metadata.MD{"x-env": {"staging"}}
	for i := range 5000 {
		distinct.Append(fmt.Sprintf("x-junk-%d", i), "v")
	}
	return []struct {
		name     string
		md       metadata.MD
		wantLane string
	}{
		{"5,000 baggage members", metadata.Pairs("baggage", members(5000, "lightmesh.lane.x-env=staging")), ""},
		{"63 baggage members and the lane", metadata.Pairs("baggage", members(63, "lightmesh.lane.x-env=staging")), "x-env=staging"},
		{"2,000 baggage entries", repeated(2000, "baggage", "a=1"), ""},
		{"traceparent of 256 KiB", metadata.Pairs("traceparent", "00-"+strings.Repeat("4bf92f3577b34da6", 1<<14)+"-00f067aa0ba902b7-01", "x-env", "staging"), "x-env=staging"},
		{"lane of 256 KiB", metadata.Pairs("x-env", strings.Repeat("s", 1<<18)), ""},
		{"lane with separators", metadata.Pairs("x-env", "staging;drop"), ""},
		{"5,000 lane entries", repeated(5000, "x-env", "staging"), "x-env=staging"},
		{"5,000 distinct keys", distinct, "x-env=staging"},
		{"request id of 256 KiB", metadata.Pairs("x-request-id", strings.Repeat("r", 1<<18), "x-env", "canary"), "x-env=canary"},
	}
}

// laneServer starts an Echo server with m's interceptors whose handler
// answers with the lane its context holds, failing t if it is invalid.
func laneServer(t *testing.T, m *mesh.Mesh) *grpctest.Server {
	s := grpctest.Start(t, "s", meshgrpc.ServerOptions(m)...)
	fwd := func(ctx context.Context) (string, error) {
		lane := trace.LaneFromContext(ctx)
		if _, err := trace.NewLane(lane.Labels()...); err != nil {
			t.Errorf("the handler got an invalid lane %q: %v", lane, err)
		}
		return "lane=" + lane.String(), nil
	}
	s.Forward.Store(&fwd)
	return s
}

func TestHostileInboundMetadata(t *testing.T) {
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithLocalService("echo"), mesh.WithTrace(trace.WithMode(trace.ModeSpans)))
	})
	conn := plainConn(t, laneServer(t, m).Addr)
	for _, tc := range hostileMetadata() {
		ctx := metadata.NewOutgoingContext(context.Background(), tc.md)
		got, err := call(ctx, conn)
		if err != nil || got != "s>lane="+tc.wantLane {
			t.Errorf("%s: %q, %v; want the call served with lane %q", tc.name, got, err, tc.wantLane)
		}
	}
}

// Metadata grpc-go will not send (invalid UTF-8, which other clients
// can), straight into the interceptor, with the allocations it adds.
func TestHostileInboundMetadataInterceptor(t *testing.T) {
	// The worst case is 63 valid baggage members: otel parses them one by
	// one and, as gRPC metadata may hold several baggage entries, copies
	// them into one baggage (169 allocations with otel 1.47).
	const maxInterceptorAllocs = 250
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) { return mesh.New(ctx) })
	intercept := meshgrpc.UnaryServerInterceptor(m)
	info := &grpc.UnaryServerInfo{FullMethod: grpctest.CallMethod}
	var lane trace.Lane
	handler := func(ctx context.Context, req any) (any, error) {
		lane = trace.LaneFromContext(ctx)
		return req, nil
	}
	cases := append(hostileMetadata()[:0:0], hostileMetadata()...)
	cases = append(cases, []struct {
		name     string
		md       metadata.MD
		wantLane string
	}{
		{"invalid UTF-8 in the lane", metadata.Pairs("x-env", "st\xff\xfeging"), ""},
		{"invalid UTF-8 in lane baggage", metadata.Pairs("baggage", "lightmesh.lane.x-env=st\xffging,user=a"), ""},
		{"escaped invalid UTF-8 in lane baggage", metadata.Pairs("baggage", "lightmesh.lane.x-env=%FF%FE"), ""},
		{"control bytes in the lane", metadata.Pairs("x-env", "staging\r\nx-evil: 1"), ""},
	}...)
	for _, tc := range cases {
		ctx := metadata.NewIncomingContext(context.Background(), tc.md)
		if _, err := intercept(ctx, "req", info, handler); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if lane.String() != tc.wantLane {
			t.Errorf("%s: lane %q, want %q", tc.name, lane, tc.wantLane)
		}
		if _, err := trace.NewLane(lane.Labels()...); err != nil {
			t.Errorf("%s: invalid lane %q: %v", tc.name, lane, err)
		}
		bare := testing.AllocsPerRun(20, func() { handler(ctx, "req") })
		meshed := testing.AllocsPerRun(20, func() { intercept(ctx, "req", info, handler) })
		if added := meshed - bare; added > maxInterceptorAllocs {
			t.Errorf("%s: the interceptor added %.0f allocations, want at most %d", tc.name, added, maxInterceptorAllocs)
		}
	}
}

// A gRPC edge service made WithoutInboundLanes ignores the lane a stranger
// sends in metadata or baggage: its own call through the mesh reaches the
// base instance. Without the option it follows the lane to staging.
func TestEdgeIgnoresInboundLanesGRPC(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	list := []discovery.Instance{instance(base, "base"), instance(staging, "staging")}
	stranger := []metadata.MD{
		metadata.Pairs("x-env", "staging", "baggage", "lightmesh.lane.x-env=staging"),
		metadata.Pairs("x-env", "staging"),
		metadata.Pairs("baggage", "lightmesh.lane.x-env=staging,user=alice"),
	}
	for _, tc := range []struct {
		name string
		opts []trace.Option
		want string
	}{
		{"without the option", nil, "edge>staging"},
		{"WithoutInboundLanes", []trace.Option{trace.WithoutInboundLanes()}, "edge>base"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newMesh(t, laneRules, discovery.NewStatic(map[string][]discovery.Instance{"echo": list}), mesh.WithTrace(tc.opts...))
			toEcho := dial(t, m, "echo")
			edge := grpctest.Start(t, "edge", meshgrpc.ServerOptions(m)...)
			fwd := func(ctx context.Context) (string, error) { return grpctest.Call(ctx, toEcho) }
			edge.Forward.Store(&fwd)
			toEdge := plainConn(t, edge.Addr)
			for _, md := range stranger {
				got, err := call(metadata.NewOutgoingContext(context.Background(), md), toEdge)
				if err != nil || got != tc.want {
					t.Fatalf("metadata %v: %q, %v; want %s", md, got, err, tc.want)
				}
				if tc.want == "edge>base" {
					seen := base.LastMetadata()
					if len(seen.Get("x-env")) != 0 || strings.Contains(strings.Join(seen.Get("baggage"), ","), "lightmesh.lane") {
						t.Fatalf("the next hop saw x-env %v, baggage %v: the lane went on", seen.Get("x-env"), seen.Get("baggage"))
					}
				}
			}
		})
	}
}
