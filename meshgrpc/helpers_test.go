package meshgrpc_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// laneRules sends calls of echo with x-env: staging metadata to its
// staging subset (falling back to base), and the others to base.
const laneRules = `apiVersion: lightmesh/v1
services:
  echo:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: default
        destinations: [{subset: base}]
`

// instance returns s as an instance labelled env=env.
func instance(s *grpctest.Server, env string) discovery.Instance {
	return discovery.Instance{Address: s.Addr, Labels: map[string]string{"env": env}}
}

// newMesh starts a mesh with rules doc and the instances of echo.
func newMesh(t *testing.T, doc string, static *discovery.Static, opts ...mesh.Option) (*mesh.Mesh, *rules.Memory) {
	t.Helper()
	src := rules.NewMemory([]byte(doc))
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, append([]mesh.Option{mesh.WithRules(src), mesh.WithDiscovery(static)}, opts...)...)
	})
	return m, src
}

// dial returns a mesh client of service on m, closed when t ends.
func dial(t *testing.T, m *mesh.Mesh, service string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append(append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, meshgrpc.DialOptions(m)...), opts...)
	conn, err := grpc.NewClient("lightmesh:///"+service, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// call makes one Echo call with a 5s deadline and returns the answering
// server's name.
func call(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return grpctest.Call(ctx, conn)
}

// counts makes n calls with ctx and counts the answers by server name;
// errors count under "error".
func counts(ctx context.Context, conn *grpc.ClientConn, n int) map[string]int {
	got := map[string]int{}
	for range n {
		name, err := call(ctx, conn)
		if err != nil {
			name = "error"
		}
		got[name]++
	}
	return got
}

func rulesMemory(doc string) *rules.Memory { return rules.NewMemory([]byte(doc)) }

// plainConn returns a gRPC client of addr without the mesh.
func plainConn(t *testing.T, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
