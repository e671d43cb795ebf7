package meshgrpc_test

// What a caller, the metrics and the breakers see of deadlines,
// cancellations and grpc.OnFinish.

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// Bug 5: when the call's timeout or the caller's cancellation ends a
// retry's backoff, the caller gets DeadlineExceeded or Canceled, as
// grpc-go reports them, not Unknown; the metric says the same.
func TestBackoffEndedByDeadlineOrCancel(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Code.Store(uint32(codes.Unavailable))
	reg := prometheus.NewRegistry()
	m, _ := newMesh(t, echoDoc("    timeout: 300ms\n    retry: {attempts: 3, backoff: 2s, budget: 1}\n"), staticOf(s), mesh.WithRegisterer(reg))
	conn := dial(t, m, "echo")
	if _, err := call(context.Background(), conn); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("the call's timeout during the backoff: %v (code %v), want DeadlineExceeded", err, status.Code(err))
	}
	if n := meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"protocol": "grpc", "code": "DEADLINE_EXCEEDED"}); n != 1 {
		t.Fatalf("DEADLINE_EXCEEDED counted %v times, want 1", n)
	}

	m2, _ := newMesh(t, echoDoc("    retry: {attempts: 3, backoff: 2s, budget: 1}\n"), staticOf(s))
	conn2 := dial(t, m2, "echo")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	if _, err := grpctest.Call(ctx, conn2); status.Code(err) != codes.Canceled {
		t.Fatalf("the caller's cancellation during the backoff: %v (code %v), want Canceled", err, status.Code(err))
	}
}

// Bug 6: a stream the caller cancels (and reads no more) is counted as CANCELLED, as grpc-go
// reports it, not UNKNOWN.
func TestCancelledStreamIsCancelled(t *testing.T) {
	s := grpctest.Start(t, "s")
	reg := prometheus.NewRegistry()
	m, _ := newMesh(t, echoDoc(""), staticOf(s), mesh.WithRegisterer(reg))
	conn := dial(t, m, "echo")
	ctx, cancel := context.WithCancel(context.Background())
	chat, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.SendMsg(wrapperspb.String("hi")); err != nil {
		t.Fatal(err)
	}
	if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != nil {
		t.Fatal(err)
	}
	cancel() // and the caller goes away without reading again
	meshtest.WaitFor(t, 5*time.Second, "the stream to be counted", func() bool {
		return meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"protocol": "grpc", "code": "CANCELLED"}) == 1
	})
	if n := meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"protocol": "grpc", "code": "UNKNOWN"}); n > 0 {
		t.Fatalf("the cancelled stream counted as UNKNOWN %v times", n)
	}
}

// Bug 10: a server's own DEADLINE_EXCEEDED (its dependency timed out),
// answered while the caller's deadline is seconds away, is a failure for
// the breaker like any failure code; only one that comes back when a
// deadline is near is put down to that deadline.
func TestServersOwnDeadlineExceededCounts(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Code.Store(uint32(codes.DeadlineExceeded))
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 3, failureRatio: 0.5, openBase: 10s}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	for range 3 {
		if _, err := call(context.Background(), conn); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("%v", err)
		}
	}
	if _, err := call(context.Background(), conn); !errors.Is(err, mesh.ErrCircuitOpen) {
		t.Fatalf("after three DEADLINE_EXCEEDED answers 5 s before the caller's deadline: %v, want the circuit open", err)
	}
}

// Bug 11: grpc.OnFinish runs once per call, however many tries the mesh
// made, with the call's final error.
func TestOnFinishOncePerCall(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Code.Store(uint32(codes.Unavailable))
	m, _ := newMesh(t, echoDoc("    retry: {attempts: 2, backoff: 1ms, budget: 1}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	var runs atomic.Int32
	var last atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := grpctest.Call(ctx, conn, grpc.OnFinish(func(err error) { runs.Add(1); last.Store(status.Code(err)) }))
	if status.Code(err) != codes.Unavailable || s.Calls.Load() != 3 {
		t.Fatalf("%v after %d tries, want Unavailable after 3", err, s.Calls.Load())
	}
	if runs.Load() != 1 || last.Load() != codes.Unavailable {
		t.Fatalf("OnFinish ran %d times (last with %v), want once with Unavailable", runs.Load(), last.Load())
	}
}
