package meshgrpc_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
)

// silentListener accepts connections and never answers: an instance whose
// connection stays connecting (a hung process, a half-open network).
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// A lane call whose lane instance has no connection (still connecting,
// and never getting there) goes to base and keeps its lane, as a lane
// without an instance does: it does not wait for the lane instance until
// its deadline while base is ready.
func TestLaneInstanceConnectingGoesToBase(t *testing.T) {
	base := grpctest.Start(t, "b-base")
	static := discovery.NewStatic(map[string][]discovery.Instance{"b": {
		instance(base, "base"),
		{Address: silentListener(t), Labels: map[string]string{"env": "feat1"}},
	}})
	m, _ := newMesh(t, "apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env, base: {labels: {env: base}}}\n", static)
	conn := dial(t, m, "b")
	if got, err := call(context.Background(), conn); err != nil || got != "b-base" {
		t.Fatalf("base call: %q %v", got, err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-env", "feat1")
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := grpctest.Call(cctx, conn)
		cancel()
		if err != nil || got != "b-base" {
			t.Fatalf("lane feat1 with its instance connecting: %q %v, want b-base", got, err)
		}
		if md := base.LastMetadata(); len(md.Get("x-env")) != 1 || md.Get("x-env")[0] != "feat1" {
			t.Fatalf("base got metadata %v: the lane is not kept for the next hop", md)
		}
	}
}
