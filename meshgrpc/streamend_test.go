package meshgrpc_test

// Every way a stream ends reaches the metrics once, with the code the
// caller saw, and the breaker's verdict: the end grpc-go reports through
// grpc.OnFinish (no stats handler is installed).

import (
	"context"
	"errors"
	"io"
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

func TestStreamEndReachesMetricsOnce(t *testing.T) {
	chat := func(t *testing.T, ctx context.Context, conn *grpc.ClientConn) grpc.ClientStream {
		t.Helper()
		cs, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
		if err != nil {
			t.Fatal(err)
		}
		if err := cs.SendMsg(wrapperspb.String("hi")); err != nil {
			t.Fatal(err)
		}
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatal(err)
		}
		return cs
	}
	for _, tc := range []struct {
		name  string
		codes []string // the code of the one lightmesh_requests_total series, alone at 1
		// end runs a stream on conn to its end.
		end func(t *testing.T, s *grpctest.Server, conn *grpc.ClientConn)
	}{
		{"the caller reads to io.EOF", []string{"OK"}, func(t *testing.T, _ *grpctest.Server, conn *grpc.ClientConn) {
			cs := chat(t, context.Background(), conn)
			cs.CloseSend()
			if err := cs.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
				t.Fatalf("end: %v", err)
			}
		}},
		{"the server fails it", []string{"PERMISSION_DENIED"}, func(t *testing.T, s *grpctest.Server, conn *grpc.ClientConn) {
			s.Code.Store(uint32(codes.PermissionDenied))
			cs, err := conn.NewStream(context.Background(), &grpctest.ChatDesc, grpctest.ChatMethod)
			if err != nil {
				t.Fatal(err)
			}
			if err := cs.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.PermissionDenied {
				t.Fatalf("end: %v", err)
			}
		}},
		{"the caller cancels it and reads no more", []string{"CANCELLED"}, func(t *testing.T, _ *grpctest.Server, conn *grpc.ClientConn) {
			ctx, cancel := context.WithCancel(context.Background())
			chat(t, ctx, conn)
			cancel()
		}},
		// grpc-go ends it CANCELLED or, when the transport closes
		// first, UNAVAILABLE.
		{"its ClientConn is closed under it", []string{"CANCELLED", "UNAVAILABLE"}, func(t *testing.T, _ *grpctest.Server, conn *grpc.ClientConn) {
			chat(t, context.Background(), conn)
			conn.Close()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := grpctest.Start(t, "s")
			reg := prometheus.NewRegistry()
			m, _ := newMesh(t, echoDoc(""), staticOf(s), mesh.WithRegisterer(reg))
			conn := dial(t, m, "echo")
			tc.end(t, s, conn)
			meshtest.WaitFor(t, 5*time.Second, "the stream's end to be recorded", func() bool {
				for _, code := range tc.codes {
					if meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"protocol": "grpc", "code": code}) == 1 {
						return true
					}
				}
				return false
			})
			time.Sleep(100 * time.Millisecond) // a second record would come now
			if n := outboundSum(t, reg, "lightmesh_requests_total"); n != 1 {
				t.Fatalf("lightmesh_requests_total counts %v outbound gRPC requests for one stream", n)
			}
			if n := outboundSum(t, reg, "lightmesh_request_duration_seconds"); n != 1 {
				t.Fatalf("the latency histogram has %v observations for one stream", n)
			}
		})
	}
}

// Streams the server fails reach the service breaker at their end, before
// the caller sees the error (grpc-go runs OnFinish within the RecvMsg that
// returns it): two failed streams open it, and the next call is refused.
// With the stats handler the end came later, from a goroutine.
func TestFailedStreamsOpenTheBreaker(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 2, failureRatio: 0.5, openBase: 10s}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	s.Code.Store(uint32(codes.Unavailable))
	for range 2 {
		cs, err := conn.NewStream(context.Background(), &grpctest.StreamDesc, grpctest.StreamMethod)
		if err != nil {
			t.Fatal(err)
		}
		cs.SendMsg(wrapperspb.Int32(1))
		cs.CloseSend()
		if err := cs.RecvMsg(new(wrapperspb.StringValue)); status.Code(err) != codes.Unavailable {
			t.Fatalf("stream: %v", err)
		}
	}
	s.Code.Store(uint32(codes.OK))
	if _, err := call(context.Background(), conn); !errors.Is(err, mesh.ErrCircuitOpen) {
		t.Fatalf("after two failed streams: %v, want the circuit open", err)
	}
}

// outboundSum sums every outbound gRPC series of the counter or histogram
// name (a histogram's sample counts).
func outboundSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["direction"] != "outbound" || labels["protocol"] != "grpc" {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				sum += float64(h.GetSampleCount())
			} else {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// A caller that reads a stream's headers (Header) before any message gives
// the breaker its probe's verdict then: headers are a response.
func TestStreamHeadersAreAResponse(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc(halfOpenDoc), staticOf(s))
	conn := dial(t, m, "echo")
	tripToHalfOpen(t, s, conn)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chat, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := chat.SendMsg(wrapperspb.String("one")); err != nil {
		t.Fatal(err)
	}
	if md, err := chat.Header(); err != nil || md == nil {
		t.Fatalf("headers: %v, %v", md, err)
	}
	if name, err := call(context.Background(), conn); err != nil || name != "s" {
		t.Fatalf("a unary call while the probe stream is open, its headers read: %q, %v; want served", name, err)
	}
	chat.CloseSend()
	for chat.RecvMsg(new(wrapperspb.StringValue)) == nil {
	}
}
