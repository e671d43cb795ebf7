package meshgrpc_test

import (
	"context"
	"io"
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

// slowProxy accepts connections and pipes each to target only after
// delay: an instance whose connection takes that long to set up.
func slowProxy(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				time.Sleep(delay)
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(up, c)
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

// A service whose only instance serves a lane (no base instance) is still
// waited for by the lane's calls when its connection is slow to set up:
// there is nothing else to go to.
func TestLaneOnlyInstanceSlowToConnectIsWaitedFor(t *testing.T) {
	feat := grpctest.Start(t, "b-feat1")
	static := discovery.NewStatic(map[string][]discovery.Instance{"b": {
		{Address: slowProxy(t, feat.Addr, 1500*time.Millisecond), Labels: map[string]string{"env": "feat1"}},
	}})
	m, _ := newMesh(t, "apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env, base: {labels: {env: base}}}\n", static)
	conn := dial(t, m, "b")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-env", "feat1")
	if got, err := call(ctx, conn); err != nil || got != "b-feat1" {
		t.Fatalf("lane feat1, its only instance slow to connect: %q %v, want b-feat1", got, err)
	}
}
