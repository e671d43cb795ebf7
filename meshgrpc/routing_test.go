package meshgrpc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

func TestRoutingByMetadataAndLane(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(staging, "staging")}})
	m, _ := newMesh(t, laneRules, static)
	conn := dial(t, m, "echo")
	ctx := context.Background()

	if got := counts(ctx, conn, 10); got["base"] != 10 {
		t.Fatalf("no metadata: %v, want all on base", got)
	}
	md := metadata.AppendToOutgoingContext(ctx, "x-env", "staging")
	if got := counts(md, conn, 10); got["staging"] != 10 {
		t.Fatalf("x-env: staging metadata: %v, want all on staging", got)
	}
	lane, err := trace.NewLane(trace.Label{Key: "x-env", Value: "staging"})
	if err != nil {
		t.Fatal(err)
	}
	if got := counts(trace.ContextWithLane(ctx, lane), conn, 10); got["staging"] != 10 {
		t.Fatalf("lane in the context: %v, want all on staging", got)
	}
	// The lane travels on: the server saw it as metadata and as baggage.
	smd := staging.LastMetadata()
	if v := smd.Get("x-env"); len(v) != 1 || v[0] != "staging" {
		t.Fatalf("staging saw x-env %v", v)
	}
	if v := smd.Get("baggage"); len(v) != 1 || v[0] != "lightmesh.lane.x-env=staging" {
		t.Fatalf("staging saw baggage %v", v)
	}
}

func TestWeightedSplit(t *testing.T) {
	base, canary := grpctest.Start(t, "base"), grpctest.Start(t, "canary")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(canary, "canary")}})
	m, _ := newMesh(t, `apiVersion: lightmesh/v1
services:
  echo:
    subsets: {base: {labels: {env: base}}, canary: {labels: {env: canary}}}
    routes:
      - destinations: [{subset: base, weight: 90}, {subset: canary, weight: 10}]
`, static)
	conn := dial(t, m, "echo")
	const n = 2000
	got := counts(context.Background(), conn, n)
	if got["error"] != 0 {
		t.Fatalf("%d calls failed: %v", got["error"], got)
	}
	if share := float64(got["canary"]) / n * 100; share < 7 || share > 13 {
		t.Fatalf("canary got %.1f%% of %d calls (%v), want 10 ± 3", share, n, got)
	}
}

func TestFallbackWhenStagingIsGone(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(staging, "staging")}})
	m, _ := newMesh(t, laneRules, static)
	conn := dial(t, m, "echo")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-env", "staging")
	if got := counts(ctx, conn, 5); got["staging"] != 5 {
		t.Fatalf("before: %v", got)
	}
	static.Set("echo", []discovery.Instance{instance(base, "base")})
	meshtest.WaitFor(t, 5*time.Second, "staging to leave", func() bool { return len(m.Table().Instances("echo", "staging")) == 0 })
	if got := counts(ctx, conn, 10); got["base"] != 10 {
		t.Fatalf("staging gone, fallback base expected: %v", got)
	}
}

// When the chosen subset has no instance at all (and no fallback), a call
// fails at once with Unavailable naming service, subset and route — it
// does not wait for a connection that will never come.
func TestNoInstanceFailsFast(t *testing.T) {
	base := grpctest.Start(t, "base")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base")}})
	m, _ := newMesh(t, `apiVersion: lightmesh/v1
services:
  echo:
    subsets: {base: {labels: {env: base}}, staging: {labels: {env: staging}}}
    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - destinations: [{subset: base}]
`, static)
	conn := dial(t, m, "echo")
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-env", "staging"), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := grpctest.Call(ctx, conn)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the call took %v: it must fail at once", d)
	}
	if status.Code(err) != codes.Unavailable || !errors.Is(err, router.ErrNoInstance) {
		t.Fatalf("err = %v, want Unavailable matching router.ErrNoInstance", err)
	}
	for _, want := range []string{`"echo"`, `"staging"`, `route "staging-lane"`} {
		if !strings.Contains(status.Convert(err).Message(), want) {
			t.Fatalf("message %q does not name %s", status.Convert(err).Message(), want)
		}
	}
	// A service no discovery knows at all fails the same way.
	ghost := dial(t, m, "ghost")
	if _, err := call(context.Background(), ghost); status.Code(err) != codes.Unavailable {
		t.Fatalf("unknown service: %v", err)
	}
}
