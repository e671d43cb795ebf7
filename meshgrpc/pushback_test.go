package meshgrpc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// A server's grpc-retry-pushback-ms (here a mesh server's inbound limit)
// is honoured by the mesh's retries, as gRFC A6 asks: the retry waits the
// pushback instead of the backoff, and a pushback that does not fit
// before the call's deadline ends the call with the server's answer at
// once, instead of hammering the limited server after a 1 ms backoff.
func TestRetryHonoursServerPushback(t *testing.T) {
	for _, c := range []struct {
		name     string
		rps      string
		wantCode codes.Code
	}{
		{"pushback fits", "5", codes.OK},                        // 200 ms
		{"pushback too long", "0.001", codes.ResourceExhausted}, // 1000 s
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			server := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
				return mesh.New(ctx, mesh.WithRules(rulesMemory(fmt.Sprintf(`apiVersion: lightmesh/v1
services:
  me:
    inbound:
      - name: echo-calls
        match: {path: {prefix: /lightmesh.test.Echo/}}
        rateLimit: {rps: %s, burst: 1}
`, c.rps))), mesh.WithLocalService("me"), mesh.WithRegisterer(reg))
			})
			s := grpctest.Start(t, "me", meshgrpc.ServerOptions(server)...)
			m, _ := newMesh(t, echoDoc("    retry: {attempts: 2, backoff: 1ms, on: [resource-exhausted]}\n"), staticOf(s))
			conn := dial(t, m, "echo")
			if _, err := call(context.Background(), conn); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err := call(context.Background(), conn)
			if status.Code(err) != c.wantCode || time.Since(start) > 2*time.Second {
				t.Fatalf("the call over the limit: %v after %v, want %v", err, time.Since(start), c.wantCode)
			}
			rejected := meshtest.Metric(t, reg, "lightmesh_rejections_total", map[string]string{"direction": "inbound"})
			if rejected != 1 {
				t.Fatalf("the server rejected %v tries, want 1: the retry did not wait for the pushback", rejected)
			}
		})
	}
}
