package meshgrpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
)

// TestSlowStartRamps: through the lightmesh picker, a server joining two
// busy ones under slowStart {window: 2s} gets far less than its third of
// the calls at first and its full third once the window has passed.
func TestSlowStartRamps(t *testing.T) {
	a, b, c := grpctest.Start(t, "a"), grpctest.Start(t, "b"), grpctest.Start(t, "c")
	static := staticOf(a, b)
	m, _ := newMesh(t, echoDoc("    slowStart: {window: 2s}\n"), static)
	conn := dial(t, m, "echo")
	ctx := context.Background()
	meshtest.WaitFor(t, 5*time.Second, "both servers to answer", func() bool {
		call(ctx, conn)
		return a.Calls.Load() > 0 && b.Calls.Load() > 0
	})
	static.Set("echo", []discovery.Instance{{Address: a.Addr}, {Address: b.Addr}, {Address: c.Addr}})
	joined := time.Now()
	meshtest.WaitFor(t, 5*time.Second, "the new server to be picked", func() bool {
		call(ctx, conn)
		return c.Calls.Load() > 0
	})
	share := func(until time.Duration) float64 {
		t.Helper()
		calls, before := 0, c.Calls.Load()
		for time.Since(joined) < until && calls < 20000 {
			if _, err := call(ctx, conn); err != nil {
				t.Fatalf("during the ramp: %v", err)
			}
			calls++
		}
		if calls < 30 {
			t.Fatalf("only %d calls in the period", calls)
		}
		return float64(c.Calls.Load()-before) / float64(calls)
	}
	early := share(500 * time.Millisecond)
	time.Sleep(time.Until(joined.Add(2100 * time.Millisecond)))
	joined = time.Now()
	full := share(500 * time.Millisecond)
	t.Logf("new server's share: %.2f in the first 0.5s, %.2f after the window", early, full)
	if early > 0.2 || full < 0.28 || full > 0.38 {
		t.Fatalf("new server's share: %.2f in the first 0.5s, %.2f after the window; want < 0.2 (round-robin: 0.33), then 1/3", early, full)
	}
}
