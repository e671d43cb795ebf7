package lifecycle_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/lifecycle"
)

// TestShutdownOrder: Run deregisters, keeps serving during Settle (a
// request sent then is answered), drains (a request in flight when the
// drain begins completes), and closes only after the drain, in order.
func TestShutdownOrder(t *testing.T) {
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "ok")
	})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	url := "http://" + lis.Addr().String()
	get := func(path string) error {
		resp, err := http.Get(url + path)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}

	var (
		mu    sync.Mutex
		steps []string
	)
	step := func(s string) {
		mu.Lock()
		steps = append(steps, s)
		mu.Unlock()
	}
	deregistered := make(chan struct{})
	slow := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		done <- lifecycle.Shutdown{
			Deregister: []func(context.Context) error{func(context.Context) error {
				step("deregister")
				close(deregistered)
				return nil
			}},
			Settle: 300 * time.Millisecond,
			Drain: []func(context.Context) error{lifecycle.HTTP(srv), func(context.Context) error {
				step("drain")
				return nil
			}},
			Close:  []func() error{func() error { step("close mesh"); return nil }, func() error { step("close sources"); return nil }},
			Logger: slog.New(slog.DiscardHandler),
		}.Run(context.Background())
	}()
	<-deregistered
	if err := get("/"); err != nil {
		t.Fatalf("a request during Settle failed: %v", err)
	}
	go func() { slow <- get("/slow") }()
	time.Sleep(400 * time.Millisecond) // the drain has begun, the slow request is in flight
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while a request was in flight", err)
	default:
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("the request in flight during the drain failed: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := get("/"); err == nil {
		t.Fatal("the server still answers after Run")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"deregister", "drain", "close mesh", "close sources"}
	if len(steps) != len(want) {
		t.Fatalf("steps %v, want %v", steps, want)
	}
	for i := range want {
		if steps[i] != want[i] {
			t.Fatalf("steps %v, want %v", steps, want)
		}
	}
}

// stopper records how a gRPC-like server was stopped.
type stopper struct {
	graceful chan struct{} // GracefulStop blocks until closed or Stop
	stopped  chan struct{}
	once     sync.Once
}

func (s *stopper) GracefulStop() {
	select {
	case <-s.graceful:
	case <-s.stopped:
	}
}
func (s *stopper) Stop() { s.once.Do(func() { close(s.stopped) }) }

// TestGRPCDrainBounded: a graceful stop that outlasts the shutdown's
// context is cut with Stop, and Run reports the context's error.
func TestGRPCDrainBounded(t *testing.T) {
	s := &stopper{graceful: make(chan struct{}), stopped: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := lifecycle.Shutdown{Settle: -1, Drain: []func(context.Context) error{lifecycle.GRPC(s)}, Logger: slog.New(slog.DiscardHandler)}.Run(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want the deadline", err)
	}
	select {
	case <-s.stopped:
	default:
		t.Fatal("Stop was not called")
	}
}
