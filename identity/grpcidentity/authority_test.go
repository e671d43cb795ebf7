package grpcidentity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// The serverID checked is the one of the service dialled
// (lightmesh:///pay), not of the :authority the caller sets with
// grpc.WithAuthority (virtual hosting, a gateway's host name): the
// credentials read the service from the authority, so an authority the
// rules do not name sent pay's calls in plaintext to whoever served them.
func TestDialOptionsVerifyTheDialledServiceWhateverTheAuthority(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	front := workload(t, ca, "/front")
	payAddr, impostor := serve(t, workload(t, ca, "/impostor"), identity.Permissive, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx,
		mesh.WithRules(rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  pay:\n    serverID: spiffe://example.org/pay\n"))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"pay": {{Address: payAddr}}})),
		mesh.WithServices("pay"), mesh.WithIdentity(front))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cc, err := grpc.NewClient("lightmesh:///pay", append(meshgrpc.DialOptions(m), grpc.WithAuthority("pay.example.com"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err == nil || !strings.Contains(err.Error(), "server presented spiffe://example.org/impostor, expected spiffe://example.org/pay") {
		t.Fatalf("pay with another :authority: %v; want the failure naming both IDs", err)
	}
	if n := impostor.hits.Load(); n != 0 {
		t.Fatalf("%d calls reached the impostor; want 0", n)
	}
}
