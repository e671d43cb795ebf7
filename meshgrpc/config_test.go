package meshgrpc_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// dialWith returns a mesh client of service on m made with the mesh
// options opts, closed when t ends.
func dialWith(t *testing.T, m *mesh.Mesh, service string, opts ...meshgrpc.Option) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("lightmesh:///"+service,
		append(meshgrpc.DialOptions(m, opts...), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Bug 7: a caller's own grpc.WithDefaultServiceConfig beside DialOptions
// no longer replaces lightmesh's balancer: the rules still route every
// call (the lane to staging, the rest to base).
func TestDefaultServiceConfigKeepsTheBalancer(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(staging, "staging")}})
	m, _ := newMesh(t, laneRules, static)
	conn := dial(t, m, "echo", grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"pick_first":{}}]}`))
	lane := metadata.AppendToOutgoingContext(context.Background(), "x-env", "staging")
	if got := counts(lane, conn, 10); got["staging"] != 10 {
		t.Fatalf("lane calls: %v, want all 10 on staging", got)
	}
	if got := counts(context.Background(), conn, 10); got["base"] != 10 {
		t.Fatalf("other calls: %v, want all 10 on base", got)
	}
}

// WithServiceConfig merges the caller's method config: its timeout
// applies, and the rules still route.
func TestWithServiceConfigMergesMethodConfig(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(staging, "staging")}})
	m, _ := newMesh(t, laneRules, static)
	conn := dialWith(t, m, "echo", meshgrpc.WithServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}],
		"methodConfig":[{"name":[{"service":"lightmesh.test.Echo"}],"timeout":"0.2s"}]}`))
	lane := metadata.AppendToOutgoingContext(context.Background(), "x-env", "staging")
	if got := counts(lane, conn, 10); got["staging"] != 10 {
		t.Fatalf("lane calls: %v, want all 10 on staging", got)
	}
	base.Delay.Store(int64(3 * time.Second))
	start := time.Now()
	if _, err := call(context.Background(), conn); status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 2*time.Second {
		t.Fatalf("%v after %v, want the method config's 0.2s timeout", err, time.Since(start))
	}
}

// A service config that is not valid makes grpc.NewClient fail.
func TestWithServiceConfigInvalid(t *testing.T) {
	m, _ := newMesh(t, laneRules, discovery.NewStatic(nil))
	_, err := grpc.NewClient("lightmesh:///echo", append(meshgrpc.DialOptions(m, meshgrpc.WithServiceConfig(`{"methodConfig": 3}`)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err == nil {
		t.Fatal("NewClient accepted a service config whose methodConfig is 3")
	}
}
