package meshgrpc_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/router"
)

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// Bug 4: when every connection of the subset is in TRANSIENT_FAILURE, a
// wait-for-ready call waits (until its deadline, as plain grpc-go does on
// the same dead address), and a call that is not wait-for-ready fails at
// once with Unavailable naming the service.
func TestWaitForReadyWaitsOnTransientFailure(t *testing.T) {
	dead := deadAddr(t)
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: dead}}})
	m, _ := newMesh(t, echoDoc(""), static)
	conn := dial(t, m, "echo")
	meshtest.WaitFor(t, 5*time.Second, "the connection to fail", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := grpctest.Call(ctx, conn)
		return status.Code(err) == codes.Unavailable
	})
	_, err := call(context.Background(), conn)
	if status.Code(err) != codes.Unavailable || !containsAll(status.Convert(err).Message(), `service "echo"`) {
		t.Fatalf("a call that is not wait-for-ready: %v, want Unavailable naming the service", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = grpctest.Call(ctx, conn, grpc.WaitForReady(true))
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) < 600*time.Millisecond {
		t.Fatalf("a wait-for-ready call: %v after %v, want DeadlineExceeded at its 700ms deadline", err, time.Since(start))
	}
}

// Bug 9: a rule change makes waiting calls pick again: a call queued on a
// subset whose only instance is stuck connecting goes to the ready subset
// the new rules name, without waiting for its deadline.
func TestRuleChangeRepicksWaitingCalls(t *testing.T) {
	// A listener that never accepts: the TCP connect succeeds, the HTTP/2
	// handshake never does, so the connection stays CONNECTING.
	stuck, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	good := grpctest.Start(t, "good")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {
		{Address: stuck.Addr().String(), Labels: map[string]string{"env": "stuck"}},
		instance(good, "good"),
	}})
	to := func(env string) string {
		return "apiVersion: lightmesh/v1\nservices:\n  echo:\n    subsets: {s: {labels: {env: " + env + "}}}\n    routes: [{destinations: [{subset: s}]}]\n"
	}
	m, src := newMesh(t, to("good"), static)
	conn := dial(t, m, "echo")
	if name, err := call(context.Background(), conn); err != nil || name != "good" {
		t.Fatalf("first call: %q, %v", name, err)
	}
	src.Set([]byte(to("stuck")))
	meshtest.WaitFor(t, 5*time.Second, "the rules to the stuck subset", func() bool { return m.Status().Rules.Version == "2" })

	type answer struct {
		name string
		err  error
		took time.Duration
	}
	done := make(chan answer, 1)
	go func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		name, err := grpctest.Call(ctx, conn)
		done <- answer{name, err, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond) // the call waits for the stuck connection
	src.Set([]byte(to("good")))
	select {
	case a := <-done:
		if a.err != nil || a.name != "good" || a.took > 2*time.Second {
			t.Fatalf("the waiting call: %q, %v after %v; want good soon after the rule change", a.name, a.err, a.took)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiting call still waits 2.7 s after the rules moved traffic to a ready subset")
	}
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// Bug 12: a service the rules name but that has no instance at all fails
// the first call on a new ClientConn at once, with Unavailable naming the
// service, instead of holding it for the first-use wait (a 500 ms
// deadline then ran out first).
func TestNoInstanceAtAllFailsFirstCallFast(t *testing.T) {
	m, _ := newMesh(t, laneRules, discovery.NewStatic(nil))
	conn := dial(t, m, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := grpctest.Call(ctx, conn)
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Fatalf("the first call took %v (%v): it must fail at once", d, err)
	}
	if status.Code(err) != codes.Unavailable || !errors.Is(err, router.ErrNoInstance) || !containsAll(status.Convert(err).Message(), `"echo"`) {
		t.Fatalf("err = %v, want Unavailable naming the service and matching router.ErrNoInstance", err)
	}
	// A wait-for-ready call too: there is nothing to wait for.
	start = time.Now()
	_, err = grpctest.Call(ctx, conn, grpc.WaitForReady(true))
	if d := time.Since(start); d > 250*time.Millisecond || status.Code(err) != codes.Unavailable {
		t.Fatalf("a wait-for-ready call: %v after %v, want Unavailable at once", err, d)
	}
}

// A wait-for-ready call waiting on connections that all failed, cut by
// its own ClientConn's Close, says nothing about the service: it is no
// connect failure for the service breaker.
func TestClosedConnWaitingCallIsNoFailure(t *testing.T) {
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: deadAddr(t)}}})
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 1, failureRatio: 0.5, openBase: 10s}\n"), static)
	conn := dial(t, m, "echo")
	conn.Connect()
	meshtest.WaitFor(t, 5*time.Second, "the connection to fail", func() bool { return conn.GetState() == connectivity.TransientFailure })
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := grpctest.Call(ctx, conn, grpc.WaitForReady(true))
		done <- err
	}()
	time.Sleep(200 * time.Millisecond) // the call is waiting for a connection (sooner, it would not be picked at all)
	conn.Close()
	if err := <-done; status.Code(err) != codes.Canceled {
		t.Fatalf("the waiting call: %v, want Canceled by the Close", err)
	}
	for _, b := range m.Status().Breakers {
		if b.State != "closed" {
			t.Fatalf("a waiting call cut by its own ClientConn's Close counted as a connect failure: %+v", b)
		}
	}
}
