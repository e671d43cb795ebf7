package grpcidentity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// meshgrpc.DialOptions alone, on a mesh with an identity, calls a service
// whose rules set serverID over mutual TLS and verifies the server's ID:
// no credentials helper beside it. A server presenting another ID fails
// the call naming both IDs before the call reaches it, and so does a
// plaintext connection when the caller's own grpc.WithTransportCredentials
// given after DialOptions replaced the mesh's.
func TestDialOptionsEnforceServerID(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	api, impostor, front := workload(t, ca, "/api"), workload(t, ca, "/impostor"), workload(t, ca, "/front")
	apiAddr, _ := serve(t, api, identity.Strict, nil)
	payAddr, payHits := serve(t, impostor, identity.Permissive, nil)
	plainAddr, _ := serve(t, workload(t, ca, "/plain"), identity.Permissive, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx,
		mesh.WithRules(rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/api\n  pay:\n    serverID: spiffe://example.org/pay\n  plain: {}\n"))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{
			"api": {{Address: apiAddr}}, "pay": {{Address: payAddr}}, "plain": {{Address: plainAddr}}})),
		mesh.WithServices("api", "pay", "plain"), mesh.WithIdentity(front))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	call := func(service string, extra ...grpc.DialOption) error {
		cc, err := grpc.NewClient("lightmesh:///"+service, append(meshgrpc.DialOptions(m), extra...)...)
		if err != nil {
			t.Fatalf("%s: %v", service, err)
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
	if err := call("plain"); status.Convert(err).Message() != "caller=anonymous" {
		t.Fatalf("plain (no serverID): %v; want served in plaintext", err)
	}
	err = call("pay")
	if status.Code(err) == codes.Unknown || !strings.Contains(err.Error(), "server presented spiffe://example.org/impostor, expected spiffe://example.org/pay") {
		t.Fatalf("pay: %v; want a failure naming both IDs", err)
	}
	err = call("pay", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "spiffe://example.org/pay") || !strings.Contains(err.Error(), "plaintext") {
		t.Fatalf("pay with insecure credentials after DialOptions: %v; want Unauthenticated naming spiffe://example.org/pay and the plaintext connection", err)
	}
	if n := payHits.hits.Load(); n != 0 {
		t.Fatalf("%d calls reached the impostor; want 0", n)
	}
}
