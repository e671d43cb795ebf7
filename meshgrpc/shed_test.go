package meshgrpc_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
	"github.com/lightmesh/lightmesh/rules"
)

// The saturated service of the shedding test: shedSlots calls at a time,
// each shedWork long: a capacity of 200 calls a second.
const (
	shedSlots  = 4
	shedWork   = 20 * time.Millisecond
	shedMethod = "/lightmesh.test.Saturated/Do"
)

// saturatedDesc is a one-method unary service whose handler waits for
// one of shedSlots slots and holds it for shedWork.
func saturatedDesc() *grpc.ServiceDesc {
	slots := make(chan struct{}, shedSlots)
	return &grpc.ServiceDesc{
		ServiceName: "lightmesh.test.Saturated",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "Do", Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			do := func(ctx context.Context, _ any) (any, error) {
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					return nil, status.FromContextError(ctx.Err()).Err()
				}
				time.Sleep(shedWork)
				<-slots
				return wrapperspb.String("done"), nil
			}
			if interceptor == nil {
				return do(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: shedMethod}, do)
		}}},
	}
}

func grpcShedDoc(mode string) string {
	return "apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: " + mode + "}\n"
}

// saturatedServer serves saturatedDesc and the health service behind
// the server interceptors of a mesh that is service "me" with the rules
// of src, and returns a plain client of it.
func saturatedServer(t *testing.T, src *rules.Memory) *grpc.ClientConn {
	t.Helper()
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(src), mesh.WithLocalService("me"))
	})
	srv := grpc.NewServer(meshgrpc.ServerOptions(m)...)
	srv.RegisterService(saturatedDesc(), struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return plainConn(t, lis.Addr().String())
}

type shedCall struct {
	start    time.Time
	latency  time.Duration
	code     codes.Code
	pushback string
}

// A saturated gRPC server offered three times its capacity keeps the
// latency of the calls it admits near its unloaded latency and refuses
// the rest at once with RESOURCE_EXHAUSTED and grpc-retry-pushback-ms,
// while the gRPC health service is never shed.
func TestInboundSheddingGRPC(t *testing.T) {
	src := rules.NewMemory([]byte(grpcShedDoc("adaptive")))
	conn := saturatedServer(t, src)
	do := func(ctx context.Context) shedCall {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var trailer metadata.MD
		c := shedCall{start: time.Now()}
		err := conn.Invoke(ctx, shedMethod, wrapperspb.String("hi"), new(wrapperspb.StringValue), grpc.Trailer(&trailer))
		c.latency, c.code = time.Since(c.start), status.Code(err)
		if v := trailer.Get("grpc-retry-pushback-ms"); len(v) > 0 {
			c.pushback = v[0]
		}
		return c
	}
	var unloaded []time.Duration
	for range 40 {
		c := do(context.Background())
		if c.code != codes.OK {
			t.Fatalf("unloaded call: %v", c.code)
		}
		unloaded = append(unloaded, c.latency)
	}

	const capacity = int(shedSlots * time.Second / shedWork)
	const n = 3 * capacity * 3 // 3x capacity for 3 seconds
	calls := make([]shedCall, n)
	var wg sync.WaitGroup
	tick := time.NewTicker(time.Second / time.Duration(3*capacity))
	healthFailed := 0
	hc := healthpb.NewHealthClient(conn)
	for i := range n {
		<-tick.C
		wg.Add(1)
		go func() { defer wg.Done(); calls[i] = do(context.Background()) }()
		if i%60 == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				healthFailed++
				t.Logf("health check: %v", err)
			}
			cancel()
		}
	}
	tick.Stop()
	wg.Wait()

	from := calls[0].start.Add(time.Second)
	var admitted []time.Duration
	shed, other := 0, 0
	var last time.Time
	for _, c := range calls {
		switch c.code {
		case codes.OK:
			if c.start.After(from) {
				admitted = append(admitted, c.latency)
				if end := c.start.Add(c.latency); end.After(last) {
					last = end
				}
			}
		case codes.ResourceExhausted:
			shed++
			if c.pushback == "" {
				t.Errorf("a shed call has no grpc-retry-pushback-ms trailer")
			}
		default:
			other++
			if other < 5 {
				t.Errorf("call failed with %v", c.code)
			}
		}
	}
	goodput := float64(len(admitted)) / last.Sub(from).Seconds()
	slices.Sort(unloaded)
	slices.Sort(admitted)
	up99 := unloaded[len(unloaded)*99/100]
	ap99 := admitted[len(admitted)*99/100]
	t.Logf("unloaded p99 %v; under 3x load: admitted p99 %v, goodput %.0f/s of capacity %d/s, %d shed of %d", up99, ap99, goodput, capacity, shed, n)
	if healthFailed > 0 {
		t.Errorf("%d health checks failed under overload", healthFailed)
	}
	// Room for a loaded 2-core machine running -race (one stall puts the
	// few slowest of ~400 calls past 100ms); without shedding the
	// admitted p99 is seconds.
	if bound := 4*up99 + 100*time.Millisecond; ap99 > bound {
		t.Errorf("admitted p99 under 3x load is %v, want at most %v", ap99, bound)
	}
	if shed == 0 {
		t.Error("nothing was shed at 3x capacity")
	}
	if goodput < 0.6*float64(capacity) {
		t.Errorf("goodput %.0f/s, want at least 60%% of the capacity %d/s", goodput, capacity)
	}
}

// Switching inboundShedding between adaptive and off while the gRPC
// server is under load fails no admitted call: every call gets OK or,
// while shedding, RESOURCE_EXHAUSTED.
func TestInboundSheddingModeChangeUnderLoadGRPC(t *testing.T) {
	src := rules.NewMemory([]byte(grpcShedDoc("adaptive")))
	conn := saturatedServer(t, src)
	var wg sync.WaitGroup
	codesSeen := make([]codes.Code, 600)
	tick := time.NewTicker(time.Second / 300)
	defer tick.Stop()
	for i := range codesSeen {
		<-tick.C
		if i%60 == 59 {
			mode := "off"
			if i%120 == 119 {
				mode = "adaptive"
			}
			src.Set([]byte(grpcShedDoc(mode)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := conn.Invoke(ctx, shedMethod, wrapperspb.String("hi"), new(wrapperspb.StringValue))
			codesSeen[i] = status.Code(err)
		}()
	}
	wg.Wait()
	for i, c := range codesSeen {
		if c != codes.OK && c != codes.ResourceExhausted {
			t.Errorf("call %d: %v", i, c)
		}
	}
}
