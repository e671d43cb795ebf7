package bench

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/floor"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// routeDoc routes X-Env: staging to the staging subset (the benchmark
// request carries that header) and everything else to base. No
// protection: it measures routing and propagation alone.
const routeDoc = `apiVersion: lightmesh/v1
services:
  svc:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - destinations: [{subset: base}]
`

// protection is the full client-side policy: call timeout, retries with
// a per-try timeout and a budget, a service breaker, per-instance
// breakers (outlier detection) and a rate limit high enough never to
// refuse.
const protection = `    timeout: 2s
    retry: {attempts: 2, perTryTimeout: 1s, budget: 0.2}
    breaker: {minRequests: 20, failureRatio: 0.5}
    outlierDetection: {minRequests: 20, failureRatio: 0.5}
    rateLimit: {rps: 1e12, burst: 1000000000}
`

// fullDoc is routeDoc with protection.
var fullDoc = strings.Replace(routeDoc, "  svc:\n", "  svc:\n"+protection, 1)

// upstream starts the loopback server every request goes to. It answers
// "ok" and reads nothing, so the benchmarks measure the client side.
func upstream(b *testing.B) *httptest.Server {
	b.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
	b.Cleanup(srv.Close)
	return srv
}

// newBase returns the transport every variant sends through: the default
// transport with enough idle connections per host that parallel
// benchmarks reuse connections instead of dialing.
func newBase(b *testing.B) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	b.Cleanup(t.CloseIdleConnections)
	return t
}

// newTracerProvider returns the provider both lightmesh and otelhttp use
// for spans: AlwaysSample and no span processor, so every span is created
// and fully recorded (attributes included) and dropped at End. That is
// the instrumentation's own cost without an export pipeline's.
func newTracerProvider(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp
}

// w3c is the propagator both lightmesh and otelhttp use.
var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// newMesh starts a mesh with doc, the upstream as the one instance of
// service "svc" (labelled env=staging), and opts.
func newMesh(b *testing.B, addr, doc string, opts ...mesh.Option) *mesh.Mesh {
	b.Helper()
	instances := []discovery.Instance{{Address: addr, Labels: map[string]string{"env": "staging"}}}
	m, err := mesh.New(context.Background(), append([]mesh.Option{
		// Quiet: a log line on stderr would split a benchmark's result line.
		mesh.WithLogger(slog.New(slog.DiscardHandler)),
		mesh.WithRules(rules.NewMemory([]byte(doc))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": instances})),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// fullStack is the mesh transport with everything on: routing, the full
// protection policy, propagation (ModePropagate) and Prometheus metrics
// on a registry of its own.
func fullStack(b *testing.B, addr string) http.RoundTripper {
	m := newMesh(b, addr, fullDoc,
		mesh.WithRegisterer(prometheus.NewRegistry()),
		mesh.WithTrace(trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate)))
	return m.Transport(newBase(b))
}

// newFloor returns internal/floor's RoundTripper to addr over a base of its
// own: the least any RoundTripper must do to send newRequest's request the
// way lightmesh does, with its lane and trace and, with p, the full stack's
// timeout, limiter, breakers and metrics.
func newFloor(b *testing.B, addr string, p *floor.Protection) http.RoundTripper {
	return &floor.RoundTripper{Base: newBase(b), Addr: addr, LaneHeader: "X-Env",
		LaneBaggage: trace.BaggagePrefix + "x-env=staging", Trace: true, Protect: p}
}

// newRequest returns the benchmark request: a GET to url with the lane
// header X-Env: staging, in floor.SampledParent(). http.Client does not modify
// it, so one request serves every iteration.
func newRequest(b *testing.B, url string) *http.Request {
	b.Helper()
	req, err := http.NewRequestWithContext(floor.SampledParent(), http.MethodGet, url, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("X-Env", "staging")
	return req
}

// do sends req through client, drains and closes the body.
func do(client *http.Client, req *http.Request) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = &statusError{resp.StatusCode}
	}
	return err
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "unexpected status " + http.StatusText(e.code) }

// serial runs req through rt once per iteration.
func serial(b *testing.B, rt http.RoundTripper, req *http.Request) {
	client := &http.Client{Transport: rt}
	if err := do(client, req); err != nil { // warm the connection up
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := do(client, req); err != nil {
			b.Fatal(err)
		}
	}
}
