package identity_test

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// serveCounting serves h with mutual TLS and counts the connections that
// ended.
func serveCounting(t *testing.T, src identity.Source, h http.Handler) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var closed atomic.Int64
	srv := &http.Server{Handler: h, ConnContext: identity.ConnContext, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}}
	go srv.Serve(identity.Listen(ln, identity.ServerTLSConfig(src), identity.Strict))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), &closed
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
	}
}

// http.Client.CloseIdleConnections closes the kept-alive mutual-TLS
// connections m.Transport made, and a document that changes a service's
// serverID retires the connections verified for the old ID: neither may
// stay open (two goroutines each) until the idle timeout, or forever
// without one.
func TestTransportMTLSIdleConnectionsClose(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	api2, _ := workload(t, ca, "/api2")
	front, _ := workload(t, ca, "/front")
	addr, closed := serveCounting(t, api, (*identity.Guard)(nil).Handler(echoCaller))
	addr2, _ := serveCounting(t, api2, (*identity.Guard)(nil).Handler(echoCaller))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	doc := rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/api\n"))
	disc := discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: addr}}})
	m, err := mesh.New(ctx, mesh.WithRules(doc), mesh.WithDiscovery(disc), mesh.WithServices("api"), mesh.WithIdentity(front))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := &http.Transport{} // no idle timeout: only closing ends a kept-alive connection
	c := &http.Client{Timeout: 5 * time.Second, Transport: m.Transport(base)}
	defer c.CloseIdleConnections()

	if code, body, err := get(t, c, "http://api/orders/1"); err != nil || code != 200 || body != "spiffe://example.org/front" {
		t.Fatalf("http://api: %d %q %v", code, body, err)
	}
	c.CloseIdleConnections()
	waitFor(t, "CloseIdleConnections left the mutual-TLS connection open", func() bool { return closed.Load() == 1 })

	if code, _, err := get(t, c, "http://api/orders/1"); err != nil || code != 200 {
		t.Fatalf("http://api again: %d %v", code, err)
	}
	// A new document: api is now served at addr2 under another ID.
	doc.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    serverID: spiffe://example.org/api2\n"))
	disc.Set("api", []discovery.Instance{{Address: addr2}})
	waitFor(t, "the new serverID was not applied", func() bool {
		id, _ := m.ServerID("api")
		return id.String() == "spiffe://example.org/api2"
	})
	waitFor(t, "the call under the new serverID failed", func() bool {
		code, _, err := get(t, c, "http://api/orders/1")
		return err == nil && code == 200
	})
	waitFor(t, "the connection verified for the old serverID is still open", func() bool { return closed.Load() == 2 })
}
