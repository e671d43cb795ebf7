package grpcidentity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// When an applied document gives a service a serverID, no call on an
// existing client is sent in plaintext any more: a connection dialled in
// plaintext under the previous document is closed instead of carrying
// it. Likewise when serverID changes, the connection verified for the old
// ID carries no further call.
func TestDialOptionsServerIDAddedAppliesToNextCall(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	api, front := workload(t, ca, "/api"), workload(t, ca, "/front")
	apiAddr, hits := serve(t, api, identity.Permissive, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	doc := rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  api: {}\n"))
	m, err := mesh.New(ctx, mesh.WithRules(doc),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: apiAddr}}})),
		mesh.WithServices("api"), mesh.WithIdentity(front))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cc, err := grpc.NewClient("lightmesh:///api", meshgrpc.DialOptions(m)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	call := func() string {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return status.Convert(err).Message()
	}
	if got := call(); got != "caller=anonymous" {
		t.Fatalf("without serverID: %q; want served in plaintext", got)
	}
	doc.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/api\n"))
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := m.ServerID("api"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the document with serverID was not applied")
		}
	}
	// The call that finds the plaintext connection may fail (Unavailable)
	// as the connection closes; none may be served in plaintext, and the
	// next goes over mutual TLS.
	for i := 0; ; i++ {
		got := call()
		if got == "caller=spiffe://example.org/front" {
			break
		}
		if got == "caller=anonymous" || i == 2 {
			t.Fatalf("call %d after serverID was set: %q; want the call over mutual TLS as spiffe://example.org/front", i, got)
		}
	}

	// Another serverID: the connection verified for the old one must not
	// carry the next call to a server the rules no longer accept.
	before := hits.hits.Load()
	doc.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/pay\n"))
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if id, _ := m.ServerID("api"); id.String() == "spiffe://example.org/pay" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the document with the new serverID was not applied")
		}
	}
	for i := 0; ; i++ {
		got := call()
		if strings.Contains(got, "server presented spiffe://example.org/api, expected spiffe://example.org/pay") {
			break
		}
		if strings.HasPrefix(got, "caller=") || i == 2 {
			t.Fatalf("call %d after serverID changed: %q; want a failure naming both IDs", i, got)
		}
	}
	if n := hits.hits.Load() - before; n != 0 {
		t.Fatalf("%d calls reached a server the rules no longer accept; want 0", n)
	}
}
