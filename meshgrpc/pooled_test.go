package meshgrpc_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// A unary call's state is pooled, but an interceptor chained after the
// mesh's may outlive the call: one that mirrors each call with the call's
// own context once it has returned (shadow traffic) reaches the picker
// after the mesh reused the call's state for another call. That other
// call is not disturbed (no data race, every call served and recorded
// once); the late mirror fails with a status that says why instead of
// picking for a call that is not its own.
func TestInterceptorOutlivingTheCallDoesNotReachAReusedCall(t *testing.T) {
	s := grpctest.Start(t, "s")
	reg := prometheus.NewRegistry()
	m, _ := newMesh(t, echoDoc("    retry: {attempts: 1, perTryTimeout: 2s}\n    breaker: {minRequests: 100, failureRatio: 0.5}\n"), staticOf(s), mesh.WithRegisterer(reg))
	var (
		mirrors sync.WaitGroup
		mu      sync.Mutex
		bad     []error
	)
	// outer, chained before the mesh's, tells the mirror when the mesh's
	// interceptor has returned.
	type returnedKey struct{}
	outer := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		returned := make(chan struct{})
		defer close(returned)
		return invoker(context.WithValue(ctx, returnedKey{}, returned), method, req, reply, cc, opts...)
	}
	mirror := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		err := invoker(ctx, method, req, reply, cc, opts...)
		returned := ctx.Value(returnedKey{}).(chan struct{})
		mirrors.Add(1)
		go func() {
			defer mirrors.Done()
			<-returned
			merr := invoker(context.WithoutCancel(ctx), method, req, new(wrapperspb.StringValue), cc, opts...)
			if merr != nil && (status.Code(merr) != codes.Internal || !strings.Contains(merr.Error(), "has ended")) {
				mu.Lock()
				bad = append(bad, merr)
				mu.Unlock()
			}
		}()
		return err
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithChainUnaryInterceptor(outer)},
		meshgrpc.DialOptions(m)...)
	conn, err := grpc.NewClient("lightmesh:///echo", append(opts, grpc.WithChainUnaryInterceptor(mirror))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const workers, calls = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range calls {
				if name, err := call(context.Background(), conn); err != nil || name != "s" {
					errs <- status.Errorf(codes.Unknown, "%q, %v", name, err)
				}
			}
		}()
	}
	wg.Wait()
	mirrors.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a call while late mirrors run: %v", err)
	}
	for _, err := range bad {
		t.Errorf("a late mirror: %v; want served, or Internal saying the call has ended", err)
	}
	meshtest.WaitFor(t, 2*time.Second, "the calls to be recorded", func() bool {
		return meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"direction": "outbound", "code": "OK"}) >= workers*calls
	})
	if n := outboundSum(t, reg, "lightmesh_requests_total"); n != workers*calls {
		t.Fatalf("lightmesh_requests_total counts %v outbound calls, want %d (the mirrors' late picks are not calls of the mesh)", n, workers*calls)
	}
}
