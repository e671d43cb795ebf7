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
	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// A program without an identity (src nil, as mesh.WithIdentity(nil)
// allows) calling a service whose rules require mutual TLS gets a call
// error saying so, as m.Transport gives mesh.ErrNoIdentity (not
// go-spiffe's "bundleSource is required"), and nothing is sent in
// plaintext.
func TestRulesCredentialsWithoutSource(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	apiAddr, hits := serve(t, workload(t, ca, "/api"), identity.Permissive, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/api\n"))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: apiAddr}}})),
		mesh.WithServices("api"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var src identity.Source // none configured
	cc, err := grpc.NewClient("lightmesh:///api", append(meshgrpc.DialOptions(m),
		grpc.WithTransportCredentials(grpcidentity.RulesCredentials(src, m)))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	_, err = healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{})
	if err == nil || !strings.Contains(err.Error(), "no identity") {
		t.Fatalf("call without an identity: %v; want an error saying the rules require mutual TLS and there is no identity", err)
	}
	if n := hits.hits.Load(); n != 0 {
		t.Fatalf("%d calls reached the server; want 0", n)
	}
}
