package grpcidentity_test

import (
	"context"
	"errors"
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

// A mesh without an identity refuses gRPC calls to a service whose rules
// set serverID, as m.Transport does (mesh.ErrNoIdentity), whatever
// transport credentials the caller gives: they went out in plaintext to
// whoever listened. Unary and stream calls end Unauthenticated naming the
// required ID before reaching the server; a service without serverID is
// served as before.
func TestDialOptionsWithoutIdentityRefuseServerIDServices(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	payAddr, pay := serve(t, workload(t, ca, "/pay"), identity.Permissive, nil)
	plainAddr, _ := serve(t, workload(t, ca, "/plain"), identity.Permissive, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx,
		mesh.WithRules(rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  pay:\n    serverID: spiffe://example.org/pay\n  plain: {}\n"))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{
			"pay": {{Address: payAddr}}, "plain": {{Address: plainAddr}}})),
		mesh.WithServices("pay", "plain"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	conn := func(service string) healthpb.HealthClient {
		cc, err := grpc.NewClient("lightmesh:///"+service, append(meshgrpc.DialOptions(m), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatalf("%s: %v", service, err)
		}
		t.Cleanup(func() { cc.Close() })
		return healthpb.NewHealthClient(cc)
	}
	ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := conn("plain").Check(ctx, &healthpb.HealthCheckRequest{}); status.Convert(err).Message() != "caller=anonymous" {
		t.Fatalf("plain (no serverID): %v; want served in plaintext", err)
	}
	_, err = conn("pay").Check(ctx, &healthpb.HealthCheckRequest{})
	if status.Code(err) != codes.Unauthenticated || !errors.Is(err, mesh.ErrNoIdentity) || !strings.Contains(err.Error(), "spiffe://example.org/pay") {
		t.Fatalf("pay, unary: %v; want Unauthenticated, mesh.ErrNoIdentity, naming spiffe://example.org/pay", err)
	}
	s, err := conn("pay").Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.Unauthenticated || !errors.Is(err, mesh.ErrNoIdentity) {
		t.Fatalf("pay, stream: %v; want Unauthenticated, mesh.ErrNoIdentity", err)
	}
	if n := pay.hits.Load(); n != 0 {
		t.Fatalf("%d calls reached pay's server; want 0", n)
	}
}
