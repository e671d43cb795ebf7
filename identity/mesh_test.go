package identity_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

const clientRules = `apiVersion: lightmesh/v1
services:
  api:
    serverID: spiffe://example.org/api
  pay:
    serverID: spiffe://example.org/pay
`

// m.Transport calls a service whose rules set serverID over mutual TLS
// with the mesh's identity, for an http:// URL; a server presenting
// another ID fails the call with an error naming both, before any
// request byte.
func TestTransportMTLSByRules(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	impostor, _ := workload(t, ca, "/impostor")
	front, _ := workload(t, ca, "/front")
	apiAddr, _ := serve(t, api, identity.Strict, (*identity.Guard)(nil).Handler(echoCaller))
	payAddr, payHits := serve(t, impostor, identity.Strict, echoCaller)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	newMesh := func(opts ...mesh.Option) *mesh.Mesh {
		m, err := mesh.New(ctx, append(opts,
			mesh.WithRules(rules.NewMemory([]byte(clientRules))),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{
				"api": {{Address: apiAddr}}, "pay": {{Address: payAddr}},
			})),
			mesh.WithServices("api", "pay"))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: newMesh(mesh.WithIdentity(front)).Transport(nil)}
	code, body, err := get(t, c, "http://api/orders/1")
	if err != nil || code != 200 || body != "spiffe://example.org/front" {
		t.Fatalf("http://api: %d %q %v; want 200 served to spiffe://example.org/front over mTLS", code, body, err)
	}
	_, _, err = get(t, c, "http://pay/charge")
	var mm *identity.MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), "server presented spiffe://example.org/impostor, expected spiffe://example.org/pay") {
		t.Fatalf("http://pay: %v; want a *identity.MismatchError naming both IDs", err)
	}
	if n := payHits.Load(); n != 0 {
		t.Fatalf("%d requests reached the impostor; want 0", n)
	}

	c = &http.Client{Timeout: 5 * time.Second, Transport: newMesh().Transport(nil)}
	if _, _, err := get(t, c, "http://api/orders/1"); !errors.Is(err, mesh.ErrNoIdentity) {
		t.Fatalf("without WithIdentity: %v; want mesh.ErrNoIdentity", err)
	}
}
