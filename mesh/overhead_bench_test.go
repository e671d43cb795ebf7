package mesh_test

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/lightmesh/lightmesh/discovery"
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
//     limit, propagation and Prometheus metrics.
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
		run(b, newMeshRT(b, benchRules, mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithMode(trace.ModePropagate))), sampledParent(), "http://svc/")
	})
	b.Run("stack=full", func(b *testing.B) {
		doc := strings.Replace(benchRules, "  svc:\n", "  svc:\n"+benchProtection, 1)
		run(b, newMeshRT(b, doc, mesh.WithRegisterer(prometheus.NewRegistry()), mesh.WithTrace(trace.WithTracerProvider(tp))), sampledParent(), "http://svc/")
	})
	// The floor: what any RoundTripper that sends this request to the
	// instance while keeping the caller's request unchanged must do (see
	// floorRT). floor compares with routing, floor-trace with propagate
	// and full.
	b.Run("stack=floor", func(b *testing.B) {
		run(b, floorRT{base: cannedRT{}, addr: inst[0].Address}, context.Background(), "http://svc/")
	})
	b.Run("stack=floor-trace", func(b *testing.B) {
		run(b, floorRT{base: cannedRT{}, addr: inst[0].Address, trace: true}, sampledParent(), "http://svc/")
	})
}

// floorRT is the least a contract-respecting RoundTripper must do to send
// BenchmarkOverhead's request to an instance with its lane and trace: a
// shallow copy of the request and its URL with the instance's address as
// host (one allocation, as small as can be), a copy of the header map
// (the caller's must not change) with the lane's baggage and, with trace,
// a traceparent encoded from the context's span context into the same
// allocation. It routes nothing, looks nothing up and knows the lane's
// baggage value in advance: everything the mesh does beyond it is the
// mesh's own cost.
type floorRT struct {
	base  http.RoundTripper
	addr  string
	trace bool
}

// floorLaneBaggage is the baggage value of the X-Env: staging lane.
const floorLaneBaggage = "lightmesh.lane.x-env=staging"

func (f floorRT) RoundTrip(req *http.Request) (*http.Response, error) {
	out := new(struct {
		req  http.Request
		url  url.URL
		vals [2]string
		tp   [55]byte
	})
	out.req = *req
	out.url = *req.URL
	out.url.Host = f.addr
	out.req.URL = &out.url
	if out.req.Host == "" {
		out.req.Host = req.URL.Host
	}
	h := make(http.Header, len(req.Header)+2)
	for k, v := range req.Header {
		h[k] = v[:len(v):len(v)]
	}
	if len(req.Header["X-Env"]) > 0 {
		out.vals[0] = floorLaneBaggage
		h["Baggage"] = out.vals[0:1:1]
	}
	if f.trace {
		if sc := oteltrace.SpanContextFromContext(req.Context()); sc.IsValid() {
			tid, sid := sc.TraceID(), sc.SpanID()
			tp := out.tp[:]
			copy(tp, "00-")
			hex.Encode(tp[3:35], tid[:])
			tp[35] = '-'
			hex.Encode(tp[36:52], sid[:])
			copy(tp[52:], "-01")
			out.vals[1] = unsafe.String(&tp[0], len(tp)) // out is never reused
			h["Traceparent"] = out.vals[1:2:2]
		}
	}
	out.req.Header = h
	return f.base.RoundTrip(&out.req)
}

// sampledParent is the context of a call made inside a sampled server
// span: it carries a remote sampled span context.
func sampledParent() context.Context {
	sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{
		TraceID:    oteltrace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     oteltrace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: oteltrace.FlagsSampled,
		Remote:     true,
	})
	return oteltrace.ContextWithRemoteSpanContext(context.Background(), sc)
}
