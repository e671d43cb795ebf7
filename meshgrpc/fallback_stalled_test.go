package meshgrpc_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
)

// SPEC (capability 1): "An explicit fallback when the chosen subset has no
// healthy instance (staging -> base), never a silent black hole"; README
// rule table, fallback: "used when the chosen one has no available
// instance (none healthy, all ejected, or for gRPC no connection that can
// be made)". A staging instance that is hung (TCP accepts, no HTTP/2
// handshake) must not leave every staging call waiting until its deadline
// while base is ready: once it has been connecting for stallAfter (1s),
// the route's fallback takes them, as base takes a lane's calls.
func TestRouteFallbackWhenTheChosenSubsetIsHung(t *testing.T) {
	base := grpctest.Start(t, "base")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {
		instance(base, "base"),
		{Address: silentListener(t), Labels: map[string]string{"env": "staging"}},
	}})
	m, _ := newMesh(t, laneRules, static)
	conn := dial(t, m, "echo")
	if got, err := call(context.Background(), conn); err != nil || got != "base" {
		t.Fatalf("base call: %q %v", got, err)
	}
	time.Sleep(1500 * time.Millisecond) // staging has been connecting for longer than stallAfter
	lane := metadata.AppendToOutgoingContext(context.Background(), "x-env", "staging")
	for i := range 3 {
		ctx, cancel := context.WithTimeout(lane, 3*time.Second)
		start := time.Now()
		got, err := grpctest.Call(ctx, conn)
		cancel()
		if err != nil || got != "base" {
			t.Fatalf("staging call %d: %q %v after %v; want the route's fallback (base, ready) — staging's only instance is hung", i, got, err, time.Since(start))
		}
	}
}
