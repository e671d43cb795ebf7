package meshgrpc_test

// A stream's first response is when the server's headers arrive, as a
// stats handler's InHeader saw it, not when the caller gets round to
// reading them: a caller that sends first and reads later must neither
// make a healthy server look slow nor keep a half-open probe slot after
// the server answered.

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
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
	// Within less than a second: a probe stream with no response gives its
	// slot back after a second anyway.
	meshtest.WaitFor(t, 800*time.Millisecond, "a unary call to be served while the probe stream's answer waits unread", func() bool {
		name, err := call(context.Background(), conn)
		return err == nil && name == "s"
	})
	chat.CloseSend()
	for chat.RecvMsg(new(wrapperspb.StringValue)) == nil {
	}
}

// A half-open probe stream whose server has not answered yet (a watch
// that answers at its first event, an upload whose server answers at the
// end) gives its probe slot back, counting for nothing, once its first
// response is overdue (the route's timeout, else a second): the service's
// other calls probe and are served meanwhile instead of being refused for
// as long as the stream waits. The stream itself goes on.
func TestProbeStreamWithoutAnswerGivesItsSlotBack(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		within    time.Duration // when a unary call must be served
	}{
		{"no timeout: a second", halfOpenDoc, 3 * time.Second},
		{"the route's timeout", halfOpenDoc + "    timeout: 300ms\n", 900 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := grpctest.Start(t, "s")
			m, _ := newMesh(t, echoDoc(tc.doc), staticOf(s))
			conn := dial(t, m, "echo")
			tripToHalfOpen(t, s, conn)

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// The chat server answers only to a message: this stream gets
			// no response while the caller sends nothing.
			watch, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			meshtest.WaitFor(t, tc.within, "a unary call to be served while the probe stream waits for its first response", func() bool {
				name, err := call(context.Background(), conn)
				return err == nil && name == "s"
			})
			if d := time.Since(start); tc.name == "no timeout: a second" && d < 900*time.Millisecond {
				t.Fatalf("served after %v: the probe stream gave its slot back before its first response was overdue", d)
			}
			// The stream is not cut.
			if err := watch.SendMsg(wrapperspb.String("late")); err != nil {
				t.Fatal(err)
			}
			var out wrapperspb.StringValue
			if err := watch.RecvMsg(&out); err != nil || out.GetValue() != "s:late" {
				t.Fatalf("the stream after its slot was given back: %q, %v", out.GetValue(), err)
			}
			watch.CloseSend()
			for watch.RecvMsg(&out) == nil {
			}
		})
	}
}

// Streams the server fails at once reach the service breaker although
// their callers have not read them yet (nor cancelled them): the failure
// is the stream's end, whenever the caller gets round to it.
func TestFailedStreamsNotYetReadOpenTheBreaker(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 2, failureRatio: 0.5, openBase: 10s}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	s.Code.Store(uint32(codes.Unavailable))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if _, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod); err != nil {
			t.Fatal(err)
		}
	}
	meshtest.WaitFor(t, 2*time.Second, "the server to fail both streams", func() bool { return s.Calls.Load() == 2 })
	s.Code.Store(uint32(codes.OK))
	meshtest.WaitFor(t, 2*time.Second, "the breaker to open on two failed streams nobody read", func() bool {
		_, err := call(context.Background(), conn)
		return errors.Is(err, mesh.ErrCircuitOpen)
	})
}

// A stream's time to its first response says when the server had
// something to say (an event, an answer to the caller's first message),
// not how slow it is: chats whose callers speak only after 300 ms, each
// answered at once, do not open a breaker with a 100 ms
// slowCallThreshold. Streams are judged by their codes alone.
func TestStreamQuietUntilItsCallerSpeaksIsNotSlow(t *testing.T) {
	for _, tc := range []struct{ name, breaker string }{
		{"window", "{minRequests: 2, failureRatio: 0.5, slowCallThreshold: 100ms, slowCallRatio: 0.5, openBase: 10s}"},
		// Three calls not accepted would refuse the next with p = 3/4.
		{"adaptive", "{mode: adaptive, slowCallThreshold: 100ms}"},
	} {
		t.Run(tc.name, func(t *testing.T) { quietStreams(t, tc.breaker) })
	}
}

func quietStreams(t *testing.T, breaker string) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc("    breaker: "+breaker+"\n"), staticOf(s))
	conn := dial(t, m, "echo")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 3 {
		chat, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond) // the caller has nothing to say yet
		if err := chat.SendMsg(wrapperspb.String("hi")); err != nil {
			t.Fatal(err)
		}
		if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		chat.CloseSend()
		if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
			t.Fatalf("stream %d end: %v", i, err)
		}
	}
	for range 5 {
		if name, err := call(context.Background(), conn); err != nil || name != "s" {
			t.Fatalf("after three chats answered as soon as their callers spoke: %q, %v; want served", name, err)
		}
	}
}

// The same for an instance's outlier breaker: a stream that took the
// half-open probe slot of the service's one instance and has no answer
// gives it back after a second, and the service's calls reach the
// instance again.
func TestProbeStreamWithoutAnswerGivesTheInstanceSlotBack(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 200ms, openMax: 200ms, halfOpenProbes: 1, maxEjectionPercent: 100}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	s.Code.Store(uint32(codes.Unavailable))
	for range 2 {
		call(context.Background(), conn)
	}
	if _, err := call(context.Background(), conn); !errors.Is(err, mesh.ErrCircuitOpen) {
		t.Fatalf("after two failures: %v, want the instance's circuit open", err)
	}
	s.Code.Store(uint32(codes.OK))
	time.Sleep(300 * time.Millisecond) // half-open: one probe

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	watch, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := call(context.Background(), conn); !errors.Is(err, mesh.ErrCircuitOpen) {
		t.Fatalf("a call while the probe stream waits: %v, want refused (the probe slot is the stream's)", err)
	}
	meshtest.WaitFor(t, 3*time.Second, "a unary call to be served while the probe stream waits for its first response", func() bool {
		name, err := call(context.Background(), conn)
		return err == nil && name == "s"
	})
	watch.CloseSend()
	for watch.RecvMsg(new(wrapperspb.StringValue)) == nil {
	}
}
