package identity_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A mesh with an identity that has no rule document yet
// (mesh.WithStartEmpty) cannot know whether a service requires mutual
// TLS: m.Transport sends nothing and fails with mesh.ErrNoRules (the call
// went in plaintext to whoever listened at the instance's address, and a
// permissive server served it as a caller without a certificate); once the
// document says serverID, the call goes over mutual TLS.
func TestTransportSendsNothingBeforeTheFirstDocument(t *testing.T) {
	ca := newCA(t)
	pay, _ := workload(t, ca, "/pay")
	front, _ := workload(t, ca, "/front")
	payAddr, hits := serve(t, pay, identity.Permissive, (*identity.Guard)(nil).Handler(echoCaller))
	src := rules.NewMemory(nil)
	events := make(chan mesh.RulesEvent, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(src), mesh.WithStartEmpty(), mesh.WithStartTimeout(100*time.Millisecond),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"pay": {{Address: payAddr}}})),
		mesh.WithServices("pay"), mesh.WithIdentity(front),
		mesh.WithOnRulesChange(func(e mesh.RulesEvent) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c := &http.Client{Timeout: 5 * time.Second, Transport: m.Transport(nil)}
	if _, _, err := get(t, c, "http://pay/charge"); !errors.Is(err, mesh.ErrNoRules) {
		t.Fatalf("before the first document: %v; want mesh.ErrNoRules", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached pay before the rules said how to call it; want 0", n)
	}
	src.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  pay:\n    serverID: spiffe://example.org/pay\n"))
	if e := <-events; e.Err != nil {
		t.Fatal(e.Err)
	}
	if code, body, err := get(t, c, "http://pay/charge"); err != nil || code != 200 || body != "spiffe://example.org/front" {
		t.Fatalf("after the document: %d %q %v; want 200 over mutual TLS to spiffe://example.org/front", code, body, err)
	}
}
