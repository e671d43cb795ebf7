package bench

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/lightmesh/lightmesh/internal/floor"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/trace"
)

// BenchmarkTransport sends one real loopback GET per iteration, in one
// run so that benchstat puts the variants side by side:
//
//   - bare: a plain http.Transport to the upstream's address;
//   - bare-meshheaders: the same with the headers the mesh adds
//     (traceparent, baggage with the lane, Host: svc), sent bare;
//   - lightmesh=propagate: the mesh Transport with routing only (no
//     protection, no metrics), trace.ModePropagate;
//   - lightmesh=spans: the same in trace.ModeSpans (a client span per
//     call);
//   - lightmesh=full: routing, timeout, retry policy, service and
//     instance breakers, rate limit, propagation and Prometheus metrics;
//   - floor-trace, floor-full: internal/floor's RoundTripper, the least any
//     RoundTripper must do to send the request as lightmesh-propagate and
//     lightmesh-full do (see newFloor);
//   - otelhttp: otelhttp.NewTransport over the same kind of base, with the
//     same tracer provider and propagator and a no-op meter provider.
//
// Every variant sends the same request (X-Env: staging, inside a sampled
// remote parent span) through its own http.Transport clone. The tracer
// provider samples everything and has no span processor, so spans are
// fully recorded and then dropped.
func BenchmarkTransport(b *testing.B) {
	srv := upstream(b)
	addr := strings.TrimPrefix(srv.URL, "http://")

	b.Run("rt=bare", func(b *testing.B) {
		serial(b, newBase(b), newRequest(b, srv.URL+"/"))
	})
	b.Run("rt=bare-meshheaders", func(b *testing.B) {
		// What the mesh puts on the wire, sent bare: the floor of
		// propagation's cost (the server parses two more headers).
		req := newRequest(b, srv.URL+"/")
		req.Host = "svc"
		req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
		req.Header.Set("Baggage", trace.BaggagePrefix+"x-env=staging")
		serial(b, newBase(b), req)
	})
	b.Run("rt=lightmesh-propagate", func(b *testing.B) {
		m := newMesh(b, addr, routeDoc, mesh.WithTrace(
			trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate)))
		serial(b, m.Transport(newBase(b)), newRequest(b, "http://svc/"))
	})
	b.Run("rt=lightmesh-spans", func(b *testing.B) {
		m := newMesh(b, addr, routeDoc, mesh.WithTrace(
			trace.WithTracerProvider(newTracerProvider(b)), trace.WithPropagator(w3c), trace.WithMode(trace.ModeSpans)))
		serial(b, m.Transport(newBase(b)), newRequest(b, "http://svc/"))
	})
	b.Run("rt=lightmesh-full", func(b *testing.B) {
		serial(b, fullStack(b, addr), newRequest(b, "http://svc/"))
	})
	b.Run("rt=floor-trace", func(b *testing.B) {
		serial(b, newFloor(b, addr, nil), newRequest(b, "http://svc/"))
	})
	b.Run("rt=floor-full", func(b *testing.B) {
		serial(b, newFloor(b, addr, floor.NewProtection(time.Second, prometheus.NewRegistry())), newRequest(b, "http://svc/"))
	})
	b.Run("rt=otelhttp", func(b *testing.B) {
		rt := otelhttp.NewTransport(newBase(b),
			otelhttp.WithTracerProvider(newTracerProvider(b)),
			otelhttp.WithPropagators(w3c),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
		serial(b, rt, newRequest(b, srv.URL+"/"))
	})
}

// BenchmarkThroughput sends loopback GETs from many goroutines at once
// (4 per GOMAXPROCS) through a bare http.Transport, through the full
// lightmesh stack and through its floor (internal/floor: the same work
// from the plain libraries). ns/op is the inverse of throughput; req/s is reported
// too. Run it with -cpu 1,2: client and server share the machine's cores.
func BenchmarkThroughput(b *testing.B) {
	srv := upstream(b)
	addr := strings.TrimPrefix(srv.URL, "http://")
	parallel := func(b *testing.B, rt http.RoundTripper, req *http.Request) {
		client := &http.Client{Transport: rt}
		if err := do(client, req); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := do(client, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	}
	b.Run("rt=bare", func(b *testing.B) {
		parallel(b, newBase(b), newRequest(b, srv.URL+"/"))
	})
	b.Run("rt=lightmesh-full", func(b *testing.B) {
		parallel(b, fullStack(b, addr), newRequest(b, "http://svc/"))
	})
	b.Run("rt=floor-full", func(b *testing.B) {
		parallel(b, newFloor(b, addr, floor.NewProtection(time.Second, prometheus.NewRegistry())), newRequest(b, "http://svc/"))
	})
}
