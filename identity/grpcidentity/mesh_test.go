package grpcidentity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// Through meshgrpc, RulesCredentials use mutual TLS to a service whose
// rules set serverID, and a server presenting another ID fails the call
// naming both, before the call reaches it.
func TestRulesCredentialsThroughMesh(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	api, impostor, front := workload(t, ca, "/api"), workload(t, ca, "/impostor"), workload(t, ca, "/front")
	apiAddr, _ := serve(t, api, identity.Strict, nil)
	payAddr, payHits := serve(t, impostor, identity.Strict, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx,
		mesh.WithRules(rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/api\n  pay:\n    serverID: spiffe://example.org/pay\n"))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: apiAddr}}, "pay": {{Address: payAddr}}})),
		mesh.WithServices("api", "pay"), mesh.WithIdentity(front))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	call := func(service string) error {
		cc, err := grpc.NewClient("lightmesh:///"+service, append(meshgrpc.DialOptions(m),
			grpc.WithTransportCredentials(grpcidentity.RulesCredentials(front, m)))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := call("api"); status.Convert(err).Message() != "caller=spiffe://example.org/front" {
		t.Fatalf("api: %v; want served over mTLS to spiffe://example.org/front", err)
	}
	err = call("pay")
	if status.Code(err) == codes.Unknown || !strings.Contains(err.Error(), "server presented spiffe://example.org/impostor, expected spiffe://example.org/pay") {
		t.Fatalf("pay: %v; want a failure naming both IDs", err)
	}
	if n := payHits.hits.Load(); n != 0 {
		t.Fatalf("%d calls reached the impostor; want 0", n)
	}
}
