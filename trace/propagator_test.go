package trace

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"
)

const (
	inTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	inSpanID      = "00f067aa0ba902b7"
	inTraceparent = "00-" + inTraceID + "-" + inSpanID + "-01"
)

// header builds an http.Header from name, value pairs, adding (not setting)
// repeated names.
func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// hop extracts in with p and injects the result into a fresh header.
func hop(p *Propagator, in http.Header) (context.Context, http.Header) {
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))
	out := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(out))
	return ctx, out
}

// members parses the baggage header(s) of h into a key → value map.
func members(t *testing.T, h http.Header) map[string]string {
	t.Helper()
	got := map[string]string{}
	for _, v := range h.Values("Baggage") {
		b, err := baggage.Parse(v)
		if err != nil {
			t.Fatalf("outgoing baggage %q does not parse: %v", v, err)
		}
		for _, m := range b.Members() {
			got[m.Key()] = m.Value()
		}
	}
	return got
}

func mustLane(t *testing.T, labels ...Label) Lane {
	t.Helper()
	l, err := NewLane(labels...)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRoundTripLaneViaHeader(t *testing.T) {
	p := New()
	ctx, out := hop(p, header("X-Env", "staging"))
	if got := LaneFromContext(ctx).String(); got != "x-env=staging" {
		t.Fatalf("extracted lane = %q", got)
	}
	if got := out.Get("X-Env"); got != "staging" {
		t.Errorf("outgoing X-Env = %q", got)
	}
	if got := members(t, out)["lightmesh.lane.x-env"]; got != "staging" {
		t.Errorf("outgoing baggage lane member = %q, header %q", got, out.Get("Baggage"))
	}
}

func TestRoundTripLaneViaBaggageOnly(t *testing.T) {
	p := New()
	ctx, out := hop(p, header("Baggage", "user=alice,lightmesh.lane.x-env=staging"))
	if got := LaneFromContext(ctx).String(); got != "x-env=staging" {
		t.Fatalf("extracted lane = %q", got)
	}
	if got := out.Get("X-Env"); got != "staging" {
		t.Errorf("outgoing X-Env = %q, want the lane re-applied as a header", got)
	}
	m := members(t, out)
	if m["lightmesh.lane.x-env"] != "staging" || m["user"] != "alice" || len(m) != 2 {
		t.Errorf("outgoing baggage = %v", m)
	}
}

func TestThreeHops(t *testing.T) {
	// A sets the lane in code; B only forwards baggage (a service without
	// lightmesh, modelled by the plain otel propagator); C reads it back.
	p := New()
	a := http.Header{}
	p.Inject(ContextWithLane(context.Background(), mustLane(t, Label{"x-env", "staging"})), propagation.HeaderCarrier(a))

	plain := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	bctx := plain.Extract(context.Background(), propagation.HeaderCarrier(a))
	b := http.Header{}
	plain.Inject(bctx, propagation.HeaderCarrier(b))
	if b.Get("X-Env") != "" {
		t.Fatal("plain hop forwarded the header; test is meaningless")
	}

	cctx := p.Extract(context.Background(), propagation.HeaderCarrier(b))
	if got := LaneFromContext(cctx).String(); got != "x-env=staging" {
		t.Errorf("lane after a baggage-only hop = %q", got)
	}
}

func TestHeaderBeatsBaggage(t *testing.T) {
	p := New()
	ctx, out := hop(p, header("X-Env", "canary", "Baggage", "lightmesh.lane.x-env=staging"))
	if got := LaneFromContext(ctx).String(); got != "x-env=canary" {
		t.Fatalf("extracted lane = %q, want the header to win", got)
	}
	if got := out.Get("X-Env"); got != "canary" {
		t.Errorf("outgoing X-Env = %q", got)
	}
	if got := members(t, out)["lightmesh.lane.x-env"]; got != "canary" {
		t.Errorf("outgoing baggage lane member = %q, want it updated to the header's value", got)
	}
}

func TestInvalidHeaderFallsBackToBaggage(t *testing.T) {
	p := New()
	ctx, _ := hop(p, header("X-Env", "bad value,with comma", "Baggage", "lightmesh.lane.x-env=staging"))
	if got := LaneFromContext(ctx).String(); got != "x-env=staging" {
		t.Errorf("extracted lane = %q", got)
	}
}

func TestExplicitOutgoingHeaderWins(t *testing.T) {
	p := New()
	ctx := ContextWithLane(context.Background(), mustLane(t, Label{"x-env", "staging"}))
	out := header("X-Env", "canary")
	p.Inject(ctx, propagation.HeaderCarrier(out))
	if got := out.Values("X-Env"); len(got) != 1 || got[0] != "canary" {
		t.Errorf("outgoing X-Env = %q, want the caller's header untouched", got)
	}
	if got := members(t, out)["lightmesh.lane.x-env"]; got != "canary" {
		t.Errorf("baggage lane member = %q, want the caller's header value", got)
	}

	// A header alone, with no lane in ctx, still joins the baggage.
	out = header("X-Env", "canary")
	p.Inject(context.Background(), propagation.HeaderCarrier(out))
	if got := members(t, out)["lightmesh.lane.x-env"]; got != "canary" {
		t.Errorf("baggage lane member from header only = %q", got)
	}

	// An invalid explicit header is left alone; the baggage keeps the lane.
	out = header("X-Env", "not valid")
	p.Inject(ctx, propagation.HeaderCarrier(out))
	if out.Get("X-Env") != "not valid" || members(t, out)["lightmesh.lane.x-env"] != "staging" {
		t.Errorf("invalid explicit header: X-Env %q baggage %v", out.Get("X-Env"), members(t, out))
	}
}

func TestUserBaggagePreserved(t *testing.T) {
	p := New()
	m1, _ := baggage.NewMemberRaw("user", "alice")
	prop, _ := baggage.NewKeyValuePropertyRaw("ttl", "3")
	m2, _ := baggage.NewMemberRaw("tenant", "acme corp", prop)
	m3, _ := baggage.NewMemberRaw("lightmesh.lane.x-other", "kept")
	bag, _ := baggage.New(m1, m2, m3)
	ctx := baggage.ContextWithBaggage(context.Background(), bag)
	ctx = ContextWithLane(ctx, mustLane(t, Label{"x-env", "staging"}))

	out := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(out))
	got, err := baggage.Parse(out.Get("Baggage"))
	if err != nil {
		t.Fatal(err)
	}
	if got.Member("user").Value() != "alice" || got.Member("tenant").Value() != "acme corp" ||
		got.Member("lightmesh.lane.x-other").Value() != "kept" || got.Member("lightmesh.lane.x-env").Value() != "staging" || got.Len() != 4 {
		t.Errorf("outgoing baggage = %q", out.Get("Baggage"))
	}
	if props := got.Member("tenant").Properties(); len(props) != 1 || props[0].Key() != "ttl" {
		t.Errorf("properties of user member lost: %v", props)
	}
	// The context's baggage itself is not modified.
	if baggage.FromContext(ctx).Len() != 3 {
		t.Errorf("Inject modified the caller's baggage")
	}
}

func TestStaleLaneMemberRemoved(t *testing.T) {
	p := New()
	// The incoming lane member is invalid once decoded ("a b"): it is not
	// part of the lane and must not travel on.
	ctx, out := hop(p, header("Baggage", "lightmesh.lane.x-env=a%20b,user=alice"))
	if LaneFromContext(ctx).Len() != 0 {
		t.Fatalf("invalid member became a lane: %v", LaneFromContext(ctx))
	}
	if m := members(t, out); len(m) != 1 || m["user"] != "alice" {
		t.Errorf("outgoing baggage = %v, want only the user member", m)
	}
	if out.Get("X-Env") != "" {
		t.Errorf("outgoing X-Env = %q", out.Get("X-Env"))
	}

	// Code clearing the lane also clears the member.
	ctx = p.Extract(context.Background(), propagation.HeaderCarrier(header("Baggage", "lightmesh.lane.x-env=staging")))
	out = http.Header{}
	p.Inject(ContextWithLane(ctx, Lane{}), propagation.HeaderCarrier(out))
	if out.Get("Baggage") != "" || out.Get("X-Env") != "" {
		t.Errorf("cleared lane still sent: baggage %q X-Env %q", out.Get("Baggage"), out.Get("X-Env"))
	}
}

func TestLaneKeys(t *testing.T) {
	p := New(WithLaneKeys("X-Tenant", "x-env", "bad key", "x-env", "", "host"), WithLaneKeys(), nil)
	if got := p.LaneKeys(); !slices.Equal(got, []string{"x-env", "x-tenant"}) {
		t.Fatalf("LaneKeys = %v", got)
	}
	ctx, out := hop(p, header("X-Env", "staging", "X-Tenant", "acme", "X-Other", "no"))
	if got := LaneFromContext(ctx).String(); got != "x-env=staging,x-tenant=acme" {
		t.Errorf("lane = %q", got)
	}
	if out.Get("X-Tenant") != "acme" || out.Get("X-Other") != "" {
		t.Errorf("outgoing headers = %v", out)
	}
	if f := p.Fields(); !slices.Contains(f, "traceparent") || !slices.Contains(f, "baggage") || !slices.Contains(f, "x-tenant") || !slices.Contains(f, "x-request-id") {
		t.Errorf("Fields = %v", f)
	}

	many := make([]string, 40)
	for i := range many {
		many[i] = fmt.Sprintf("x-k%02d", i)
	}
	if n := len(New(WithLaneKeys(many...)).LaneKeys()); n != MaxLaneLabels {
		t.Errorf("%d lane keys kept, want %d", n, MaxLaneLabels)
	}
	if got := New().LaneKeys(); !slices.Equal(got, []string{DefaultLaneKey}) {
		t.Errorf("default LaneKeys = %v", got)
	}
}

func TestCodeLaneWithUnconfiguredKey(t *testing.T) {
	p := New()
	ctx := ContextWithLane(context.Background(), mustLane(t, Label{"x-env", "staging"}, Label{"x-canary", "1"}))
	out := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(out))
	if out.Get("X-Canary") != "1" || out.Get("X-Env") != "staging" {
		t.Errorf("headers = %v", out)
	}
	if m := members(t, out); m["lightmesh.lane.x-canary"] != "1" || m["lightmesh.lane.x-env"] != "staging" {
		t.Errorf("baggage = %v", m)
	}
}

func TestTraceContextPropagates(t *testing.T) {
	p := New()
	ctx, out := hop(p, header("Traceparent", inTraceparent, "Tracestate", "vendor=1"))
	if got := TraceIDFromContext(ctx); got != inTraceID {
		t.Errorf("TraceIDFromContext = %q", got)
	}
	if got := out.Get("Traceparent"); got != inTraceparent {
		t.Errorf("outgoing traceparent = %q, want %q", got, inTraceparent)
	}
	if got := out.Get("Tracestate"); got != "vendor=1" {
		t.Errorf("outgoing tracestate = %q", got)
	}
}

func TestRequestIDRoundTrip(t *testing.T) {
	p := New()
	ctx, out := hop(p, header("X-Request-Id", "req-42"))
	if got := RequestIDFromContext(ctx); got != "req-42" {
		t.Errorf("RequestIDFromContext = %q", got)
	}
	if got := out.Get(RequestIDHeader); got != "req-42" {
		t.Errorf("outgoing X-Request-Id = %q", got)
	}
	// An explicit outgoing request id is kept.
	out = header("X-Request-Id", "mine")
	p.Inject(ctx, propagation.HeaderCarrier(out))
	if got := out.Values(RequestIDHeader); len(got) != 1 || got[0] != "mine" {
		t.Errorf("explicit X-Request-Id = %v", got)
	}
	// An id set in code.
	out = http.Header{}
	p.Inject(ContextWithRequestID(context.Background(), "code-1"), propagation.HeaderCarrier(out))
	if got := out.Get(RequestIDHeader); got != "code-1" {
		t.Errorf("X-Request-Id from code = %q", got)
	}
}

// TestRequestIDHeaders: by default X-Trace-Id is read after X-Request-Id
// and the id is sent under both; configured names replace the default, in
// order of preference.
func TestRequestIDHeaders(t *testing.T) {
	p := New()
	if got := p.RequestIDHeaders(); !slices.Equal(got, []string{"X-Request-Id", "X-Trace-Id"}) {
		t.Errorf("default RequestIDHeaders = %v", got)
	}
	ctx, out := hop(p, header("X-Trace-ID", "tid-7"))
	if got := RequestIDFromContext(ctx); got != "tid-7" {
		t.Errorf("id from X-Trace-ID = %q", got)
	}
	if out.Get("X-Request-Id") != "tid-7" || out.Get("X-Trace-Id") != "tid-7" {
		t.Errorf("outgoing = %v, want the id under X-Request-Id and X-Trace-Id", out)
	}
	// Both present: X-Request-Id wins and is sent under both names.
	ctx, out = hop(p, header("X-Trace-Id", "tid-7", "X-Request-Id", "rid-1"))
	if got := RequestIDFromContext(ctx); got != "rid-1" || out.Get("X-Trace-Id") != "rid-1" || out.Get("X-Request-Id") != "rid-1" {
		t.Errorf("both present: id %q, outgoing %v", got, out)
	}
	// Configured names, in order; lane keys that collide are dropped.
	p = New(WithRequestIDHeaders("X-Correlation-ID", "x-request-id", "bad header", "traceparent"), WithLaneKeys("x-env", "x-correlation-id"))
	if got := p.RequestIDHeaders(); !slices.Equal(got, []string{"X-Correlation-Id", "X-Request-Id"}) {
		t.Errorf("configured RequestIDHeaders = %v", got)
	}
	if got := p.LaneKeys(); !slices.Equal(got, []string{"x-env"}) {
		t.Errorf("LaneKeys = %v, want the request-id header dropped", got)
	}
	ctx, out = hop(p, header("X-Request-Id", "rid-2", "X-Trace-Id", "ignored"))
	if got := RequestIDFromContext(ctx); got != "rid-2" {
		t.Errorf("configured: id %q", got)
	}
	if out.Get("X-Correlation-Id") != "rid-2" || out.Get("X-Request-Id") != "rid-2" || out.Get("X-Trace-Id") != "" {
		t.Errorf("configured: outgoing %v", out)
	}
	if f := p.Fields(); !slices.Contains(f, "x-correlation-id") || !slices.Contains(f, "x-request-id") || slices.Contains(f, "x-trace-id") {
		t.Errorf("Fields = %v", f)
	}
}

// TestMapCarrier checks the generic carrier path, as gRPC metadata uses it.
func TestMapCarrier(t *testing.T) {
	p := New()
	in := propagation.MapCarrier{
		"traceparent":  inTraceparent,
		"x-env":        "staging",
		"x-request-id": "r1",
		"baggage":      "user=alice",
	}
	ctx := p.Extract(context.Background(), in)
	out := propagation.MapCarrier{}
	p.Inject(ctx, out)
	if out["x-env"] != "staging" || out["x-request-id"] != "r1" || out["traceparent"] != inTraceparent {
		t.Errorf("out = %v", out)
	}
	b, _ := baggage.Parse(out["baggage"])
	if b.Member("user").Value() != "alice" || b.Member("lightmesh.lane.x-env").Value() != "staging" {
		t.Errorf("out baggage = %q", out["baggage"])
	}
}

func TestNilCarriers(t *testing.T) {
	p := New()
	ctx := ContextWithLane(context.Background(), mustLane(t, Label{"x-env", "staging"}))
	if got := p.Extract(ctx, nil); got != ctx {
		t.Errorf("Extract(nil) changed ctx")
	}
	p.Inject(ctx, nil)
	p.Inject(ctx, propagation.HeaderCarrier(nil))
	var nilHeader http.Header
	if LaneFromContext(p.Extract(context.Background(), propagation.HeaderCarrier(nilHeader))).Len() != 0 {
		t.Errorf("lane from nil header")
	}
}

// fieldsProp is a propagator with the given fields that does nothing.
type fieldsProp []string

func (fieldsProp) Inject(context.Context, propagation.TextMapCarrier) {}
func (fieldsProp) Extract(ctx context.Context, _ propagation.TextMapCarrier) context.Context {
	return ctx
}
func (f fieldsProp) Fields() []string { return f }

func TestResolvePropagator(t *testing.T) {
	tests := []struct {
		name   string
		p      propagation.TextMapPropagator
		global bool
		want   []string
	}{
		{"unset global", propagation.NewCompositeTextMapPropagator(), true, []string{"traceparent", "tracestate", "baggage"}},
		{"global with baggage", fieldsProp{"b3", "baggage"}, true, []string{"b3", "baggage"}},
		{"global without baggage", fieldsProp{"b3"}, true, []string{"b3", "baggage"}},
		{"given without baggage", propagation.TraceContext{}, false, []string{"traceparent", "tracestate", "baggage"}},
		{"given empty", fieldsProp{}, false, []string{"baggage"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolvePropagator(tt.p, tt.global).Fields()
			slices.Sort(got)
			slices.Sort(tt.want)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Fields = %v, want %v", got, tt.want)
			}
		})
	}
	// Out of the box (no global propagator installed) W3C works.
	_, out := hop(New(), header("Traceparent", inTraceparent))
	if out.Get("Traceparent") != inTraceparent {
		t.Errorf("default propagator does not propagate traceparent")
	}
	// A given propagator without baggage still carries the lane member.
	_, out = hop(New(WithPropagator(propagation.TraceContext{})), header("X-Env", "staging"))
	if out.Get("Baggage") != "lightmesh.lane.x-env=staging" {
		t.Errorf("baggage with TraceContext-only propagator = %q", out.Get("Baggage"))
	}
}

func TestMergeRespectsBaggageLimits(t *testing.T) {
	p := New()
	member := func(k, v string) baggage.Member {
		m, err := baggage.NewMemberRaw(k, v)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	bag := func(ms ...baggage.Member) baggage.Baggage {
		b, err := baggage.New(ms...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var sixtyFour []baggage.Member
	for i := range 64 {
		sixtyFour = append(sixtyFour, member(fmt.Sprintf("k%d", i), "v"))
	}
	const long = "staging-with-a-much-longer-name-0123456789"
	tests := []struct {
		name       string
		bag        baggage.Baggage
		value      string
		wantMember string // lane member expected in the outgoing baggage
		wantUser   int    // user (non-lane) members expected
	}{
		{"64 members", bag(sixtyFour...), "staging", "", 64},
		{"63 members plus stale lane member", bag(append(sixtyFour[1:], member("lightmesh.lane.x-env", "old"))...), "staging", "staging", 63},
		{"bytes", bag(member("big1", strings.Repeat("x", 4080)), member("big2", strings.Repeat("y", 4080))), "staging", "", 2},
		{"bytes with stale lane member", bag(member("big1", strings.Repeat("x", 4060)), member("big2", strings.Repeat("y", 4060)), member("lightmesh.lane.x-env", "old")), long, "", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := baggage.ContextWithBaggage(context.Background(), tt.bag)
			ctx = ContextWithLane(ctx, mustLane(t, Label{"x-env", tt.value}))
			out := http.Header{}
			p.Inject(ctx, propagation.HeaderCarrier(out))
			if out.Get("X-Env") != tt.value {
				t.Errorf("lane header = %q", out.Get("X-Env"))
			}
			raw := out.Get("Baggage")
			if len(raw) > 8192 {
				t.Errorf("outgoing baggage is %d bytes", len(raw))
			}
			got, err := baggage.Parse(raw)
			if err != nil {
				t.Fatalf("outgoing baggage does not parse: %v", err)
			}
			if v := got.Member("lightmesh.lane.x-env").Value(); v != tt.wantMember {
				t.Errorf("lane member = %q, want %q", v, tt.wantMember)
			}
			user := got.Len()
			if tt.wantMember != "" {
				user--
			}
			if user != tt.wantUser {
				t.Errorf("user members: got %d, want %d", user, tt.wantUser)
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	p := New(WithMode(ModeSpans), WithLaneKeys("x-env", "x-tenant"))
	in := header("Traceparent", inTraceparent, "X-Env", "staging", "Baggage", "user=alice,lightmesh.lane.x-tenant=acme")
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				ctx, out := hop(p, in)
				if LaneFromContext(ctx).String() != "x-env=staging,x-tenant=acme" || out.Get("X-Tenant") != "acme" {
					t.Errorf("lane %v, out %v", LaneFromContext(ctx), out)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}

func TestSeveralBaggageHeaders(t *testing.T) {
	p := New()
	ctx, out := hop(p, header("Baggage", "user=alice", "Baggage", "lightmesh.lane.x-env=staging"))
	if got := LaneFromContext(ctx).String(); got != "x-env=staging" {
		t.Errorf("lane = %q", got)
	}
	if m := members(t, out); m["user"] != "alice" || m["lightmesh.lane.x-env"] != "staging" {
		t.Errorf("outgoing baggage = %v", m)
	}
	if out.Get("X-Env") != "staging" {
		t.Errorf("outgoing X-Env = %q", out.Get("X-Env"))
	}
}

// TestCallerBaggageHeaderMerged: a baggage header the caller set on the
// outgoing request is merged with the context's baggage and the lane,
// never overwritten; one that does not parse is left as written.
func TestCallerBaggageHeaderMerged(t *testing.T) {
	p := New()
	in := header("X-Env", "staging", "Baggage", "tenant=acme,user=ctx")
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))

	out := header("Baggage", "user=alice,debug=1")
	p.Inject(ctx, propagation.HeaderCarrier(out))
	got := members(t, out)
	want := map[string]string{"user": "alice", "debug": "1", "tenant": "acme", BaggagePrefix + "x-env": "staging"}
	if !maps.Equal(got, want) {
		t.Fatalf("outgoing baggage %v, want %v", got, want)
	}

	broken := header("Baggage", "not a baggage;;")
	p.Inject(ctx, propagation.HeaderCarrier(broken))
	if v := broken.Values("Baggage"); len(v) != 1 || v[0] != "not a baggage;;" {
		t.Fatalf("an unparsable caller baggage header became %q", v)
	}
	if broken.Get("Traceparent") != "" || broken.Get("X-Env") != "staging" {
		t.Fatalf("the rest was not injected: %v", broken)
	}
}

// TestOutgoingHeader: Inject into an OutgoingHeader writes what it writes
// into a HeaderCarrier, takes values from Spare while it lasts, and an
// append to one header's values never overwrites another's.
func TestOutgoingHeader(t *testing.T) {
	p := New()
	in := header("Traceparent", inTraceparent, "X-Env", "staging", "X-Request-Id", "r1")
	ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))
	want := http.Header{}
	p.Inject(ctx, propagation.HeaderCarrier(want))
	for _, spare := range []int{0, 1, 2, 8} {
		values := make([]string, 0, spare)
		o := &OutgoingHeader{Header: http.Header{}, Spare: values}
		p.Inject(ctx, o)
		if !maps.EqualFunc(o.Header, want, slices.Equal) {
			t.Fatalf("spare %d: header = %v, want %v", spare, o.Header, want)
		}
		if used := min(spare, len(want)); len(o.Spare) != used {
			t.Errorf("spare %d: %d values taken from Spare, want %d", spare, len(o.Spare), used)
		}
		for k := range o.Header {
			o.Header[k] = append(o.Header[k], "appended")
		}
		for k, v := range o.Header {
			if len(v) != 2 || v[0] != want.Get(k) {
				t.Errorf("spare %d: after appending to every header, %s = %q", spare, k, v)
			}
		}
	}
	var nilOut *OutgoingHeader
	p.Inject(ctx, nilOut)
	p.Inject(ctx, &OutgoingHeader{})
}

// TestTraceContextAsOtel: the trace context Inject writes itself (for the
// W3C propagator, without baggage) is what otel's TraceContext writes,
// whatever the flags and trace state, into every kind of carrier; into an
// OutgoingHeader that has room it costs no allocation.
func TestTraceContextAsOtel(t *testing.T) {
	ts, err := oteltrace.ParseTraceState("vendor=a,other=b")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Propagator{New(), New(WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))} {
		if !p.w3c {
			t.Fatal("the W3C propagator is not recognised: the test proves nothing")
		}
		for _, flags := range []oteltrace.TraceFlags{0, oteltrace.FlagsSampled, oteltrace.FlagsRandom, 0xff} {
			for _, state := range []oteltrace.TraceState{{}, ts} {
				sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{
					TraceID:    oteltrace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0xff},
					SpanID:     oteltrace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
					TraceFlags: flags, TraceState: state, Remote: true,
				})
				ctx := oteltrace.ContextWithRemoteSpanContext(context.Background(), sc)
				want := propagation.MapCarrier{}
				propagation.TraceContext{}.Inject(ctx, want)
				gotMap := propagation.MapCarrier{}
				p.Inject(ctx, gotMap)
				gotHeader := http.Header{}
				p.Inject(ctx, propagation.HeaderCarrier(gotHeader))
				o := &OutgoingHeader{Header: http.Header{}, Spare: make([]string, 0, 3)}
				p.Inject(ctx, o)
				for _, k := range []string{"traceparent", "tracestate"} {
					if gotMap[k] != want[k] || gotHeader.Get(k) != want[k] || o.Header.Get(k) != want[k] {
						t.Errorf("flags %#x state %q: %s = %q / %q / %q, otel writes %q", byte(flags), state, k, gotMap[k], gotHeader.Get(k), o.Header.Get(k), want[k])
					}
				}
				if n := testing.AllocsPerRun(100, func() {
					o := OutgoingHeader{Header: o.Header, Spare: o.Spare[:0]}
					p.Inject(ctx, &o)
				}); state.Len() == 0 && n != 1 {
					t.Errorf("flags %#x: Inject into an OutgoingHeader allocates %.0f times, want 1 (the carrier)", byte(flags), n)
				}
			}
		}
	}
}
