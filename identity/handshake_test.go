package identity_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A server that accepts the connection and never answers the handshake
// fails a mutual-TLS call after base's TLSHandshakeTimeout, as it fails a
// plain https call: the call must not hang until the caller's deadline.
func TestTransportMTLSHandshakeTimeout(t *testing.T) {
	ca := newCA(t)
	front, _ := workload(t, ca, "/front")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, silent
		}
	}()
	defer func() {
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(clientRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: ln.Addr().String()}}})),
		mesh.WithServices("api"), mesh.WithIdentity(front))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := &http.Transport{TLSHandshakeTimeout: 300 * time.Millisecond}
	defer base.CloseIdleConnections()
	rctx, rcancel := context.WithTimeout(ctx, 4*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, http.MethodGet, "http://api/orders/1", nil)
	start := time.Now()
	resp, err := (&http.Client{Transport: m.Transport(base)}).Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatal("the call succeeded against a server that never completes the handshake")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("the call failed after %v (%v); want it to fail at TLSHandshakeTimeout (300ms)", took.Round(time.Millisecond), err)
	}
}
