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
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// A mesh with an identity that has no rule document yet
// (mesh.WithStartEmpty) cannot know whether a service requires mutual
// TLS: a gRPC call through meshgrpc.DialOptions sends nothing (it went in
// plaintext to whoever listened at the instance's address, and a
// permissive server served it as a caller without a certificate); once
// the document says serverID, the call goes over mutual TLS.
func TestDialOptionsSendNothingBeforeTheFirstDocument(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	front := workload(t, ca, "/front")
	payAddr, pay := serve(t, workload(t, ca, "/pay"), identity.Permissive, nil)
	src := rules.NewMemory(nil)
	events := make(chan mesh.RulesEvent, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(src), mesh.WithStartEmpty(), mesh.WithStartTimeout(100*time.Millisecond),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"pay": {{Address: payAddr}}})),
		mesh.WithServices("pay"), mesh.WithIdentity(front),
		mesh.WithOnRulesChange(func(e mesh.RulesEvent) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cc, err := grpc.NewClient("lightmesh:///pay", meshgrpc.DialOptions(m)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	call := func() error {
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := call(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "rules of pay have not arrived yet") {
		t.Fatalf("before the first document: %v; want Unavailable saying the rules of pay have not arrived", err)
	}
	if n := pay.hits.Load(); n != 0 {
		t.Fatalf("%d calls reached pay before the rules said how to call it; want 0", n)
	}
	src.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  pay:\n    serverID: spiffe://example.org/pay\n"))
	if e := <-events; e.Err != nil {
		t.Fatal(e.Err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := call()
		if status.Convert(err).Message() == "caller=spiffe://example.org/front" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the document: %v; want served over mutual TLS to spiffe://example.org/front", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
