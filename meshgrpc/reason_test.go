package meshgrpc_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/codes"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/trace"
)

// In span mode the client span of a gRPC call the mesh failed or refused
// says why in lightmesh.reason, as over HTTP; a success says nothing.
func TestSpanReason(t *testing.T) {
	s := grpctest.Start(t, "s")
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	m, src := newMesh(t, echoDoc("    timeout: 100ms\n    retry: {attempts: 1, backoff: 1ms}\n"), staticOf(s),
		mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithMode(trace.ModeSpans)))
	conn := dial(t, m, "echo")
	reason := func() string {
		t.Helper()
		spans := rec.Ended()
		if len(spans) == 0 {
			t.Fatal("no span")
		}
		for _, kv := range spans[len(spans)-1].Attributes() {
			if kv.Key == attribute.Key("lightmesh.reason") {
				return kv.Value.AsString()
			}
		}
		return ""
	}
	if _, err := call(context.Background(), conn); err != nil || reason() != "" {
		t.Fatalf("success: %v, reason %q", err, reason())
	}
	s.Delay.Store(int64(time.Second))
	if _, err := call(context.Background(), conn); err == nil || reason() != "timeout" {
		t.Fatalf("slow server: %v, reason %q, want timeout", err, reason())
	}
	s.Delay.Store(0)
	s.Code.Store(uint32(codes.Unavailable))
	if _, err := call(context.Background(), conn); err == nil || reason() != "retries_exhausted" {
		t.Fatalf("unavailable, retried once: %v, reason %q, want retries_exhausted", err, reason())
	}
	before := m.Status().Rules.Version
	src.Set([]byte(echoDoc("    rateLimit: {rps: 0.001, burst: 1}\n")))
	meshtest.WaitFor(t, 5*time.Second, "the new rules", func() bool { return m.Status().Rules.Version != before })
	call(context.Background(), conn) // the one token: Unavailable without retries
	if got := reason(); got != "upstream_failure" {
		t.Fatalf("unavailable, not retried: reason %q, want upstream_failure", got)
	}
	if _, err := call(context.Background(), conn); err == nil || reason() != "rate_limited" {
		t.Fatalf("over the limit: %v, reason %q, want rate_limited", err, reason())
	}
}
