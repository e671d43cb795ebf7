package trace_test

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"

	lmtrace "github.com/lightmesh/lightmesh/trace"
)

// mdCarrier is a carrier over lowercase keys with several values each, as
// meshgrpc reads gRPC metadata.
type mdCarrier map[string][]string

func (c mdCarrier) Get(k string) string {
	if v := c[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}
func (c mdCarrier) Values(k string) []string { return c[k] }
func (c mdCarrier) Set(k, v string)          { c[k] = []string{v} }
func (c mdCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

func TestWithoutInboundLanes(t *testing.T) {
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	inHeader := func(extra ...string) http.Header {
		h := http.Header{}
		h.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
		h.Set("X-Env", "staging")
		h.Set("X-Tenant", "acme")
		h.Set("X-Request-Id", "req-7")
		h.Set("Baggage", "lightmesh.lane.x-env=staging,user=alice,lightmesh.lane.x-other=1")
		for i := 0; i+1 < len(extra); i += 2 {
			h.Add(extra[i], extra[i+1])
		}
		return h
	}
	md := mdCarrier{"traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}, "x-env": {"staging"}, "x-tenant": {"acme"},
		"x-request-id": {"req-7"}, "baggage": {"lightmesh.lane.x-env=staging,user=alice", "lightmesh.lane.x-other=1"}}
	carriers := map[string]propagation.TextMapCarrier{
		"header":                    propagation.HeaderCarrier(inHeader()),
		"header, two baggage lines": propagation.HeaderCarrier(inHeader("Baggage", "lightmesh.lane.x-tenant=acme")),
		"grpc metadata":             md,
	}
	for name, carrier := range carriers {
		t.Run(name, func(t *testing.T) {
			opts := []lmtrace.Option{lmtrace.WithLaneKeys("x-env", "x-tenant")}
			open := lmtrace.New(opts...)
			edge := lmtrace.New(append(opts, lmtrace.WithoutInboundLanes())...)
			if !open.InboundLanes() || edge.InboundLanes() {
				t.Fatalf("InboundLanes = %v, %v; want true, false", open.InboundLanes(), edge.InboundLanes())
			}
			if lane := lmtrace.LaneFromContext(open.Extract(context.Background(), carrier)); lane.String() == "" {
				t.Fatal("without the option the lane is read: the carrier tests nothing")
			}

			ctx := edge.Extract(context.Background(), carrier)
			if lane := lmtrace.LaneFromContext(ctx); lane.String() != "" {
				t.Errorf("lane = %q, want none", lane)
			}
			if id := lmtrace.TraceIDFromContext(ctx); id != traceID {
				t.Errorf("trace id = %q, want %s", id, traceID)
			}
			if id := lmtrace.RequestIDFromContext(ctx); id != "req-7" {
				t.Errorf("request id = %q, want req-7", id)
			}
			bag := baggage.FromContext(ctx)
			if bag.Len() != 1 || bag.Member("user").Value() != "alice" {
				t.Errorf("baggage = %q, want user=alice alone", bag)
			}
			out := http.Header{}
			edge.Inject(ctx, propagation.HeaderCarrier(out))
			if out.Get("X-Env") != "" || out.Get("X-Tenant") != "" || out.Get("Baggage") != "user=alice" {
				t.Errorf("outgoing X-Env %q X-Tenant %q Baggage %q, want no lane", out.Get("X-Env"), out.Get("X-Tenant"), out.Get("Baggage"))
			}

			// A lane the service sets itself is kept and sent.
			lane, err := lmtrace.NewLane(lmtrace.Label{Key: "x-env", Value: "canary"})
			if err != nil {
				t.Fatal(err)
			}
			ctx = edge.Extract(lmtrace.ContextWithLane(context.Background(), lane), carrier)
			if got := lmtrace.LaneFromContext(ctx).String(); got != "x-env=canary" {
				t.Errorf("lane set in code = %q after Extract, want x-env=canary", got)
			}
			out = http.Header{}
			edge.Inject(ctx, propagation.HeaderCarrier(out))
			if out.Get("X-Env") != "canary" {
				t.Errorf("outgoing X-Env %q, want the lane set in code", out.Get("X-Env"))
			}
		})
	}
}

// Code's own baggage in the context survives Extract of a carrier
// without baggage.
func TestWithoutInboundLanesKeepsContextBaggage(t *testing.T) {
	m, err := baggage.NewMemberRaw("lightmesh.lane.x-env", "canary")
	if err != nil {
		t.Fatal(err)
	}
	bag, err := baggage.New(m)
	if err != nil {
		t.Fatal(err)
	}
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	h := http.Header{}
	h.Set("X-Env", "staging")
	ctx = lmtrace.New(lmtrace.WithoutInboundLanes()).Extract(ctx, propagation.HeaderCarrier(h))
	if got := baggage.FromContext(ctx).Member("lightmesh.lane.x-env").Value(); got != "canary" {
		t.Fatalf("context baggage member = %q, want canary", got)
	}
}

// xBag is a propagator that carries baggage in an X-Bag header, as the
// Jaeger (uberctx-*) and OT (ot-baggage-*) propagators carry it outside
// the W3C baggage header.
type xBag struct{}

func (xBag) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	if b := baggage.FromContext(ctx); b.Len() > 0 {
		c.Set("x-bag", b.String())
	}
}

func (xBag) Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	if b, err := baggage.Parse(c.Get("x-bag")); err == nil && b.Len() > 0 {
		return baggage.ContextWithBaggage(ctx, b)
	}
	return ctx
}

func (xBag) Fields() []string { return []string{"x-bag"} }

// With a propagator that reads baggage from another header, the lane
// members it brings in are dropped too, and none is sent on.
func TestWithoutInboundLanesOtherBaggageHeader(t *testing.T) {
	p := lmtrace.New(lmtrace.WithPropagator(xBag{}), lmtrace.WithLaneKeys("x-env", "x-tenant"), lmtrace.WithoutInboundLanes())
	in := http.Header{}
	in.Set("X-Bag", "lightmesh.lane.x-env=staging,lightmesh.lane.x-tenant=evil,user=alice")
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))
	bag := baggage.FromContext(ctx)
	if bag.Member("lightmesh.lane.x-env").Value() != "" || bag.Member("lightmesh.lane.x-tenant").Value() != "" || bag.Member("user").Value() != "alice" {
		t.Fatalf("baggage after Extract = %q, want user=alice only", bag)
	}
	if lane := lmtrace.LaneFromContext(ctx); lane.Len() != 0 {
		t.Fatalf("lane = %q, want none", lane)
	}
	out := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(out))
	next := lmtrace.New(lmtrace.WithPropagator(xBag{}), lmtrace.WithLaneKeys("x-env", "x-tenant"))
	if lane := lmtrace.LaneFromContext(next.Extract(context.Background(), propagation.HeaderCarrier(out))); lane.Len() != 0 {
		t.Fatalf("the next hop extracted lane %q from %v", lane, out)
	}
}
