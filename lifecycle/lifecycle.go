// Package lifecycle stops a service instance without failing a request:
// it takes the instance out of the registry, waits while the callers'
// discovery sees it leave (still serving what they send meanwhile), then
// drains the servers and closes the mesh and the sources, in that order.
//
//	stop := lifecycle.Shutdown{
//		Deregister: []func(context.Context) error{func(context.Context) error { return reg.Close() }},
//		Settle:     2 * time.Second, // Nacos; etcd needs far less
//		Drain:      []func(context.Context) error{lifecycle.HTTP(httpSrv), lifecycle.GRPC(grpcSrv)},
//		Close:      []func() error{m.Close, disc.Close, src.Close},
//	}
//	<-sigterm
//	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
//	defer cancel()
//	err := stop.Run(ctx)
//
// Each step in its place matters: draining first would refuse the calls
// that callers, not yet told, still send (connection refused, or GOAWAY
// on gRPC); deregistering without the wait has the same effect, a few
// hundred milliseconds later; closing the mesh before draining fails the
// calls in flight that call other services.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// DefaultSettle is Shutdown's wait between deregistering and draining
// when Settle is zero. It covers Nacos, whose server pushes a naming
// change after a batching delay (500 ms by default) to every subscriber;
// etcd's watches deliver a deletion within milliseconds, and a shorter
// Settle suffices there. The README gives the measured figures.
const DefaultSettle = 2 * time.Second

// Shutdown is the order in which an instance leaves. The zero value does
// nothing but wait DefaultSettle; Run runs it once.
type Shutdown struct {
	// Deregister takes the instance out of the registry: the Close of a
	// nacos.Registration or an etcd.Registration, or a change that marks
	// the instance disabled or of weight 0. They run one after another;
	// an error is logged and returned, and the shutdown goes on.
	Deregister []func(context.Context) error
	// Settle is how long Run waits after Deregister, with the servers
	// still serving, for the callers' discovery to see the instance go
	// (DefaultSettle when zero; negative does not wait).
	Settle time.Duration
	// Drain stops the servers: each stops accepting and waits for the
	// requests in flight (HTTP, GRPC). They run at once, all bounded by
	// Run's ctx.
	Drain []func(context.Context) error
	// Close closes what is left, in order: the meshes first (they use
	// the sources), then the discovery and rule sources.
	Close []func() error
	// Logger receives a line per step (slog.Default() when nil).
	Logger *slog.Logger
}

// Run runs the steps in order and returns their errors joined. ctx bounds
// the whole shutdown: when it ends, the wait ends and the drains stop
// waiting (GRPC stops at once, http.Server.Shutdown returns ctx's error);
// the closes still run.
func (s Shutdown) Run(ctx context.Context) error {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	start := time.Now()
	var errs []error
	for _, dereg := range s.Deregister {
		if err := dereg(ctx); err != nil {
			log.Warn("lightmesh: deregistration failed; the instance leaves when the registry notices", "err", err)
			errs = append(errs, fmt.Errorf("deregister: %w", err))
		}
	}
	settle := s.Settle
	if settle == 0 {
		settle = DefaultSettle
	}
	if settle > 0 {
		log.Info("lightmesh: deregistered; serving while callers catch up", "settle", settle)
		t := time.NewTimer(settle)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, drain := range s.Drain {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := drain(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("drain: %w", err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, c := range s.Close {
		if err := c(); err != nil {
			errs = append(errs, fmt.Errorf("close: %w", err))
		}
	}
	err := errors.Join(errs...)
	log.Info("lightmesh: shut down", "took", time.Since(start).Round(time.Millisecond), "err", err)
	return err
}

// HTTP drains srv: http.Server.Shutdown, which stops accepting, closes
// idle connections and waits for the requests in flight until ctx ends.
func HTTP(srv *http.Server) func(context.Context) error {
	return func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	}
}

// GracefulStopper is a *grpc.Server (the package does not import grpc,
// so that an HTTP-only program does not link it).
type GracefulStopper interface {
	GracefulStop()
	Stop()
}

// GRPC drains srv: GracefulStop, which sends GOAWAY, stops accepting and
// waits for the calls and streams in flight; when ctx ends first, Stop
// ends them, and ctx's error is returned.
func GRPC(srv GracefulStopper) func(context.Context) error {
	return func(ctx context.Context) error {
		done := make(chan struct{})
		go func() {
			srv.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
			return nil
		case <-ctx.Done():
			srv.Stop()
			<-done
			return ctx.Err()
		}
	}
}
