package trace

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// sampledProvider records every span and exports nowhere, so the benchmark
// measures span creation and propagation, not an exporter.
func sampledProvider(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp
}

// incoming is a typical request of a staging lane: sampled trace, lane as
// header and baggage, a user baggage member and a request id.
func incoming() http.Header {
	return header(
		"Traceparent", inTraceparent,
		"X-Env", "staging",
		"Baggage", "lightmesh.lane.x-env=staging,user=alice",
		"X-Request-Id", "3f2c9a",
	)
}

func BenchmarkInject(b *testing.B) {
	b.Run("empty ctx propagate mode", func(b *testing.B) {
		p := New()
		ctx := context.Background()
		h := http.Header{}
		b.ReportAllocs()
		for b.Loop() {
			p.Inject(ctx, propagation.HeaderCarrier(h))
		}
	})
	b.Run("otel W3C baseline empty ctx", func(b *testing.B) {
		prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		ctx := context.Background()
		h := http.Header{}
		b.ReportAllocs()
		for b.Loop() {
			prop.Inject(ctx, propagation.HeaderCarrier(h))
		}
	})
	for _, tc := range []struct {
		name string
		in   http.Header
	}{
		// Lane already in the incoming baggage: no baggage rewrite needed.
		{"lane+sampled span", incoming()},
		// Lane only as a header: the lane member is added to the baggage.
		{"lane header only+sampled span", header("Traceparent", inTraceparent, "X-Env", "staging")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := New(WithMode(ModeSpans), WithTracerProvider(sampledProvider(b)))
			ctx := p.Extract(context.Background(), propagation.HeaderCarrier(tc.in))
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://user-api/users/1", nil)
			ctx, span := p.StartClient(ctx, req)
			defer span.End()
			h := make(http.Header, 8)
			b.ReportAllocs()
			for b.Loop() {
				clear(h)
				p.Inject(ctx, propagation.HeaderCarrier(h))
			}
		})
	}
	// The mesh's case: the caller's header is shared until the first Set
	// copies it, with one or six headers of the caller's own.
	for _, n := range []int{1, 6} {
		b.Run(fmt.Sprintf("shared header, lane header, %d caller headers", n), func(b *testing.B) {
			p := New()
			in := header("X-Env", "staging", "Accept", "application/json", "User-Agent", "bench/1", "Authorization", "Bearer x", "Accept-Encoding", "gzip", "X-Tenant", "t1")
			for len(in) > n {
				for k := range in {
					if k != "X-Env" {
						delete(in, k)
						break
					}
				}
			}
			var values [3]string
			b.ReportAllocs()
			for b.Loop() {
				o := OutgoingHeader{Header: in, Spare: values[:0], Shared: true}
				p.Inject(context.Background(), &o)
			}
		})
	}
	// The mesh's full case: the caller's header holds only the lane, and
	// the call is made inside a sampled remote parent, so the traceparent
	// and the lane's baggage are added.
	b.Run("shared header, lane header, sampled parent", func(b *testing.B) {
		p := New(WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))
		ctx := p.Extract(context.Background(), propagation.HeaderCarrier(header("Traceparent", inTraceparent)))
		in := header("X-Env", "staging")
		b.ReportAllocs()
		for b.Loop() {
			var values [3]string
			o := OutgoingHeader{Header: in, Spare: values[:0], Shared: true}
			p.Inject(ctx, &o)
		}
	})
	b.Run("otel W3C baseline sampled span", func(b *testing.B) {
		prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		p := New(WithMode(ModeSpans), WithTracerProvider(sampledProvider(b)))
		ctx := p.Extract(context.Background(), propagation.HeaderCarrier(incoming()))
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://user-api/users/1", nil)
		ctx, span := p.StartClient(ctx, req)
		defer span.End()
		h := make(http.Header, 8)
		b.ReportAllocs()
		for b.Loop() {
			clear(h)
			prop.Inject(ctx, propagation.HeaderCarrier(h))
		}
	})
}

func BenchmarkExtract(b *testing.B) {
	b.Run("empty ctx propagate mode", func(b *testing.B) {
		p := New()
		ctx := context.Background()
		h := http.Header{"Accept": {"*/*"}, "User-Agent": {"bench"}}
		b.ReportAllocs()
		for b.Loop() {
			p.Extract(ctx, propagation.HeaderCarrier(h))
		}
	})
	b.Run("otel W3C baseline empty", func(b *testing.B) {
		prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		ctx := context.Background()
		h := http.Header{"Accept": {"*/*"}, "User-Agent": {"bench"}}
		b.ReportAllocs()
		for b.Loop() {
			prop.Extract(ctx, propagation.HeaderCarrier(h))
		}
	})
	b.Run("lane+sampled span", func(b *testing.B) {
		p := New(WithMode(ModeSpans), WithTracerProvider(sampledProvider(b)))
		ctx := context.Background()
		h := incoming()
		b.ReportAllocs()
		for b.Loop() {
			p.Extract(ctx, propagation.HeaderCarrier(h))
		}
	})
	b.Run("otel W3C baseline sampled", func(b *testing.B) {
		prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
		ctx := context.Background()
		h := incoming()
		b.ReportAllocs()
		for b.Loop() {
			prop.Extract(ctx, propagation.HeaderCarrier(h))
		}
	})
}

func BenchmarkLaneFromContext(b *testing.B) {
	l, _ := NewLane(Label{"x-env", "staging"})
	ctx := ContextWithLane(context.Background(), l)
	ctx = ContextWithRequestID(ctx, "r1") // a value above the lane, as in a request
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n += LaneFromContext(ctx).Len()
	}
	_ = n
}

func BenchmarkLaneGet(b *testing.B) {
	l, _ := NewLane(Label{"x-env", "staging"}, Label{"x-tenant", "acme"}, Label{"x-user", "u1"})
	b.ReportAllocs()
	var n int
	for b.Loop() {
		v, _ := l.Get("x-user")
		n += len(v)
	}
	_ = n
}

// BenchmarkHop is a server hop as mesh runs it in propagate mode: Extract
// the incoming request, Inject into the outgoing one.
func BenchmarkHop(b *testing.B) {
	p := New()
	in := incoming()
	out := make(http.Header, 8)
	b.ReportAllocs()
	for b.Loop() {
		ctx := p.Extract(context.Background(), propagation.HeaderCarrier(in))
		clear(out)
		p.Inject(ctx, propagation.HeaderCarrier(out))
	}
}

func TestZeroAllocs(t *testing.T) {
	p := New()
	bg := context.Background()
	empty := http.Header{"Accept": {"*/*"}}
	l, _ := NewLane(Label{"x-env", "staging"})
	lctx := ContextWithLane(bg, l)
	emptyMap := propagation.MapCarrier{}
	for name, f := range map[string]func(){
		"Inject empty ctx":  func() { p.Inject(bg, propagation.HeaderCarrier(empty)) },
		"Extract empty":     func() { p.Extract(bg, propagation.HeaderCarrier(empty)) },
		"Extract map empty": func() { p.Extract(bg, emptyMap) },
		"LaneFromContext":   func() { LaneFromContext(lctx) },
		"Lane.Get":          func() { l.Get("x-env") },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %.0f allocs, want 0", name, n)
		}
	}
}
