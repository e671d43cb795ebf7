package mesh_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestSlowStartRamps: an instance joining two busy ones under
// slowStart {window: 2s} gets far less than its third of the calls in
// the first 400ms, more as the window goes on, and its full third once
// the window has passed; no call fails.
func TestSlowStartRamps(t *testing.T) {
	a, b, c := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "c")
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance(), b.instance()}})
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    slowStart: {window: 2s}\n"))), static)
	client := &http.Client{Transport: m.Transport(nil)}
	for range 20 {
		send(client, "GET", "http://svc/")
	}
	static.Set("svc", []discovery.Instance{a.instance(), b.instance(), c.instance()})
	meshtest.WaitFor(t, 5*time.Second, "the new instance to be picked", func() bool {
		send(client, "GET", "http://svc/")
		return c.hits.Load() > 0
	})
	joined := time.Now()
	// share sends calls until the window's clock reaches until and
	// returns the share the new instance got.
	share := func(until time.Duration) float64 {
		t.Helper()
		calls, before := 0, c.hits.Load()
		for time.Since(joined) < until && calls < 20000 {
			if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != 200 {
				t.Fatalf("during the ramp: %d %v", code, err)
			}
			calls++
		}
		if calls < 30 {
			t.Fatalf("only %d calls in the period", calls)
		}
		return float64(c.hits.Load()-before) / float64(calls)
	}
	early := share(400 * time.Millisecond)
	late := share(1800 * time.Millisecond)
	time.Sleep(time.Until(joined.Add(2100 * time.Millisecond)))
	joined = time.Now()
	full := share(500 * time.Millisecond)
	t.Logf("new instance's share: %.2f in 0-0.4s, %.2f in 0.4-1.8s, %.2f after the window", early, late, full)
	if early > 0.2 || late < early || late > 0.33 || full < 0.28 || full > 0.38 {
		t.Fatalf("new instance's share: %.2f in 0-0.4s, %.2f in 0.4-1.8s, %.2f after the window; want < 0.2 (round-robin: 0.33), growing, then 1/3",
			early, late, full)
	}
}

// TestSlowStartKeepsLaneCallsInTheirLane: a lane instance that joins
// while slowStart is set ramps within its lane only: every call carrying
// the lane still reaches it, none goes to the base instances, even at
// the start of its window (before, a warming lane instance gave its turn
// to base, so ~90% of the lane's calls left the lane).
func TestSlowStartKeepsLaneCallsInTheirLane(t *testing.T) {
	list := laneFleet(t)
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": list[:2]})
	doc := "apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env, base: {labels: {env: base}}}\n  slowStart: {window: 1m}\n"
	m := newMesh(t, rules.NewMemory([]byte(doc)), static, mesh.WithServices("svc"))
	c := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, c, "svc", "", 10, "base-1", "base-2")
	static.Set("svc", list[:3])
	meshtest.WaitFor(t, 5*time.Second, "feat1-1 known", func() bool { return len(m.Table().Instances("svc", "")) == 3 })
	meshtest.ExpectOnly(t, c, "svc", "feat1", 40, "feat1-1")
}
