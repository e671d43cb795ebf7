package bench

import (
	"context"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/internal/floor"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/trace"
)

// A pairedVariant is one way of making the benchmark's call, timed in
// turn with the other ways by paired.
type pairedVariant struct {
	name  string
	call  func() error
	turns []time.Duration // one per iteration
}

// pairedTurn is how many calls a variant makes in a row in paired: enough
// that its code and connection are as warm as in a benchmark of its own,
// few enough (a few milliseconds) that the machine does not drift within
// one iteration.
const pairedTurn = 32

// paired makes pairedTurn calls of every variant per iteration, the
// variants in a new random order each iteration, and times each turn. It
// reports, per call, the median turn of the first variant, the baseline
// (<name>-µs), and for every other variant the median over iterations of
// how much longer its turn took than the baseline's in the same iteration
// (<name>-added-µs). PAIRED_ONLY=lightmesh-full,otelhttp (a
// comma-separated list of names) keeps only the baseline and the variants
// named; a name that matches no variant fails the benchmark.
//
// Why paired: on a shared VM the time of one loopback call drifts by
// ±20-40% within a minute, so variants measured one after the other (as
// -count runs sub-benchmarks) differ by the drift more than by what they
// do. Turns of every variant made alternately see the same machine; the
// random order keeps any variant from always following the same one
// (whose server side may still be finishing). Why medians: a stall of the
// VM (several ms, now and then) lands in one variant's turn and would move
// that variant's mean by microseconds; the median of the differences is
// what a typical iteration showed. The garbage collector's cost is not
// spread evenly: its mark assists are charged to the goroutine
// allocating, so the variant allocating most pays most, and the median
// leaves out collections that fall in fewer than half the turns; the
// allocation figures of the unpaired benchmarks (BenchmarkTransport,
// BenchmarkGRPC) show what a variant allocates.
func paired(b *testing.B, variants []*pairedVariant) {
	start := time.Now()
	wall := func() time.Duration { return time.Since(start) }
	perCall := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / pairedTurn / 1e3 }
	pairedBy(b, variants, pairedTurn, wall, perCall, "µs")
}

// pairedBy is paired with turns of turn calls, each turn measured by how
// far clock moved (the wall clock for paired, the process's CPU time for
// BenchmarkCPUPaired), and reported per call by perCall in unit.
func pairedBy(b *testing.B, variants []*pairedVariant, turn int, clock func() time.Duration, perCall func(time.Duration) float64, unit string) {
	if only := os.Getenv("PAIRED_ONLY"); only != "" {
		keep := []*pairedVariant{variants[0]} // the baseline, which every other is reported against
		for name := range strings.SplitSeq(only, ",") {
			i := slices.IndexFunc(variants, func(v *pairedVariant) bool { return v.name == name })
			if i < 0 {
				b.Fatalf("PAIRED_ONLY: no variant %q", name)
			}
			if i > 0 && !slices.Contains(keep, variants[i]) {
				keep = append(keep, variants[i])
			}
		}
		variants = keep
	}
	for _, v := range variants { // warm every connection up
		if err := v.call(); err != nil {
			b.Fatalf("%s: %v", v.name, err)
		}
		v.turns = v.turns[:0]
	}
	order := make([]*pairedVariant, len(variants))
	copy(order, variants)
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, v := range order {
			t0 := clock()
			for range turn {
				if err := v.call(); err != nil {
					b.Fatalf("%s: %v", v.name, err)
				}
			}
			v.turns = append(v.turns, clock()-t0)
		}
	}
	base := variants[0]
	b.ReportMetric(0, "ns/op") // an iteration's time means nothing here
	b.ReportMetric(perCall(median(base.turns)), base.name+"-"+unit)
	diffs := make([]time.Duration, len(base.turns))
	for _, v := range variants[1:] {
		for i := range diffs {
			diffs[i] = v.turns[i] - base.turns[i]
		}
		b.ReportMetric(perCall(median(diffs)), v.name+"-added-"+unit)
	}
}

// median returns the median of ds, leaving ds as it is.
func median(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	if n := len(ds); n%2 == 0 {
		return (ds[n/2-1] + ds[n/2]) / 2
	}
	return ds[len(ds)/2]
}

// BenchmarkPairedTransport is BenchmarkTransport's loopback GET made by
// every variant in turn within each iteration (see paired): bare,
// bare-again (the same again: what it adds is the method's noise),
// bare-meshheaders, the floors (internal/floor: what any RoundTripper must
// do to send the request the way lightmesh does, with its trace, and in
// floor-full with the full stack's timeout, limiter, breakers and metrics
// from the plain libraries), lightmesh-propagate, lightmesh-spans,
// lightmesh-full and otelhttp, each through its own http.Transport to the
// same upstream.
func BenchmarkPairedTransport(b *testing.B) {
	srv := upstream(b)
	addr := strings.TrimPrefix(srv.URL, "http://")
	via := func(rt http.RoundTripper, req *http.Request) func() error {
		client := &http.Client{Transport: rt}
		return func() error { return do(client, req) }
	}
	meshHeaders := newRequest(b, srv.URL+"/")
	meshHeaders.Host = "svc"
	meshHeaders.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	meshHeaders.Header.Set("Baggage", trace.BaggagePrefix+"x-env=staging")
	propagate := newMesh(b, addr, routeDoc, mesh.WithTrace(
		trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate)))
	spans := newMesh(b, addr, routeDoc, mesh.WithTrace(
		trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModeSpans)))
	otel := otelhttp.NewTransport(newBase(b),
		otelhttp.WithTracerProvider(newTracerProvider(b)),
		otelhttp.WithPropagators(w3c),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
	paired(b, []*pairedVariant{
		{name: "bare", call: via(newBase(b), newRequest(b, srv.URL+"/"))},
		{name: "bare-again", call: via(newBase(b), newRequest(b, srv.URL+"/"))},
		{name: "bare-meshheaders", call: via(newBase(b), meshHeaders)},
		{name: "floor-trace", call: via(newFloor(b, addr, nil), newRequest(b, "http://svc/"))},
		{name: "floor-full", call: via(newFloor(b, addr, floor.NewProtection(time.Second, prometheus.NewRegistry())), newRequest(b, "http://svc/"))},
		{name: "lightmesh-propagate", call: via(propagate.Transport(newBase(b)), newRequest(b, "http://svc/"))},
		{name: "lightmesh-spans", call: via(spans.Transport(newBase(b)), newRequest(b, "http://svc/"))},
		{name: "lightmesh-full", call: via(fullStack(b, addr), newRequest(b, "http://svc/"))},
		{name: "otelhttp", call: via(otel, newRequest(b, srv.URL+"/"))},
	})
}

// BenchmarkPairedGRPC is BenchmarkGRPC's unary call made by every variant
// in turn within each iteration (see paired): bare, bare-again (the same
// again: what it adds is the method's noise), bare-meshmetadata,
// the floors (internal/floor: the least interceptor that sends the lane and
// trace the way lightmesh does, and in floor-full the full stack's
// limiter, breakers and metrics from the plain libraries),
// lightmesh-propagate, lightmesh-spans, lightmesh-full and otelgrpc, each
// on its own ClientConn to the same server.
func BenchmarkPairedGRPC(b *testing.B) {
	addr := grpcUpstream(b)
	ctx := metadata.AppendToOutgoingContext(floor.SampledParent(), "x-env", "staging")
	req := &healthpb.HealthCheckRequest{}
	check := func(conn *grpc.ClientConn) func() error {
		client := healthpb.NewHealthClient(conn)
		return func() error { _, err := client.Check(ctx, req); return err }
	}
	dialMesh := func(doc string, opts ...mesh.Option) *grpc.ClientConn {
		return dialGRPC(b, "lightmesh:///svc", meshgrpc.DialOptions(newMesh(b, addr, doc, opts...))...)
	}
	meshMetadata := grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "baggage", trace.BaggagePrefix+"x-env=staging")
		return invoker(ctx, method, req, reply, cc, opts...)
	})
	paired(b, []*pairedVariant{
		{name: "bare", call: check(dialGRPC(b, addr))},
		{name: "bare-again", call: check(dialGRPC(b, addr))},
		{name: "bare-meshmetadata", call: check(dialGRPC(b, addr, meshMetadata))},
		{name: "floor-propagate", call: check(dialFloor(b, addr, nil))},
		{name: "floor-full", call: check(dialFloor(b, addr, floor.NewProtection(0, prometheus.NewRegistry())))},
		{name: "lightmesh-propagate", call: check(dialMesh(routeDoc, mesh.WithTrace(
			trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate))))},
		{name: "lightmesh-spans", call: check(dialMesh(routeDoc, mesh.WithTrace(
			trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModeSpans))))},
		{name: "lightmesh-full", call: check(dialMesh(grpcFullDoc, mesh.WithRegisterer(prometheus.NewRegistry()),
			mesh.WithTrace(trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate))))},
		{name: "otelgrpc", call: check(dialGRPC(b, addr, grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(newTracerProvider(b)), otelgrpc.WithPropagators(w3c), otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider())))))},
	})
}
