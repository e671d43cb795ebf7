package meshgrpc_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
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
