package meshgrpc_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// TestEjectionCapHoldsWithEveryInstanceFailing: four servers all answer
// Internal and every outlier breaker opens; with the default
// maxEjectionPercent (50) two keep taking calls (the caller sees their
// Internal, not Unavailable from an ejected route).
func TestEjectionCapHoldsWithEveryInstanceFailing(t *testing.T) {
	var servers []*grpctest.Server
	for _, name := range []string{"a", "b", "c", "d"} {
		s := grpctest.Start(t, name)
		s.Code.Store(uint32(codes.Internal))
		servers = append(servers, s)
	}
	m, _ := newMesh(t, echoDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n"), staticOf(servers...))
	conn := dial(t, m, "echo")
	ctx := context.Background()
	meshtest.WaitFor(t, 5*time.Second, "every breaker to open", func() bool {
		call(ctx, conn)
		open := 0
		for _, b := range m.Status().Breakers {
			if b.Instance != "" && b.State == "open" {
				open++
			}
		}
		return open == 4
	})
	before := make([]int64, len(servers))
	for i, s := range servers {
		before[i] = s.Calls.Load()
	}
	for range 40 {
		_, err := call(ctx, conn)
		if status.Code(err) != codes.Internal || errors.Is(err, mesh.ErrCircuitOpen) {
			t.Fatalf("with every breaker open: %v, want the servers' Internal", err)
		}
	}
	serving := 0
	for i, s := range servers {
		if s.Calls.Load() > before[i] {
			serving++
		}
	}
	if serving != 2 {
		t.Fatalf("%d servers still take calls, want 2 (half of 4)", serving)
	}
}

// TestEjectionCapPrefersHealthyInstances: of three servers two answer
// Internal and both their outlier breakers open; the default cap ejects
// one, and the one over the cap takes calls only when no healthy server
// would: every call reaches the healthy one (before, every other call
// went to the failing server over the cap).
func TestEjectionCapPrefersHealthyInstances(t *testing.T) {
	a, b, ok := grpctest.Start(t, "a"), grpctest.Start(t, "b"), grpctest.Start(t, "ok")
	a.Code.Store(uint32(codes.Internal))
	b.Code.Store(uint32(codes.Internal))
	m, _ := newMesh(t, echoDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n"), staticOf(a, b, ok))
	conn := dial(t, m, "echo")
	ctx := context.Background()
	// Until both failing servers' breakers are open and the healthy one
	// has answered (so that it is connected: on a loaded machine it may
	// not be when the others' breakers open).
	meshtest.WaitFor(t, 5*time.Second, "both failing servers' breakers to open and the healthy one to answer", func() bool {
		call(ctx, conn)
		open := 0
		for _, br := range m.Status().Breakers {
			if br.Instance != "" && br.State == "open" {
				open++
			}
		}
		return open == 2 && ok.Calls.Load() > 0
	})
	failed := 0
	for range 40 {
		if _, err := call(ctx, conn); err != nil {
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 40 calls failed on the server over the ejection cap while a healthy one was there", failed)
	}
}

// TestSlowInstanceIsEjected: an instance whose unary calls answer OK but
// slower than outlierDetection's slowCallThreshold is ejected by its
// outlier breaker, and later calls go to the fast instance only.
func TestSlowInstanceIsEjected(t *testing.T) {
	slow, fast := grpctest.Start(t, "slow"), grpctest.Start(t, "fast")
	slow.Delay.Store(int64(150 * time.Millisecond))
	m, _ := newMesh(t, echoDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, slowCallThreshold: 100ms, slowCallRatio: 0.5, openBase: 1h, openMax: 1h}\n"), staticOf(slow, fast))
	conn := dial(t, m, "echo")
	ctx := context.Background()
	// Round robin over the ready instances: call until the slow one has
	// answered minRequests calls (it may not be ready for the first ones),
	// every slow one OK.
	for i := 0; slow.Calls.Load() < 2; i++ {
		if i == 40 {
			t.Fatalf("the slow instance took %d of 40 calls, want 2", slow.Calls.Load())
		}
		if _, err := call(ctx, conn); err != nil {
			t.Fatal(err)
		}
	}
	before := slow.Calls.Load()
	for range 20 {
		got, err := call(ctx, conn)
		if err != nil || got != "fast" {
			t.Fatalf("after the slow instance's slow calls: %q, %v; want fast", got, err)
		}
	}
	if n := slow.Calls.Load() - before; n != 0 {
		t.Fatalf("the slow instance took %d more calls after it was ejected", n)
	}
}

// TestWindowsCountAttemptsWhenTheyEnd: a breaker's window counts each
// attempt when it ends, the outlier breaker's and the service breaker's.
// One call whose three attempts on an instance come 600 ms apart (the
// server's pushback) spans 1.2 s, so a 1 s window never holds its three
// failures at once and minRequests 3 is never reached: the breaker stays
// closed. Counting every attempt at the call's start would pack them into
// one bucket and open it (for an hour here) on failures spread over more
// than its window.
func TestWindowsCountAttemptsWhenTheyEnd(t *testing.T) {
	for _, field := range []string{"outlierDetection", "breaker"} {
		t.Run(field, func(t *testing.T) {
			var attempts atomic.Int64
			s := grpctest.Start(t, "s", grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
				attempts.Add(1)
				grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", "600"))
				return nil, status.Error(codes.Unavailable, "down for a bit")
			}))
			m, _ := newMesh(t, echoDoc(
				"    retry: {attempts: 2, backoff: 1ms, budget: 1, on: [unavailable]}\n"+
					"    "+field+": {minRequests: 3, failureRatio: 1, window: 1s, buckets: 10, openBase: 1h, openMax: 1h}\n"), staticOf(s))
			conn := dial(t, m, "echo")
			start := time.Now()
			if _, err := call(context.Background(), conn); status.Code(err) != codes.Unavailable {
				t.Fatalf("the call: %v, want the server's Unavailable", err)
			}
			if n, took := attempts.Load(), time.Since(start); n != 3 || took < 1100*time.Millisecond {
				t.Fatalf("setup: %d attempts in %v, want 3 over at least 1.2 s", n, took)
			}
			want := "" // the service breaker's
			if field == "outlierDetection" {
				want = s.Addr
			}
			found := false
			for _, b := range m.Status().Breakers {
				if b.Instance != want {
					continue
				}
				found = true
				if b.State != "closed" {
					t.Fatalf("the %s is %s after three failures spread over 1.2 s, with a 1 s window and minRequests 3", field, b.State)
				}
			}
			if !found {
				t.Fatalf("no %s breaker in the status: %+v", field, m.Status().Breakers)
			}
		})
	}
}
