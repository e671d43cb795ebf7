package meshgrpc_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/trace"
)

// maxUnaryCallAllocs is how many allocations a unary call through the
// mesh (routing by a lane, the service breaker, a rate limit, metrics,
// trace and lane propagation) may make beyond a plain grpc-go call that
// sends the same metadata: reading the caller's outgoing metadata (grpc-go
// offers no way but a copy), the outgoing context that carries it with
// the mesh's keys, the traceparent value and the call's own state.
const maxUnaryCallAllocs = 6

// A unary call through DialOptions costs the caller a few allocations
// over a plain client sending the same metadata: no stats handler (grpc-go
// then builds per-RPC events, copying the metadata twice), no copy of the
// metadata beyond the one needed to read it.
func TestUnaryCallCost(t *testing.T) {
	s := grpctest.Start(t, "s")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(s, "staging")}})
	m, _ := newMesh(t, benchDoc, static, mesh.WithRegisterer(prometheus.NewRegistry()),
		mesh.WithTrace(trace.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})), trace.WithMode(trace.ModePropagate)))
	sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{
		TraceID:    oteltrace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     oteltrace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: oteltrace.FlagsSampled,
		Remote:     true,
	})
	ctx := metadata.AppendToOutgoingContext(oteltrace.ContextWithRemoteSpanContext(context.Background(), sc), "x-env", "staging")

	meshed := dial(t, m, "echo")
	if _, err := call(ctx, meshed); err != nil {
		t.Fatal(err)
	}
	sent := s.LastMetadata()
	plain := plainConn(t, s.Addr)
	if _, err := call(ctx, plain); err != nil {
		t.Fatal(err)
	}
	var added []string // what the mesh adds on the wire
	for k, vs := range sent {
		if _, ok := s.LastMetadata()[k]; !ok {
			for _, v := range vs {
				added = append(added, k, v)
			}
		}
	}
	if len(added) == 0 {
		t.Fatal("the mesh sent no metadata of its own: nothing is propagated")
	}
	same := plainConn(t, s.Addr, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(metadata.AppendToOutgoingContext(ctx, added...), method, req, reply, cc, opts...)
	}))

	cost := func(conn *grpc.ClientConn) float64 {
		return testing.AllocsPerRun(200, func() {
			if _, err := grpctest.Call(ctx, conn); err != nil {
				t.Fatal(err)
			}
		})
	}
	bare, mesh := cost(same), cost(meshed)
	t.Logf("allocations per call: plain client sending the mesh's metadata %.0f, through the mesh %.0f", bare, mesh)
	if mesh-bare > maxUnaryCallAllocs {
		t.Fatalf("a unary call through the mesh makes %.0f allocations more than a plain one sending the same metadata %v, want at most %d",
			mesh-bare, added, maxUnaryCallAllocs)
	}
}
