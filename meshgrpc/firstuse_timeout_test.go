package meshgrpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
)

// TestFirstUseWaitIsNotTheCallsTimeout: a dialed service that discovery
// reports only after a while is looked up on the first call; the rule's
// timeout counts from the end of that lookup, as over HTTP, so a call the
// server answers well within the timeout is not cut by the mesh's wait.
func TestFirstUseWaitIsNotTheCallsTimeout(t *testing.T) {
	srv := grpctest.Start(t, "base")
	srv.Delay.Store(int64(250 * time.Millisecond))
	static := discovery.NewStatic(nil)
	m, _ := newMesh(t, "apiVersion: lightmesh/v1\ndefaults: {timeout: 500ms}\n", static)
	conn := dial(t, m, "late-api")
	go func() {
		time.Sleep(400 * time.Millisecond) // discovery answers late
		static.Set("late-api", []discovery.Instance{instance(srv, "base")})
	}()
	if got, err := call(context.Background(), conn); err != nil || got != "base" {
		t.Fatalf("first call: %q, %v; want base's answer (400 ms lookup + 250 ms call, timeout 500 ms from the lookup's end)", got, err)
	}
}
