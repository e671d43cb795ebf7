package meshgrpc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// refusedCall starts a gRPC server of service "me", limited to 1 call per
// 1000 s, with opts, and returns the trailer and error of its second call.
func refusedCall(t *testing.T, opts ...meshgrpc.Option) (metadata.MD, *grpctest.Server, error) {
	t.Helper()
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rulesMemory(`apiVersion: lightmesh/v1
services:
  me:
    inbound:
      - name: echo-calls
        match: {path: {prefix: /lightmesh.test.Echo/}}
        rateLimit: {rps: 0.001, burst: 1}
`)), mesh.WithLocalService("me"))
	})
	s := grpctest.Start(t, "me", meshgrpc.ServerOptions(m, opts...)...)
	conn := plainConn(t, s.Addr)
	var err error
	var trailer metadata.MD
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = grpctest.Call(ctx, conn, grpc.Trailer(&trailer))
		cancel()
	}
	return trailer, s, err
}

// TestRefusalStatusCarriesTheServicesDetails: with WithRefusalStatus a
// call over the inbound limit fails with the status the service builds
// from the refusal (here with ErrorInfo and RetryInfo details), the
// pushback trailer is still sent and the handler is not reached; a
// stream is refused alike.
func TestRefusalStatusCarriesTheServicesDetails(t *testing.T) {
	var inner error
	trailer, s, err := refusedCall(t, meshgrpc.WithRefusalStatus(func(ctx context.Context, rf mesh.Refusal) *status.Status {
		inner = rf.Err
		st, _ := status.New(codes.Unavailable, "orders: too busy, try later").WithDetails(
			&errdetails.ErrorInfo{Reason: rf.Reason, Domain: "orders.example.com", Metadata: map[string]string{"service": rf.Service, "route": rf.Route}},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(rf.RetryAfter)},
		)
		return st
	}))
	st := status.Convert(err)
	if st.Code() != codes.Unavailable || st.Message() != "orders: too busy, try later" {
		t.Fatalf("refused call: %v, want the service's Unavailable status", err)
	}
	var info *errdetails.ErrorInfo
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	if info == nil || info.Reason != "rate_limited" || info.Metadata["service"] != "me" || info.Metadata["route"] != "echo-calls" {
		t.Errorf("ErrorInfo %v, want reason rate_limited, service me, route echo-calls", info)
	}
	if retry == nil || retry.RetryDelay.AsDuration() < 900*time.Second || retry.RetryDelay.AsDuration() > 1000*time.Second {
		t.Errorf("RetryInfo %v, want about 1000 s", retry)
	}
	if !errors.Is(inner, mesh.ErrRateLimited) {
		t.Errorf("Refusal.Err %v, want mesh.ErrRateLimited", inner)
	}
	if v := trailer.Get("grpc-retry-pushback-ms"); len(v) != 1 || v[0] == "0" {
		t.Errorf("pushback trailer %v, want it kept", v)
	}
	if s.Calls.Load() != 1 {
		t.Errorf("handler reached %d times, want 1", s.Calls.Load())
	}

	// A stream over the limit is refused the same way.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cs, err := plainConn(t, s.Addr).NewStream(ctx, &grpctest.StreamDesc, grpctest.StreamMethod)
	if err == nil {
		cs.SendMsg(wrapperspb.Int32(1))
		cs.CloseSend()
		err = cs.RecvMsg(new(wrapperspb.StringValue))
	}
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "orders: too busy, try later" {
		t.Errorf("refused stream: %v, want the service's Unavailable status", err)
	}
}

// TestRefusalStatusDefaultUnchanged: without WithRefusalStatus, or when
// it returns nil, the refusal is the ResourceExhausted it always was.
func TestRefusalStatusDefaultUnchanged(t *testing.T) {
	for name, opts := range map[string][]meshgrpc.Option{
		"no option":  nil,
		"nil status": {meshgrpc.WithRefusalStatus(func(context.Context, mesh.Refusal) *status.Status { return nil })},
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := refusedCall(t, opts...)
			if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != `lightmesh: rate limited: inbound limit of service "me"` || len(st.Details()) != 0 {
				t.Errorf("refused call: %v %v, want the default ResourceExhausted", err, st.Details())
			}
		})
	}
}
