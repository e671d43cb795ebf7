package meshgrpc_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// rawErrService is a service whose unary Call and server-streaming Watch
// return a bare context error, as a handler does that gives up with
// `return nil, ctx.Err()`.
var rawErrService = grpc.ServiceDesc{
	ServiceName: "lightmesh.test.Raw",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) { return nil, context.DeadlineExceeded }
			return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/lightmesh.test.Raw/Call"}, h)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		ServerStreams: true,
		Handler:       func(any, grpc.ServerStream) error { return context.Canceled },
	}},
}

// A server handler that returns a bare context error: grpc-go sends
// DEADLINE_EXCEEDED or CANCELLED (not UNKNOWN), and the inbound metrics
// record the code the caller got.
func TestServerRecordsTheCodeGRPCSends(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rulesMemory("apiVersion: lightmesh/v1\nservices: {}\n")), mesh.WithLocalService("me"), mesh.WithRegisterer(reg))
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(meshgrpc.ServerOptions(m)...)
	srv.RegisterService(&rawErrService, struct{}{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn := plainConn(t, lis.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	err = conn.Invoke(ctx, "/lightmesh.test.Raw/Call", wrapperspb.String("x"), new(wrapperspb.StringValue))
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("unary call: %v, want grpc-go's DeadlineExceeded", err)
	}
	ss, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/lightmesh.test.Raw/Watch")
	if err != nil {
		t.Fatal(err)
	}
	ss.SendMsg(wrapperspb.String("x"))
	ss.CloseSend()
	if err := ss.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.Canceled {
		t.Fatalf("stream: %v, want grpc-go's Canceled", err)
	}
	for _, code := range []string{"DEADLINE_EXCEEDED", "CANCELLED"} {
		labels := map[string]string{"direction": "inbound", "protocol": "grpc", "code": code}
		meshtest.WaitFor(t, 2*time.Second, "the inbound "+code, func() bool {
			return meshtest.Metric(t, reg, "lightmesh_requests_total", labels) == 1
		})
	}
}
