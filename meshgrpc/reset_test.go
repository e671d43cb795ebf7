package meshgrpc_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// cutProxy forwards TCP connections to a backend on 127.0.0.1:0 until
// cut closes those open, as a broken network or a crashed peer does.
type cutProxy struct {
	Addr  string
	lis   net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startCutProxy(t *testing.T, backend string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{Addr: lis.Addr().String(), lis: lis}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, b)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); io.Copy(b, c); b.Close() }()
			go func() { defer p.wg.Done(); io.Copy(c, b); c.Close() }()
		}
	}()
	t.Cleanup(func() { lis.Close(); p.cut(); p.wg.Wait() })
	return p
}

// cut closes every connection open through the proxy.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A unary call whose connection breaks after the server received it
// (grpc-go reports UNAVAILABLE, nothing came back) may have been acted
// on: by default it is not resent, although UNAVAILABLE is a listed code;
// a method the client names idempotent is.
func TestResetAfterTheServerReceivedIt(t *testing.T) {
	for _, c := range []struct {
		name       string
		idempotent bool
		wantCalls  int64
		wantCode   codes.Code
	}{
		{"not idempotent", false, 1, codes.Unavailable},
		{"idempotent", true, 2, codes.OK},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := grpctest.Start(t, "s")
			p := startCutProxy(t, s.Addr)
			var once sync.Once
			fwd := func(ctx context.Context) (string, error) {
				cut := false
				once.Do(func() { cut = true })
				if !cut {
					return "", nil
				}
				p.cut()
				<-ctx.Done()
				return "", ctx.Err()
			}
			s.Forward.Store(&fwd)
			static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {{Address: p.Addr}}})
			m, _ := newMesh(t, echoDoc("    retry: {attempts: 2, backoff: 1ms}\n"), static)
			var opts []meshgrpc.Option
			if c.idempotent {
				opts = append(opts, meshgrpc.WithIdempotentMethods(grpctest.CallMethod))
			}
			conn := dialWith(t, m, "echo", opts...)
			_, err := call(context.Background(), conn)
			if status.Code(err) != c.wantCode || s.Calls.Load() != c.wantCalls {
				t.Fatalf("call: %v; the server got it %d times, want %v and %d", err, s.Calls.Load(), c.wantCode, c.wantCalls)
			}
		})
	}
}
