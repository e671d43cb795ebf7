package meshgrpc_test

// A stream's first response is when the server's headers arrive, as a
// stats handler's InHeader saw it, not when the caller gets round to
// reading them: a caller that sends first and reads later must neither
// make a healthy server look slow nor keep a half-open probe slot after
// the server answered.

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// Chats whose server answers at once, but whose caller reads the answer
// only 300 ms later (it was busy sending), are not slow: the breaker with
// a 100 ms slowCallThreshold stays closed, and the latency histogram holds
// the server's time to answer, not the caller's time to read.
func TestStreamReadLateIsNotSlow(t *testing.T) {
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
		time.Sleep(300 * time.Millisecond) // the server answered long ago
		if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		chat.CloseSend()
		if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Fatalf("stream %d end: %v", i, err)
		}
	}
	if name, err := call(context.Background(), conn); err != nil || name != "s" {
		t.Fatalf("after three chats the server answered at once: %q, %v; want served (the caller's reading late is not the server's slowness)", name, err)
	}
	meshtest.WaitFor(t, 5*time.Second, "the streams and the call to be recorded", func() bool {
		return meshtest.Metric(t, reg, "lightmesh_request_duration_seconds", map[string]string{"direction": "outbound", "protocol": "grpc"}) == 4
	})
	if sum := latencySum(t, reg); sum >= 0.3 {
		t.Fatalf("the latency histogram holds %.3fs for three chats answered at once and one call: it records when the caller read", sum)
	}
}

// A half-open probe stream whose server has answered gives its slot back
// then, although its caller has not read the answer yet (it is still
// sending: an upload whose server acknowledges at once): the service's
// other calls are served meanwhile.
func TestProbeStreamAnsweredButUnreadFreesItsSlot(t *testing.T) {
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
	meshtest.WaitFor(t, 2*time.Second, "a unary call to be served while the probe stream's answer waits unread", func() bool {
		name, err := call(context.Background(), conn)
		return err == nil && name == "s"
	})
	chat.CloseSend()
	for chat.RecvMsg(new(wrapperspb.StringValue)) == nil {
	}
}
