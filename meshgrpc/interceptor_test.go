package meshgrpc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// A client interceptor chained after DialOptions's that answers a call
// itself (a cache) without sending it: the caller gets that answer, not an
// error of the mesh's ("the call ended before it was sent", UNKNOWN).
func TestInterceptorAfterTheMeshMayAnswer(t *testing.T) {
	s := grpctest.Start(t, "s")
	reg := prometheus.NewRegistry()
	m, _ := newMesh(t, echoDoc("    retry: {attempts: 2}\n"), staticOf(s), mesh.WithRegisterer(reg))
	cache := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		proto.Merge(reply.(proto.Message), wrapperspb.String("cached"))
		return nil
	}
	conn := dial(t, m, "echo", grpc.WithChainUnaryInterceptor(cache))
	name, err := call(context.Background(), conn)
	if err != nil || name != "cached" {
		t.Fatalf("a call the cache answered: %q, %v; want the cached answer", name, err)
	}
	if s.Calls.Load() != 0 {
		t.Fatalf("the server got %d calls", s.Calls.Load())
	}
	// Not sent, so not a request to echo: no series counts it.
	if got := meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"destination_service": "echo"}); got != -1 {
		t.Fatalf("lightmesh_requests_total counts %v calls that never left", got)
	}
}

// fakeStream is a stream a client interceptor serves itself (a test
// double, a replay); its methods are never called here.
type fakeStream struct{ grpc.ClientStream }

// A stream interceptor chained after DialOptions's that serves a stream
// itself, without calling grpc-go: the half-open probe slot the mesh took
// for it is given back at once, not held for ever (every call of the
// service refused with circuit open).
func TestInterceptorAfterTheMeshMayServeAStream(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc(halfOpenDoc), staticOf(s))
	replay := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return fakeStream{}, nil
	}
	conn := dial(t, m, "echo", grpc.WithChainStreamInterceptor(replay))
	tripToHalfOpen(t, s, conn)
	if _, err := conn.NewStream(context.Background(), &grpctest.ChatDesc, grpctest.ChatMethod); err != nil {
		t.Fatal(err)
	}
	if name, err := call(context.Background(), conn); err != nil || name != "s" {
		t.Fatalf("a call after a stream the interceptor served: %q, %v; want served", name, err)
	}
}

// A stream the mesh refuses (here its rate limit) before grpc-go sees it
// still runs the grpc.OnFinish options an interceptor chained before the
// mesh's gave it, once: grpc-go promises them for every RPC, and an
// interceptor counting streams in flight (or holding a concurrency slot)
// releases in them.
func TestRefusedStreamRunsOnFinish(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc("    rateLimit: {rps: 0.001, burst: 1}\n"), staticOf(s))
	var finished []error
	var mu sync.Mutex
	inflight := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(ctx, desc, cc, method, append(opts, grpc.OnFinish(func(err error) {
			mu.Lock()
			finished = append(finished, err)
			mu.Unlock()
		}))...)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithChainStreamInterceptor(inflight)}, meshgrpc.DialOptions(m)...)
	conn, err := grpc.NewClient("lightmesh:///echo", opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ss, err := conn.NewStream(ctx, &grpctest.StreamDesc, grpctest.StreamMethod)
	if err != nil {
		t.Fatal(err)
	}
	ss.SendMsg(wrapperspb.Int32(1))
	ss.CloseSend()
	for ss.RecvMsg(new(wrapperspb.StringValue)) == nil {
	}
	if _, err := conn.NewStream(ctx, &grpctest.StreamDesc, grpctest.StreamMethod); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("the second stream: %v, want the rate limit", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(finished) != 2 || finished[0] != nil || status.Code(finished[1]) != codes.ResourceExhausted {
		t.Fatalf("OnFinish ran with %v, want once per stream: <nil> and the rate limit", finished)
	}
}
