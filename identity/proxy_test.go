package identity_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A mutual-TLS call goes to the instance the mesh picked, end to end,
// even when the base transport has an HTTP proxy (as
// http.DefaultTransport has from HTTP_PROXY): the handshake must not be
// made with the proxy, which fails every call.
func TestTransportMTLSIgnoresProxy(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	front, _ := workload(t, ca, "/front")
	apiAddr, _ := serve(t, api, identity.Strict, (*identity.Guard)(nil).Handler(echoCaller))
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		http.Error(w, "proxy", http.StatusBadGateway)
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(clientRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: apiAddr}}})),
		mesh.WithServices("api"), mesh.WithIdentity(front))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer base.CloseIdleConnections()
	c := &http.Client{Timeout: 5 * time.Second, Transport: m.Transport(base)}
	code, body, err := get(t, c, "http://api/orders/1")
	if err != nil || code != 200 || body != "spiffe://example.org/front" {
		t.Fatalf("http://api through a base with a proxy: %d %q %v; want 200 served to spiffe://example.org/front", code, body, err)
	}
	if n := proxied.Load(); n != 0 {
		t.Fatalf("%d requests went to the proxy; want 0", n)
	}
}
