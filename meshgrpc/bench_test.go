package meshgrpc_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// benchDoc routes echo by lane with a breaker and a limit that never
// refuses.
const benchDoc = `apiVersion: lightmesh/v1
services:
  echo:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    breaker: {minRequests: 20, failureRatio: 0.5}
    rateLimit: {rps: 1e12, burst: 1000000000}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - destinations: [{subset: base}]
`

// BenchmarkGRPC makes one unary call over TCP loopback with a plain
// grpc.NewClient and through lightmesh (routing, breaker, limiter,
// propagate-only tracing and metrics) to the same server, in one run.
func BenchmarkGRPC(b *testing.B) {
	s := grpctest.Start(b, "s")
	run := func(b *testing.B, conn *grpc.ClientConn) {
		ctx := context.Background()
		if _, err := grpctest.Call(ctx, conn); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := grpctest.Call(ctx, conn); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("client=bare", func(b *testing.B) {
		conn, err := grpc.NewClient(s.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		run(b, conn)
	})
	b.Run("client=mesh", func(b *testing.B) {
		m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewMemory([]byte(benchDoc))),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: s.Addr, Labels: map[string]string{"env": "base"}}}})),
			mesh.WithRegisterer(prometheus.NewRegistry()), mesh.WithTrace(trace.WithMode(trace.ModePropagate)))
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		conn, err := grpc.NewClient("lightmesh:///echo", append(meshgrpc.DialOptions(m), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		run(b, conn)
	})
}
