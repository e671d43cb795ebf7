package meshgrpc_test

// A stream's life as grpc-go reports it: the breakers judge a stream at
// its first response, its end goes to metrics and spans, and a stream
// ended by a closed ClientConn still reports.

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

// halfOpenDoc trips the service breaker after three failures and lets one
// probe through 200 ms later.
const halfOpenDoc = "    breaker: {minRequests: 3, failureRatio: 0.5, openBase: 200ms, openMax: 200ms, halfOpenProbes: 1}\n"

// tripToHalfOpen makes s fail three unary calls on conn, so the service
// breaker opens, lets s answer again, and waits until the open period is
// over: the next call is the breaker's one probe.
func tripToHalfOpen(t *testing.T, s *grpctest.Server, conn *grpc.ClientConn) {
	t.Helper()
	s.Code.Store(uint32(codes.Unavailable))
	for range 3 {
		if _, err := call(context.Background(), conn); status.Code(err) != codes.Unavailable {
			t.Fatalf("tripping: %v", err)
		}
	}
	if _, err := call(context.Background(), conn); !errors.Is(err, mesh.ErrCircuitOpen) {
		t.Fatalf("after three failures: %v, want the circuit open", err)
	}
	s.Code.Store(uint32(codes.OK))
	time.Sleep(300 * time.Millisecond)
}

// Bug 1: a stream admitted as the half-open probe reports at its first
// response (the server is up): unary calls go again while the stream is
// still open, instead of being refused until it ends.
func TestStreamProbeReportsAtFirstResponse(t *testing.T) {
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
	var out wrapperspb.StringValue
	if err := chat.RecvMsg(&out); err != nil || out.GetValue() != "s:one" {
		t.Fatalf("chat: %q, %v", out.GetValue(), err)
	}
	// The stream stays open; the breaker has its probe's verdict already.
	if name, err := call(context.Background(), conn); err != nil || name != "s" {
		t.Fatalf("a unary call while the probe stream is open: %q, %v; want it served", name, err)
	}
	chat.CloseSend()
	if err := chat.RecvMsg(&out); err != io.EOF {
		t.Fatalf("chat end: %v", err)
	}
}

// Bug 2: a half-open probe stream whose ClientConn is closed under it
// (the caller never reads again, its context never ends) gives its probe
// slot back: another client of the same mesh is served after the next
// open period instead of being refused for ever.
func TestClosedConnReleasesStreamProbe(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc(halfOpenDoc), staticOf(s))
	conn := dial(t, m, "echo")
	tripToHalfOpen(t, s, conn)

	// The chat server answers only to a message: the stream gets no
	// response before its ClientConn closes.
	if _, err := conn.NewStream(context.Background(), &grpctest.ChatDesc, grpctest.ChatMethod); err != nil {
		t.Fatal(err)
	}
	conn.Close()

	other := dial(t, m, "echo")
	// Within less than a second: a probe stream with no response gives its
	// slot back after a second anyway (streamProbeWait).
	meshtest.WaitFor(t, 800*time.Millisecond, "another client to be served", func() bool {
		name, err := call(context.Background(), other)
		return err == nil && name == "s"
	})
}

// Bug 3: slowCallThreshold does not time a stream to its end (nor at all:
// streams are never slow calls): healthy chats that answer at once and
// stay open longer than the threshold never trip the breaker, and the
// latency histogram records their time to first response, not their
// lifetime (bug 13).
func TestLongStreamIsNotSlow(t *testing.T) {
	s := grpctest.Start(t, "s")
	reg := prometheus.NewRegistry()
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 2, failureRatio: 0.5, slowCallThreshold: 100ms, slowCallRatio: 0.5, openBase: 10s}\n"), staticOf(s), mesh.WithRegisterer(reg))
	conn := dial(t, m, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		chat, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if err := chat.SendMsg(wrapperspb.String("hi")); err != nil {
			t.Fatal(err)
		}
		if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		time.Sleep(150 * time.Millisecond)
		chat.CloseSend()
		if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Fatalf("stream %d end: %v", i, err)
		}
	}
	if name, err := call(context.Background(), conn); err != nil || name != "s" {
		t.Fatalf("after three healthy 150 ms chats: %q, %v; want served (a stream is timed to its first response)", name, err)
	}
	meshtest.WaitFor(t, 5*time.Second, "the streams and the call to be recorded", func() bool {
		return meshtest.Metric(t, reg, "lightmesh_request_duration_seconds", map[string]string{"direction": "outbound", "protocol": "grpc"}) == 4
	})
	if sum := latencySum(t, reg); sum >= 0.3 {
		t.Fatalf("the latency histogram holds %.3fs for three chats open 150 ms each and one call: it records lifetimes", sum)
	}
}

// latencySum returns the sum of the outbound gRPC latency histogram.
func latencySum(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != "lightmesh_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["direction"] == "outbound" && labels["protocol"] == "grpc" {
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return sum
}

// A half-open probe stream that had no response when its ClientConn was
// closed says nothing about the server: the service breaker is not closed
// by it (grpc-go ends the stream CANCELLED, "the client connection is
// closing"), it stays half-open for the next probe.
func TestClosedConnProbeIsNoSuccess(t *testing.T) {
	s := grpctest.Start(t, "s")
	reg := prometheus.NewRegistry()
	m, _ := newMesh(t, echoDoc(halfOpenDoc), staticOf(s), mesh.WithRegisterer(reg))
	conn := dial(t, m, "echo")
	tripToHalfOpen(t, s, conn)
	if _, err := conn.NewStream(context.Background(), &grpctest.ChatDesc, grpctest.ChatMethod); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// grpc-go ends the stream CANCELLED or, when the transport closes
	// first, UNAVAILABLE; the three tripping calls were UNAVAILABLE.
	meshtest.WaitFor(t, 2*time.Second, "the stream's end to be recorded", func() bool {
		code := func(c string) float64 {
			return meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"direction": "outbound", "code": c})
		}
		return code("CANCELLED") == 1 || code("UNAVAILABLE") == 4
	})
	for _, b := range m.Status().Breakers {
		if b.State == "closed" {
			t.Fatalf("a probe stream that got no answer before its ClientConn closed closed the breaker: %+v", b)
		}
	}
}

// A unary call cut because its ClientConn was closed under it (grpc-go
// ends it CANCELLED or UNAVAILABLE, "the client connection is closing")
// says nothing about the server, as the caller's cancellation does not: a
// half-open probe cut so neither closes the breaker nor counts against it.
func TestClosedConnCallIsNoVerdict(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc(halfOpenDoc), staticOf(s))
	conn := dial(t, m, "echo")
	tripToHalfOpen(t, s, conn)
	calls := s.Calls.Load()
	s.Delay.Store(int64(5 * time.Second))
	done := make(chan error, 1)
	go func() { _, err := call(context.Background(), conn); done <- err }()
	meshtest.WaitFor(t, 2*time.Second, "the probe to arrive", func() bool { return s.Calls.Load() == calls+1 })
	conn.Close()
	if err := <-done; err == nil {
		t.Fatal("the call survived its ClientConn's Close")
	}
	for _, b := range m.Status().Breakers {
		if b.State == "closed" || b.Trips > 1 {
			t.Fatalf("a probe cut by its own ClientConn's Close was judged: %+v", b)
		}
	}
}
