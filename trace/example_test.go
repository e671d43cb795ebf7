package trace_test

import (
	"context"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/propagation"

	lmtrace "github.com/lightmesh/lightmesh/trace"
)

// A service receives a request in the staging lane and calls the next hop
// with the request's context: the lane, trace and request id travel on
// without the service copying any header.
func Example() {
	p := lmtrace.New() // propagate only, W3C trace context and baggage

	in := http.Header{}
	in.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	in.Set("X-Env", "staging")
	in.Set("X-Request-Id", "req-1")
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))

	fmt.Println("lane:", lmtrace.LaneFromContext(ctx))
	fmt.Println("trace:", lmtrace.TraceIDFromContext(ctx))

	out := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(out))
	for _, k := range []string{"Traceparent", "X-Env", "Baggage", "X-Request-Id"} {
		fmt.Printf("%s: %s\n", k, out.Get(k))
	}
	// Output:
	// lane: x-env=staging
	// trace: 4bf92f3577b34da6a3ce929d0e0e4736
	// Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
	// X-Env: staging
	// Baggage: lightmesh.lane.x-env=staging
	// X-Request-Id: req-1
}

// Code can put a request in a lane itself, for example a job that calls
// staging services.
func ExampleContextWithLane() {
	lane, err := lmtrace.NewLane(lmtrace.Label{Key: "x-env", Value: "staging"})
	if err != nil {
		panic(err)
	}
	ctx := lmtrace.ContextWithLane(context.Background(), lane)

	out := http.Header{}
	lmtrace.New().Inject(ctx, propagation.HeaderCarrier(out))
	fmt.Println(out.Get("X-Env"), out.Get("Baggage"))
	// Output: staging lightmesh.lane.x-env=staging
}

func ExampleNewLane() {
	_, err := lmtrace.NewLane(lmtrace.Label{Key: "X-Env", Value: "staging"})
	fmt.Println(err)
	// Output: trace: invalid lane label key: label 0 key "X-Env": uppercase letter 'X' at byte 0 (keys are lowercase header names)
}

// A service facing the public internet ignores the lane of the requests it
// receives: a stranger's X-Env header and lane baggage select nothing, while
// the trace and the rest of the baggage travel on.
func ExampleWithoutInboundLanes() {
	p := lmtrace.New(lmtrace.WithoutInboundLanes())

	in := http.Header{}
	in.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	in.Set("X-Env", "staging")
	in.Set("Baggage", "lightmesh.lane.x-env=staging,user=alice")
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))

	fmt.Printf("lane: %q\n", lmtrace.LaneFromContext(ctx))
	fmt.Println("trace:", lmtrace.TraceIDFromContext(ctx))

	out := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(out))
	fmt.Printf("X-Env: %q\n", out.Get("X-Env"))
	fmt.Println("Baggage:", out.Get("Baggage"))
	// Output:
	// lane: ""
	// trace: 4bf92f3577b34da6a3ce929d0e0e4736
	// X-Env: ""
	// Baggage: user=alice
}
