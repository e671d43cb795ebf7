package meshgrpc_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// A server-streaming and a bidi-streaming call are routed by the rules and
// counted; a rule swap during a long-lived stream does not break it.
func TestStreams(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(staging, "staging")}})
	reg := prometheus.NewRegistry()
	m, src := newMesh(t, laneRules, static, mesh.WithRegisterer(reg))
	conn := dial(t, m, "echo")
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "x-env", "staging"), 10*time.Second)
	defer cancel()

	// Server streaming: three replies, all from staging.
	ss, err := conn.NewStream(ctx, &grpctest.StreamDesc, grpctest.StreamMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := ss.SendMsg(wrapperspb.Int32(3)); err != nil {
		t.Fatal(err)
	}
	ss.CloseSend()
	var names []string
	for {
		var out wrapperspb.StringValue
		if err := ss.RecvMsg(&out); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		names = append(names, out.GetValue())
	}
	if fmt.Sprint(names) != "[staging staging staging]" {
		t.Fatalf("stream replies %v", names)
	}

	// Bidi: a long-lived chat across a rule swap that moves new calls away.
	chat, err := conn.NewStream(ctx, &grpctest.ChatDesc, grpctest.ChatMethod)
	if err != nil {
		t.Fatal(err)
	}
	say := func(msg string) string {
		t.Helper()
		if err := chat.SendMsg(wrapperspb.String(msg)); err != nil {
			t.Fatal(err)
		}
		var out wrapperspb.StringValue
		if err := chat.RecvMsg(&out); err != nil {
			t.Fatal(err)
		}
		return out.GetValue()
	}
	if got := say("one"); got != "staging:one" {
		t.Fatalf("chat went to %q", got)
	}
	src.Set([]byte(strings.Replace(laneRules, "exact: staging", "exact: nobody", 1)))
	meshtest.WaitFor(t, 5*time.Second, "the new rules", func() bool { return m.Status().Rules.Version == "2" })
	if name, err := call(ctx, conn); err != nil || name != "base" {
		t.Fatalf("a new call after the swap went to %q (%v), want base", name, err)
	}
	if got := say("two"); got != "staging:two" {
		t.Fatalf("the open chat answered %q after the swap, want staging:two", got)
	}
	chat.CloseSend()
	if err := chat.RecvMsg(new(wrapperspb.StringValue)); err != io.EOF {
		t.Fatalf("chat end: %v", err)
	}
	// Both streams are counted once they end.
	meshtest.WaitFor(t, 5*time.Second, "the streams to be counted", func() bool {
		return meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"protocol": "grpc", "destination_subset": "staging", "code": "OK"}) == 2
	})
}

// Instances join and leave while calls flow: a graceful removal fails no
// call, the removed instance's connection is closed, and nothing leaks.
func TestInstanceChurn(t *testing.T) {
	a, b, c := grpctest.Start(t, "a"), grpctest.Start(t, "b"), grpctest.Start(t, "c")
	static := staticOf(a, b)
	m, _ := newMesh(t, echoDoc(""), static)
	conn := dial(t, m, "echo")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var failed, done atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && done.Load() < 5000 {
				if _, err := call(context.Background(), conn); err != nil {
					failed.Add(1)
					t.Errorf("call during churn: %v", err)
					return
				}
				done.Add(1)
			}
		}()
	}
	meshtest.WaitFor(t, 5*time.Second, "a and b to serve", func() bool { return a.Conns.Load() == 1 && b.Conns.Load() == 1 })
	static.Set("echo", []discovery.Instance{{Address: a.Addr}, {Address: b.Addr}, {Address: c.Addr}})
	meshtest.WaitFor(t, 5*time.Second, "c to join", func() bool { return c.Calls.Load() > 10 })
	static.Set("echo", []discovery.Instance{{Address: a.Addr}, {Address: c.Addr}})
	meshtest.WaitFor(t, 5*time.Second, "b's connection to close", func() bool { return b.Conns.Load() == 0 })
	bCalls := b.Calls.Load()
	time.Sleep(50 * time.Millisecond)
	stop()
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d calls failed during churn", failed.Load())
	}
	if n := b.Calls.Load(); n != bCalls {
		t.Fatalf("b got %d calls after it left", n-bCalls)
	}
	if a.Accepted.Load() != 1 || c.Accepted.Load() != 1 {
		t.Fatalf("connections accepted: a %d, c %d; one each, reused across calls", a.Accepted.Load(), c.Accepted.Load())
	}
}

// Calls from several goroutines while the rules swap hundreds of times:
// every call lands on an instance the old or the new rules allow.
func TestHotSwapUnderLoad(t *testing.T) {
	// red is discovered but no rule ever sends to it.
	blue, green, red := grpctest.Start(t, "blue"), grpctest.Start(t, "green"), grpctest.Start(t, "red")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(blue, "blue"), instance(green, "green"), instance(red, "red")}})
	to := func(env string) string {
		return fmt.Sprintf("apiVersion: lightmesh/v1\nservices:\n  echo:\n    subsets: {s: {labels: {env: %s}}}\n    routes: [{destinations: [{subset: s}]}]\n", env)
	}
	m, src := newMesh(t, to("blue"), static)
	conn := dial(t, m, "echo")
	meshtest.WaitFor(t, 5*time.Second, "blue", func() bool { n, _ := call(context.Background(), conn); return n == "blue" })
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var bad atomic.Int64
	var calls atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && calls.Load() < 20000 {
				name, err := call(context.Background(), conn)
				calls.Add(1)
				if err != nil || (name != "blue" && name != "green") {
					bad.Add(1)
				}
			}
		}()
	}
	for i := range 300 {
		src.Set([]byte(to([]string{"green", "blue"}[i%2])))
		version := fmt.Sprint(i + 2)
		meshtest.WaitFor(t, 5*time.Second, "swap "+version, func() bool { return m.Status().Rules.Version == version })
	}
	stop()
	wg.Wait()
	if bad.Load() > 0 || calls.Load() < 300 || red.Calls.Load() != 0 {
		t.Fatalf("%d of %d calls failed or went astray during 300 swaps (%d to red)", bad.Load(), calls.Load(), red.Calls.Load())
	}
}

// A bad rule document is rejected and gRPC traffic keeps flowing on the
// old rules.
func TestBadDocumentKeepsServing(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(staging, "staging")}})
	m, src := newMesh(t, laneRules, static)
	conn := dial(t, m, "echo")
	src.Set([]byte(strings.Replace(laneRules, "[{subset: base}]", "[{subset: nope}]", 1)))
	meshtest.WaitFor(t, 5*time.Second, "the rejection", func() bool { return m.LastRejection() != nil })
	if !strings.Contains(m.LastRejection().Error(), `services.echo.routes[1].destinations[0].subset: unknown subset "nope"`) {
		t.Fatalf("rejection %v", m.LastRejection())
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "x-env", "staging")
	if got := counts(ctx, conn, 10); got["staging"] != 10 {
		t.Fatalf("after the rejection: %v, the old rules must keep serving", got)
	}
	if got := counts(context.Background(), conn, 10); got["base"] != 10 {
		t.Fatalf("after the rejection: %v", got)
	}
}
