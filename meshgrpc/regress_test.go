package meshgrpc_test

// Regression tests for bugs a second reading of the gRPC integration
// found: each failed on the code before its fix.

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// Every attempt gRPC makes for one stream is reported to the breaker of
// the instance it went to: a stream retried by grpc-go's retry policy from
// a failing instance to a half-open one returns that one's probe slot, so
// the recovered instance closes and serves again.
func TestStreamRetryReturnsProbeSlots(t *testing.T) {
	a, b := grpctest.Start(t, "a"), grpctest.Start(t, "b")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(a, "a"), instance(b, "b")}})
	m, _ := newMesh(t, `apiVersion: lightmesh/v1
services:
  echo:
    subsets: {a: {labels: {env: a}}, b: {labels: {env: b}}}
    routes:
      - name: to-b
        match: {headers: {x-env: {exact: b}}}
        destinations: [{subset: b}]
      - name: main
        destinations: [{subset: a}]
        fallback: b
    outlierDetection: {minRequests: 1, failureRatio: 0.5, openBase: 200ms, openMax: 200ms, halfOpenProbes: 1}
`, static)
	const retrying = `{"methodConfig":[{"name":[{"service":"lightmesh.test.Echo"}],` +
		`"retryPolicy":{"maxAttempts":2,"initialBackoff":"0.01s","maxBackoff":"0.01s","backoffMultiplier":1,"retryableStatusCodes":["UNAVAILABLE"]}}]}`
	conn := dialWith(t, m, "echo", meshgrpc.WithServiceConfig(retrying))
	toB := metadata.AppendToOutgoingContext(context.Background(), "x-env", "b")
	call(context.Background(), conn) // connections up
	b.Code.Store(uint32(codes.Internal))
	call(toB, conn) // b's breaker opens
	b.Code.Store(uint32(codes.OK))
	a.Code.Store(uint32(codes.Unavailable))
	time.Sleep(300 * time.Millisecond) // b half-open

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpctest.StreamDesc, grpctest.StreamMethod)
	if err != nil {
		t.Fatal(err)
	}
	cs.SendMsg(wrapperspb.Int32(1))
	cs.CloseSend()
	for {
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			if err != io.EOF {
				t.Logf("stream ended with %v", err)
			}
			break
		}
	}
	meshtest.WaitFor(t, 5*time.Second, "b to serve again", func() bool {
		name, err := call(toB, conn)
		return err == nil && name == "b"
	})
}

// A call waiting for a connection picks from the instances in force when
// a connection becomes ready, not from those of the moment it started.
func TestWaitingCallPicksFromNewInstances(t *testing.T) {
	// stuck accepts TCP but never speaks HTTP/2: its connection stays
	// connecting.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	good := grpctest.Start(t, "good")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: lis.Addr().String()}}})
	m, _ := newMesh(t, echoDoc(""), static)
	conn := dial(t, m, "echo")
	go func() {
		time.Sleep(300 * time.Millisecond)
		static.Set("echo", []discovery.Instance{{Address: good.Addr}})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	start := time.Now()
	name, err := grpctest.Call(ctx, conn)
	if err != nil || name != "good" || time.Since(start) > 2*time.Second {
		t.Fatalf("the waiting call got %q, %v after %v; want good soon after the switch", name, err, time.Since(start))
	}
}

// The first call to a service no rule names waits for discovery to report
// it, instead of failing on the empty list the mesh starts with.
func TestFirstCallToUnnamedService(t *testing.T) {
	s := grpctest.Start(t, "other")
	static := discovery.NewStatic(map[string][]discovery.Instance{"other": {{Address: s.Addr}}})
	m, _ := newMesh(t, laneRules, static)
	conn := dial(t, m, "other")
	for i := range 2 {
		if name, err := call(context.Background(), conn); err != nil || name != "other" {
			t.Fatalf("call %d: %q %v", i, name, err)
		}
	}
}
