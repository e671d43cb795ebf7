package mesh_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/floor"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// cannedRT answers every request at once with 200 and an empty body, in
// process: no sockets, so what is measured around it is the SDK's own cost.
type cannedRT struct{}

func (cannedRT) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// BenchmarkOverhead sends requests through m.Transport(cannedRT) beside the
// same RoundTripper called directly, in one run:
//
//   - base: cannedRT alone;
//   - routing: the mesh with routing only (no protection, no metrics,
//     propagation of a request without a trace);
//   - propagate: routing with propagate-only tracing of a sampled parent
//     span: traceparent and the lane's baggage are injected;
//   - full: routing, timeout, retries, service and instance breakers, rate
//     limit, propagation and Prometheus metrics;
//   - floor, floor-trace, floor-full: internal/floor's RoundTripper, the
//     least any RoundTripper must do for routing, propagate and full.
//
// Each request carries X-Env: staging; full and propagate run inside a
// sampled remote parent span, as a service's outgoing calls do.
func BenchmarkOverhead(b *testing.B) {
	inst := []discovery.Instance{{Address: "10.0.0.1:80", Labels: map[string]string{"env": "staging"}}}
	newMeshRT := func(b *testing.B, doc string, opts ...mesh.Option) http.RoundTripper {
		m, err := mesh.New(context.Background(), append([]mesh.Option{
			mesh.WithRules(rules.NewMemory([]byte(doc))),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": inst})),
		}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		return m.Transport(cannedRT{})
	}
	run := func(b *testing.B, rt http.RoundTripper, ctx context.Context, url string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		req.Header.Set("X-Env", "staging")
		b.ReportAllocs()
		for b.Loop() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	b.Run("stack=base", func(b *testing.B) { run(b, cannedRT{}, context.Background(), "http://10.0.0.1:80/") })
	b.Run("stack=routing", func(b *testing.B) {
		run(b, newMeshRT(b, benchRules), context.Background(), "http://svc/")
	})
	b.Run("stack=propagate", func(b *testing.B) {
		run(b, newMeshRT(b, benchRules, mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithMode(trace.ModePropagate))), floor.SampledParent(), "http://svc/")
	})
	b.Run("stack=full", func(b *testing.B) {
		doc := strings.Replace(benchRules, "  svc:\n", "  svc:\n"+benchProtection, 1)
		run(b, newMeshRT(b, doc, mesh.WithRegisterer(prometheus.NewRegistry()), mesh.WithTrace(trace.WithTracerProvider(tp))), floor.SampledParent(), "http://svc/")
	})
	// The floors (internal/floor): what any RoundTripper that sends this
	// request to the instance while keeping the caller's request unchanged
	// must do. floor compares with routing, floor-trace with propagate,
	// floor-full (the same with a timeout, a limiter, two breakers and
	// metrics, from the plain libraries) with full.
	newFloor := func(withTrace bool, p *floor.Protection) http.RoundTripper {
		return &floor.RoundTripper{Base: cannedRT{}, Addr: inst[0].Address, LaneHeader: "X-Env",
			LaneBaggage: trace.BaggagePrefix + "x-env=staging", Trace: withTrace, Protect: p}
	}
	b.Run("stack=floor", func(b *testing.B) {
		run(b, newFloor(false, nil), context.Background(), "http://svc/")
	})
	b.Run("stack=floor-trace", func(b *testing.B) {
		run(b, newFloor(true, nil), floor.SampledParent(), "http://svc/")
	})
	b.Run("stack=floor-full", func(b *testing.B) {
		run(b, newFloor(true, floor.NewProtection(time.Second, prometheus.NewRegistry())), floor.SampledParent(), "http://svc/")
	})
}
