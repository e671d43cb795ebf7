package meshgrpc_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
)

// delayProxy forwards TCP connections to addr, delaying what the client
// sends by d; it returns its own address.
func delayProxy(t *testing.T, addr string, d time.Duration) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := lis.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { // client → server, late
				defer wg.Done()
				defer out.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := in.Read(buf)
					if n > 0 {
						time.Sleep(d)
						if _, werr := out.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server → client
				defer wg.Done()
				defer in.Close()
				io.Copy(in, out)
			}()
		}
	}()
	return lis.Addr().String()
}

// endCodes is a grpc stats.Handler that records the code of every RPC
// attempt's End, as an OpenTelemetry or Prometheus gRPC stats handler does.
type endCodes struct {
	mu    sync.Mutex
	codes []codes.Code
}

func (h *endCodes) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (h *endCodes) HandleRPC(_ context.Context, s stats.RPCStats) {
	if e, ok := s.(*stats.End); ok {
		h.mu.Lock()
		h.codes = append(h.codes, status.Code(e.Error))
		h.mu.Unlock()
	}
}
func (h *endCodes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h *endCodes) HandleConn(context.Context, stats.ConnStats)                       {}

// TestReviewTimeoutCodeInsideTheChain: when the route's timeout ends a
// unary call, what runs inside the mesh's interceptor (a caller's
// interceptor chained after DialOptions, a stats handler such as
// otelgrpc's) sees DEADLINE_EXCEEDED. A try context other than
// context.WithDeadline's can make grpc-go's derived context end Canceled
// (bench/PROFILE-NOTES.md, seventh round).
func TestReviewTimeoutCodeInsideTheChain(t *testing.T) {
	s := grpctest.Start(t, "s")
	// The server does not answer until the test ends, whatever its
	// context says, so that only a timeout ends the call.
	release, returned := make(chan struct{}), make(chan struct{})
	slow := func(context.Context) (string, error) {
		defer func() { returned <- struct{}{} }()
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		return "late", nil
	}
	s.Forward.Store(&slow)
	t.Cleanup(func() { close(release); <-returned })
	// The server hears of the call 100ms late (a slow link one way), so
	// its own deadline, taken from grpc-timeout, falls well after the
	// client's and cannot end the call first.
	proxy := delayProxy(t, s.Addr, 100*time.Millisecond)
	m, _ := newMesh(t, echoDoc("    timeout: 300ms\n"), discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: proxy}}}))
	var inner codes.Code
	sh := &endCodes{}
	conn := dial(t, m, "echo",
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			inner = status.Code(err)
			return err
		}),
		grpc.WithStatsHandler(sh))
	_, err := call(context.Background(), conn)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("caller: %v, want DeadlineExceeded", err)
	}
	sh.mu.Lock()
	ends := append([]codes.Code(nil), sh.codes...)
	sh.mu.Unlock()
	if inner != codes.DeadlineExceeded || len(ends) != 1 || ends[0] != codes.DeadlineExceeded {
		t.Fatalf("inside the mesh's interceptor: chained interceptor saw %v, stats handler End %v; want DeadlineExceeded for both", inner, ends)
	}
}

// TestReviewCallerCancelIsNotATimeout: the caller cancels its call well
// before the route's timeout; an interceptor chained after the mesh's
// takes a while to return (it flushes a log, say) and the route's
// timeout passes meanwhile. The caller must get CANCELLED, as with a
// context.WithDeadline try context, not DEADLINE_EXCEEDED.
func TestReviewCallerCancelIsNotATimeout(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Delay.Store(int64(3 * time.Second))
	m, _ := newMesh(t, echoDoc("    timeout: 150ms\n"), staticOf(s))
	conn := dial(t, m, "echo",
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			err := invoker(ctx, method, req, reply, cc, opts...)
			time.Sleep(400 * time.Millisecond) // well past the route's 150ms
			return err
		}))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	_, err := grpctest.Call(ctx, conn)
	if status.Code(err) != codes.Canceled {
		t.Fatalf("caller canceled at 20ms (route timeout 150ms): got %v, want Canceled", err)
	}
}
