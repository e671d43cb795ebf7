package bench

import (
	"context"
	"net"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/internal/floor"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/trace"
)

// BenchmarkGRPC makes one unary call (grpc.health.v1.Health/Check, the
// service grpc-go ships) over TCP loopback per iteration, in one run:
//
//   - bare: a plain grpc.NewClient to the server's address;
//   - bare-meshmetadata: the same, sending the metadata the mesh adds
//     (traceparent, baggage with the lane): the floor of propagation's
//     cost on the wire;
//   - lightmesh-propagate: through lightmesh (resolver, balancer, picker,
//     interceptors) with routing only, trace.ModePropagate;
//   - lightmesh-spans: the same in trace.ModeSpans;
//   - lightmesh-full: routing, service breaker, rate limit, propagation
//     and Prometheus metrics;
//   - floor-propagate, floor-full: internal/floor's interceptor, the least
//     an interceptor must do to send the call as lightmesh-propagate and
//     lightmesh-full do (see dialFloor);
//   - otelgrpc: otelgrpc's client stats handler over a plain client, with
//     the same tracer provider and propagator and a no-op meter provider.
//
// Every call carries x-env: staging metadata and a sampled remote parent.
func BenchmarkGRPC(b *testing.B) {
	addr := grpcUpstream(b)
	dialMesh := func(b *testing.B, doc string, opts ...mesh.Option) *grpc.ClientConn {
		m := newMesh(b, addr, doc, opts...)
		return dialGRPC(b, "lightmesh:///svc", meshgrpc.DialOptions(m)...)
	}
	b.Run("rpc=bare", func(b *testing.B) { serialRPC(b, dialGRPC(b, addr)) })
	b.Run("rpc=bare-meshmetadata", func(b *testing.B) {
		serialRPC(b, dialGRPC(b, addr, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage", trace.BaggagePrefix+"x-env=staging")
			return invoker(ctx, method, req, reply, cc, opts...)
		})))
	})
	b.Run("rpc=lightmesh-propagate", func(b *testing.B) {
		serialRPC(b, dialMesh(b, routeDoc, mesh.WithTrace(trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate))))
	})
	b.Run("rpc=lightmesh-spans", func(b *testing.B) {
		serialRPC(b, dialMesh(b, routeDoc, mesh.WithTrace(trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModeSpans))))
	})
	b.Run("rpc=lightmesh-full", func(b *testing.B) {
		serialRPC(b, dialMesh(b, grpcFullDoc, mesh.WithRegisterer(prometheus.NewRegistry()), mesh.WithTrace(trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate))))
	})
	b.Run("rpc=floor-propagate", func(b *testing.B) { serialRPC(b, dialFloor(b, addr, nil)) })
	b.Run("rpc=floor-full", func(b *testing.B) {
		serialRPC(b, dialFloor(b, addr, floor.NewProtection(0, prometheus.NewRegistry())))
	})
	b.Run("rpc=otelgrpc", func(b *testing.B) {
		serialRPC(b, dialGRPC(b, addr, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(newTracerProvider(b)), otelgrpc.WithPropagators(w3c), otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider())))))
	})
}

// dialFloor dials addr with internal/floor's interceptor: the lane's
// baggage and the traceparent and, with p, its limiter, breakers and
// metrics.
func dialFloor(b *testing.B, addr string, p *floor.Protection) *grpc.ClientConn {
	return dialGRPC(b, addr, grpc.WithChainUnaryInterceptor(floor.UnaryInterceptor("x-env", trace.BaggagePrefix+"x-env=staging", p)))
}

// grpcFullDoc is routeDoc with the protection that applies to gRPC calls
// without changing them: the service breaker, instance breakers and a rate
// limit that never refuses.
const grpcFullDoc = `apiVersion: lightmesh/v1
services:
  svc:
    breaker: {minRequests: 20, failureRatio: 0.5}
    outlierDetection: {minRequests: 20, failureRatio: 0.5}
    rateLimit: {rps: 1e12, burst: 1000000000}
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - destinations: [{subset: base}]
`

// grpcUpstream starts a gRPC server with the health service on loopback
// and returns its address.
func grpcUpstream(b *testing.B) string {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	b.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func dialGRPC(b *testing.B, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	b.Helper()
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return conn
}

// serialRPC makes one health check per iteration on conn.
func serialRPC(b *testing.B, conn *grpc.ClientConn) {
	client := healthpb.NewHealthClient(conn)
	ctx := metadata.AppendToOutgoingContext(floor.SampledParent(), "x-env", "staging")
	req := &healthpb.HealthCheckRequest{}
	if _, err := client.Check(ctx, req); err != nil { // warm the connection up
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
