package meshgrpc_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/trace"
)

// laneRulesFor is laneRules for another service name.
func laneRulesFor(service string) string {
	return strings.Replace(laneRules, "  echo:", "  "+service+":", 1)
}

// The lane crosses two gRPC hops: a call with x-env: staging to A reaches
// B's staging instance because A's handler calls B with its own context.
func TestLaneAcrossTwoGRPCHops(t *testing.T) {
	bBase, bStaging := grpctest.Start(t, "b-base"), grpctest.Start(t, "b-staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"b": {instance(bBase, "base"), instance(bStaging, "staging")}})
	m, _ := newMesh(t, laneRulesFor("b"), static)
	toB := dial(t, m, "b")
	a := grpctest.Start(t, "a", meshgrpc.ServerOptions(m)...)
	fwd := func(ctx context.Context) (string, error) { return grpctest.Call(ctx, toB) }
	a.Forward.Store(&fwd)
	toA := plainConn(t, a.Addr)
	for _, tc := range []struct{ env, want string }{{"staging", "a>b-staging"}, {"", "a>b-base"}} {
		ctx := context.Background()
		if tc.env != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-env", tc.env)
		}
		name, err := call(ctx, toA)
		if err != nil || name != tc.want {
			t.Fatalf("x-env %q: %q %v, want %s", tc.env, name, err, tc.want)
		}
	}
}

// The lane and the trace cross HTTP → gRPC → HTTP: a request arriving at
// HTTP service A with X-Env: staging and a traceparent reaches the staging
// instance of HTTP service C through gRPC service B, with one trace id.
func TestLaneAcrossHTTPAndGRPC(t *testing.T) {
	var cSaw atomic.Value // the headers C's staging instance received
	cStaging := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cSaw.Store(r.Header.Clone())
		io.WriteString(w, "c-staging")
	}))
	defer cStaging.Close()
	cBase := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "c-base") }))
	defer cBase.Close()
	bStaging := grpctest.Start(t, "b-staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{
		"b": {instance(bStaging, "staging")},
		"c": {{Address: strings.TrimPrefix(cBase.URL, "http://"), Labels: map[string]string{"env": "base"}},
			{Address: strings.TrimPrefix(cStaging.URL, "http://"), Labels: map[string]string{"env": "staging"}}},
	})
	doc := "apiVersion: lightmesh/v1\nservices:\n" + strings.SplitN(laneRulesFor("b"), "services:\n", 2)[1] + strings.SplitN(laneRulesFor("c"), "services:\n", 2)[1]
	m, _ := newMesh(t, doc, static)
	// B: a gRPC server whose handler calls C over HTTP with its context.
	httpClient := &http.Client{Transport: m.Transport(nil)}
	b := grpctest.Start(t, "b", meshgrpc.ServerOptions(m)...)
	static.Set("b", []discovery.Instance{{Address: b.Addr, Labels: map[string]string{"env": "staging"}}})
	meshtest.WaitFor(t, 5*time.Second, "b's new address", func() bool {
		in := m.Table().Instances("b", "staging")
		return len(in) == 1 && in[0].Address == b.Addr
	})
	fwd := func(ctx context.Context) (string, error) { return meshtest.Get(ctx, httpClient, "http://c/", nil) }
	b.Forward.Store(&fwd)
	// A: an HTTP handler calling B over gRPC with its request's context.
	toB := dial(t, m, "b")
	a := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, err := grpctest.Call(r.Context(), toB)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, "a>"+name)
	})))
	defer a.Close()

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	body, err := meshtest.Get(context.Background(), http.DefaultClient, a.URL, map[string]string{
		"X-Env": "staging", "Traceparent": "00-" + traceID + "-00f067aa0ba902b7-01",
	})
	if err != nil || body != "a>b>c-staging" {
		t.Fatalf("chain answered %q, %v; want a>b>c-staging", body, err)
	}
	h, _ := cSaw.Load().(http.Header)
	if h.Get("X-Env") != "staging" || !strings.Contains(h.Get("Traceparent"), traceID) {
		t.Fatalf("C saw X-Env %q traceparent %q, want the lane and trace %s", h.Get("X-Env"), h.Get("Traceparent"), traceID)
	}
}

// With otelgrpc's stats handlers on both sides and lightmesh in its
// default propagate mode, each call has exactly one client and one server
// span, in one trace, and the client span carries lightmesh's routing
// attributes. In span mode the server still makes one server span.
func TestOtelgrpcInterop(t *testing.T) {
	for _, mode := range []trace.Mode{trace.ModePropagate, trace.ModeSpans} {
		t.Run("server mode="+mode.String(), func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			defer tp.Shutdown(context.Background())
			prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
			otelOpts := []otelgrpc.Option{otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop)}

			serverMesh := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
				return mesh.New(ctx, mesh.WithLocalService("echo"), mesh.WithTrace(trace.WithMode(mode), trace.WithTracerProvider(tp), trace.WithPropagator(prop)))
			})
			s := grpctest.Start(t, "s", append(meshgrpc.ServerOptions(serverMesh), grpc.StatsHandler(otelgrpc.NewServerHandler(otelOpts...)))...)
			static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: s.Addr}}})
			m, _ := newMesh(t, echoDoc(""), static, mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithPropagator(prop)))
			conn := dial(t, m, "echo", grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelOpts...)))
			if _, err := call(context.Background(), conn); err != nil {
				t.Fatal(err)
			}
			meshtest.WaitFor(t, 5*time.Second, "the spans", func() bool { return len(rec.Ended()) >= 2 })
			spans := rec.Ended()
			var client, server int
			var clientSpan sdktrace.ReadOnlySpan
			for _, sp := range spans {
				switch sp.SpanKind().String() {
				case "client":
					client++
					clientSpan = sp
				case "server":
					server++
				}
				if sp.SpanContext().TraceID() != spans[0].SpanContext().TraceID() {
					t.Fatalf("spans in two traces: %v", spans)
				}
			}
			if server != 1 || client != 1 {
				t.Fatalf("%d client and %d server spans, want one each", client, server)
			}
			attrs := map[string]string{}
			for _, kv := range clientSpan.Attributes() {
				attrs[string(kv.Key)] = kv.Value.Emit()
			}
			if attrs["lightmesh.service"] != "echo" || attrs["lightmesh.instance"] != s.Addr {
				t.Fatalf("client span attributes %v lack lightmesh's routing attributes", attrs)
			}
		})
	}
}

// TestCallerSpanKeepsItsAttributes: a call made inside the caller's own
// recording span (an HTTP handler's server span, say) leaves that span as
// it was: lightmesh's routing attributes belong on a span of the call
// (otelgrpc's, or lightmesh's own in span mode), never on the caller's,
// which would show the attributes of whichever of its outgoing calls
// picked last.
func TestCallerSpanKeepsItsAttributes(t *testing.T) {
	for _, mode := range []trace.Mode{trace.ModePropagate, trace.ModeSpans} {
		t.Run("mode="+mode.String(), func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			defer tp.Shutdown(context.Background())
			s := grpctest.Start(t, "s")
			m, _ := newMesh(t, echoDoc(""), staticOf(s), mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithMode(mode)))
			conn := dial(t, m, "echo")
			ctx, span := tp.Tracer("app").Start(context.Background(), "GET /checkout", oteltrace.WithSpanKind(oteltrace.SpanKindServer))
			if _, err := call(ctx, conn); err != nil {
				t.Fatal(err)
			}
			span.End()
			var callSpans int
			for _, sp := range rec.Ended() {
				attrs := map[string]string{}
				for _, kv := range sp.Attributes() {
					attrs[string(kv.Key)] = kv.Value.Emit()
				}
				if sp.Name() == "GET /checkout" {
					for k, v := range attrs {
						if strings.HasPrefix(k, "lightmesh.") {
							t.Fatalf("the caller's span got %s=%s from its outgoing call", k, v)
						}
					}
					continue
				}
				callSpans++
				if attrs["lightmesh.service"] != "echo" || attrs["lightmesh.instance"] != s.Addr {
					t.Fatalf("the call's span %q has %v, want lightmesh's routing attributes", sp.Name(), attrs)
				}
			}
			if want := map[trace.Mode]int{trace.ModePropagate: 0, trace.ModeSpans: 1}[mode]; callSpans != want {
				t.Fatalf("%d spans of the call, want %d", callSpans, want)
			}
		})
	}
}

// TestTracingInterceptorOrder: a tracing client interceptor's span gets
// lightmesh's routing attributes when the interceptor runs after the
// mesh's (chained after DialOptions); one that runs before it
// (grpc.WithUnaryInterceptor, which grpc-go always runs first) is the
// caller's span to the mesh, and gets none, as the README says.
func TestTracingInterceptorOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opt   func(grpc.UnaryClientInterceptor) grpc.DialOption
		wants bool
	}{
		{"chained after DialOptions", func(i grpc.UnaryClientInterceptor) grpc.DialOption { return grpc.WithChainUnaryInterceptor(i) }, true},
		{"WithUnaryInterceptor", grpc.WithUnaryInterceptor, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			defer tp.Shutdown(context.Background())
			s := grpctest.Start(t, "s")
			m, _ := newMesh(t, echoDoc(""), staticOf(s), mesh.WithTrace(trace.WithTracerProvider(tp)))
			tracing := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				ctx, sp := tp.Tracer("tracing").Start(ctx, "grpc.client", oteltrace.WithSpanKind(oteltrace.SpanKindClient))
				defer sp.End()
				return invoker(ctx, method, req, reply, cc, opts...)
			}
			conn := dial(t, m, "echo", tc.opt(tracing))
			if _, err := call(context.Background(), conn); err != nil {
				t.Fatal(err)
			}
			ended := rec.Ended()
			if len(ended) != 1 {
				t.Fatalf("%d spans ended, want the interceptor's", len(ended))
			}
			var got string
			for _, kv := range ended[0].Attributes() {
				if kv.Key == "lightmesh.instance" {
					got = kv.Value.AsString()
				}
			}
			if tc.wants && got != s.Addr || !tc.wants && got != "" {
				t.Fatalf("the interceptor's span has lightmesh.instance %q; want it: %v", got, tc.wants)
			}
		})
	}
}
