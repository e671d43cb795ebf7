package meshgrpc_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// README (gRPC, Interceptors): "grpc.OnFinish runs once per call, with its
// final error, however many tries it took — also for a call or stream the
// mesh refuses before grpc-go sees it." A mesh without an identity refuses
// calls to a service whose rules set serverID (Unauthenticated,
// mesh.ErrNoIdentity) before grpc-go sees them: the caller's OnFinish must
// still run, once, with that error.
func TestOnFinishRunsForACallRefusedForWantOfAnIdentity(t *testing.T) {
	s := grpctest.Start(t, "s")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: s.Addr}}})
	m, _ := newMesh(t, "apiVersion: lightmesh/v1\nservices:\n  echo:\n    serverID: spiffe://example.org/echo\n", static)
	conn := dial(t, m, "echo")

	var unaryRuns atomic.Int32
	var unaryErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := grpctest.Call(ctx, conn, grpc.OnFinish(func(err error) { unaryRuns.Add(1); unaryErr.Store(status.Code(err)) }))
	if status.Code(err) != codes.Unauthenticated || !errors.Is(err, mesh.ErrNoIdentity) {
		t.Fatalf("unary: %v, want Unauthenticated (mesh.ErrNoIdentity)", err)
	}
	var streamRuns atomic.Int32
	_, serr := conn.NewStream(ctx, &grpctest.StreamDesc, grpctest.StreamMethod, grpc.OnFinish(func(error) { streamRuns.Add(1) }))
	if status.Code(serr) != codes.Unauthenticated {
		t.Fatalf("stream: %v, want Unauthenticated", serr)
	}
	if s.Calls.Load() != 0 {
		t.Fatalf("%d calls reached the server", s.Calls.Load())
	}
	if unaryRuns.Load() != 1 || streamRuns.Load() != 1 {
		t.Fatalf("grpc.OnFinish ran %d times for the refused unary call (code %v) and %d times for the refused stream; README promises once each, also for a call the mesh refuses before grpc-go sees it",
			unaryRuns.Load(), unaryErr.Load(), streamRuns.Load())
	}
}

// README (gRPC, Deadlines): "a try cut by the caller's own deadline or
// cancellation ... counts for no breaker"; failureCodes: "the caller's own
// deadline or cancellation never does". WithServiceConfig's method config
// timeout is the client's own deadline for the method (README: "Give the
// client's own method configs (timeouts, ...) with WithServiceConfig: they
// apply"). A slow server cut by it must not open the service breaker, as
// the same deadline set on the context does not (TestCallerCancellationIsNotAFailure).
func TestMethodConfigTimeoutIsTheCallersDeadline(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Delay.Store(int64(time.Second))
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 2, failureRatio: 0.5, openBase: 30s, openMax: 30s}\n"), staticOf(s))
	conn := dialWith(t, m, "echo", meshgrpc.WithServiceConfig(`{"methodConfig":[{"name":[{"service":"lightmesh.test.Echo"}],"timeout":"0.05s"}]}`))
	for i := range 4 {
		if _, err := call(context.Background(), conn); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("call %d: %v, want DeadlineExceeded from the method config's 50ms timeout", i, err)
		}
	}
	s.Delay.Store(0)
	_, err := call(context.Background(), conn)
	for _, b := range m.Status().Breakers {
		if b.State != "closed" {
			t.Errorf("breaker %+v", b)
		}
	}
	if err != nil {
		t.Fatalf("the server is fast again, yet the call fails: %v — the client's own method-config timeout was counted as the server's failure and opened the breaker", err)
	}
}

// A stream cut by the client's own method-config timeout counts for no
// breaker either, as one cut by its context's deadline does not.
func TestMethodConfigTimeoutOfAStreamIsTheCallersDeadline(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 2, failureRatio: 0.5, openBase: 30s, openMax: 30s}\n"), staticOf(s))
	conn := dialWith(t, m, "echo", meshgrpc.WithServiceConfig(`{"methodConfig":[{"name":[{"service":"lightmesh.test.Echo","method":"Chat"}],"timeout":"0.05s"}]}`))
	for i := range 4 {
		// Chat answers nothing until it is sent a message: the timeout ends it.
		st, err := conn.NewStream(context.Background(), &grpctest.ChatDesc, grpctest.ChatMethod)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if err := st.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("stream %d: %v, want DeadlineExceeded from the method config's 50ms timeout", i, err)
		}
	}
	if _, err := call(context.Background(), conn); err != nil {
		t.Fatalf("a unary call after the streams: %v; the client's own method-config timeout was counted as the server's failure", err)
	}
	for _, b := range m.Status().Breakers {
		if b.State != "closed" {
			t.Errorf("breaker %+v", b)
		}
	}
}

// README (Streams): "a stream holding a half-open probe slot (of the
// service breaker or its instance's) gives it back, counting for nothing,
// once its first response is overdue — after the route's timeout ... or
// after a second when the route has none — so that the service's other
// calls probe meanwhile instead of being refused for as long as the
// stream waits." A probe stream whose instance is still connecting (a
// hung lane/watch instance) has had no response either: the service's
// unary calls to a healthy subset must be served again after about a
// second, not refused as "circuit open" for as long as the stream waits.
func TestProbeStreamWaitingForAConnectionGivesItsSlotBack(t *testing.T) {
	a := grpctest.Start(t, "a")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {
		instance(a, "base"),
		{Address: silentListener(t), Labels: map[string]string{"env": "watch"}},
	}})
	doc := `apiVersion: lightmesh/v1
services:
  echo:
    subsets: {base: {labels: {env: base}}, watch: {labels: {env: watch}}}
    routes:
      - match: {path: {exact: /lightmesh.test.Echo/Chat}}
        destinations: [{subset: watch}]
      - destinations: [{subset: base}]
` + halfOpenDoc
	m, _ := newMesh(t, doc, static)
	conn := dial(t, m, "echo")
	tripToHalfOpen(t, a, conn)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	opened := make(chan error, 1)
	go func() {
		_, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
		opened <- err
	}()
	time.Sleep(100 * time.Millisecond) // the stream takes the probe and waits for its connection
	start := time.Now()
	var last error
	for time.Since(start) < 4*time.Second {
		name, err := call(context.Background(), conn)
		if err == nil && name == "a" {
			t.Logf("unary call served %v after the probe stream began waiting", time.Since(start))
			return
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("4s after a probe stream began waiting for a connection, unary calls to the healthy subset are still refused: %v (the stream's probe slot is held for as long as it waits: up to its deadline or grpc-go's 20s connect timeout)", last)
}
