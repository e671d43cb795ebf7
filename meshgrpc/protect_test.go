package meshgrpc_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/meshgrpc"
)

// echoDoc is a rule document for echo with protection added.
func echoDoc(protection string) string {
	return "apiVersion: lightmesh/v1\nservices:\n  echo:\n" + protection
}

func staticOf(servers ...*grpctest.Server) *discovery.Static {
	var list []discovery.Instance
	for _, s := range servers {
		list = append(list, discovery.Instance{Address: s.Addr})
	}
	return discovery.NewStatic(map[string][]discovery.Instance{"echo": list})
}

// The service breaker trips on Unavailable, fails fast with a clear status
// while open, and recovers after the open period.
func TestServiceBreaker(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Code.Store(uint32(codes.Unavailable))
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 3, failureRatio: 0.5, openBase: 1s, openMax: 1s, halfOpenProbes: 1}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	ctx := context.Background()
	for range 3 {
		if _, err := call(ctx, conn); status.Code(err) != codes.Unavailable {
			t.Fatalf("before tripping: %v", err)
		}
	}
	calls := s.Calls.Load()
	start := time.Now()
	_, err := call(ctx, conn)
	var open *mesh.CircuitOpenError
	if status.Code(err) != codes.Unavailable || !errors.Is(err, mesh.ErrCircuitOpen) || !errors.As(err, &open) || !open.ServiceLevel() {
		t.Fatalf("while open: %v, want Unavailable matching mesh.ErrCircuitOpen", err)
	}
	if !strings.Contains(status.Convert(err).Message(), `breaker of service "echo"`) {
		t.Fatalf("message %q does not say the service breaker refused", status.Convert(err).Message())
	}
	if d := time.Since(start); d > 250*time.Millisecond || s.Calls.Load() != calls {
		t.Fatalf("an open breaker took %v and let %d calls through", d, s.Calls.Load()-calls)
	}
	s.Code.Store(uint32(codes.OK))
	meshtest.WaitFor(t, 5*time.Second, "the breaker to recover", func() bool {
		name, err := call(ctx, conn)
		return err == nil && name == "s"
	})
}

// An instance breaker ejects the bad server while the others serve.
func TestInstanceBreakerEjects(t *testing.T) {
	good1, good2, bad := grpctest.Start(t, "good1"), grpctest.Start(t, "good2"), grpctest.Start(t, "bad")
	bad.Code.Store(uint32(codes.Internal))
	m, _ := newMesh(t, echoDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n"), staticOf(good1, good2, bad))
	conn := dial(t, m, "echo")
	// Let every connection come up first, so round-robin reaches all.
	meshtest.WaitFor(t, 5*time.Second, "all three servers to answer", func() bool {
		call(context.Background(), conn)
		return good1.Calls.Load() > 0 && good2.Calls.Load() > 0 && bad.Calls.Load() >= 2
	})
	badCalls := bad.Calls.Load()
	got := counts(context.Background(), conn, 30)
	if got["error"] != 0 || got["good1"]+got["good2"] != 30 {
		t.Fatalf("after ejection: %v, want every call on the good servers", got)
	}
	if bad.Calls.Load() != badCalls {
		t.Fatalf("the ejected server got %d more calls", bad.Calls.Load()-badCalls)
	}
}

func TestRateLimit(t *testing.T) {
	s := grpctest.Start(t, "s")
	m, _ := newMesh(t, echoDoc("    rateLimit: {rps: 0.001, burst: 3}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	var codesSeen []codes.Code
	for range 5 {
		_, err := call(context.Background(), conn)
		codesSeen = append(codesSeen, status.Code(err))
		if status.Code(err) == codes.ResourceExhausted && !errors.Is(err, mesh.ErrRateLimited) {
			t.Fatalf("limited call: %v does not match mesh.ErrRateLimited", err)
		}
	}
	if fmt.Sprint(codesSeen) != "[OK OK OK ResourceExhausted ResourceExhausted]" || s.Calls.Load() != 3 {
		t.Fatalf("codes %v, server reached %d times", codesSeen, s.Calls.Load())
	}
}

func TestTimeout(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Delay.Store(int64(2 * time.Second))
	m, _ := newMesh(t, echoDoc("    timeout: 100ms\n"), staticOf(s))
	conn := dial(t, m, "echo")
	start := time.Now()
	_, err := call(context.Background(), conn)
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > time.Second {
		t.Fatalf("err = %v after %v, want DeadlineExceeded after 100ms", err, time.Since(start))
	}
}

// TestTimeoutIsTheServersDeadline: the rule's timeout travels to the
// server as the call's deadline (grpc-timeout), the server's context ends
// at it (grpc-go's server sees the client's cancellation arrive first, as
// it does for a caller's own deadline), and the caller gets
// DeadlineExceeded then, not before.
func TestTimeoutIsTheServersDeadline(t *testing.T) {
	s := grpctest.Start(t, "s")
	saw := make(chan time.Duration, 1)
	ended := make(chan error, 1)
	fwd := func(ctx context.Context) (string, error) {
		d, ok := ctx.Deadline()
		if !ok {
			saw <- -1
		} else {
			saw <- time.Until(d)
		}
		<-ctx.Done()
		ended <- ctx.Err()
		return "", status.FromContextError(ctx.Err()).Err()
	}
	s.Forward.Store(&fwd)
	m, _ := newMesh(t, echoDoc("    timeout: 300ms\n"), staticOf(s))
	conn := dial(t, m, "echo")
	start := time.Now()
	_, err := call(context.Background(), conn)
	took := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded || took < 300*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("err = %v after %v, want DeadlineExceeded after 300ms", err, took)
	}
	if left := <-saw; left <= 0 || left > 300*time.Millisecond {
		t.Fatalf("the server's deadline was %v away, want within the rule's 300ms", left)
	}
	select {
	case err := <-ended:
		if err == nil {
			t.Fatal("the server's context ended without an error")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the server's context did not end")
	}
}

// Retries go to another instance, on the rule's conditions only.
func TestRetriesGoElsewhere(t *testing.T) {
	good, bad := grpctest.Start(t, "good"), grpctest.Start(t, "bad")
	bad.Code.Store(uint32(codes.Unavailable))
	m, _ := newMesh(t, echoDoc("    retry: {attempts: 2, backoff: 1ms, budget: 1}\n"), staticOf(good, bad))
	conn := dial(t, m, "echo")
	meshtest.WaitFor(t, 5*time.Second, "both servers to be reached", func() bool {
		call(context.Background(), conn)
		return good.Calls.Load() > 0 && bad.Calls.Load() > 0
	})
	got := counts(context.Background(), conn, 20)
	if got["good"] != 20 {
		t.Fatalf("with retries on UNAVAILABLE: %v, want every call to end on good", got)
	}
	// INTERNAL is not in the default conditions: not retried.
	bad.Code.Store(uint32(codes.Internal))
	got = counts(context.Background(), conn, 20)
	if got["error"] == 0 {
		t.Fatalf("INTERNAL was retried: %v", got)
	}
}

// Per-try timeout: a slow instance is cut and the call retried elsewhere
// — for gRPC only when the call may be sent again after the server may
// have acted on it: the rule says nonIdempotent: true, or the client named
// the method with WithIdempotentMethods (bug 8). Otherwise the cut call is
// not resent and fails DeadlineExceeded, the slow server having received
// it once.
func TestPerTryTimeout(t *testing.T) {
	const perTry = "    retry: {attempts: 1, perTryTimeout: 50ms, backoff: 1ms%s}\n"
	cases := []struct {
		name    string
		rule    string
		opts    []meshgrpc.Option
		resends bool
	}{
		{"default", "", nil, false},
		{"nonIdempotent", ", nonIdempotent: true", nil, true},
		{"idempotent method", "", []meshgrpc.Option{meshgrpc.WithIdempotentMethods(grpctest.CallMethod)}, true},
		{"idempotent service", "", []meshgrpc.Option{meshgrpc.WithIdempotentMethods("/lightmesh.test.Echo/")}, true},
		{"another method", "", []meshgrpc.Option{meshgrpc.WithIdempotentMethods("/lightmesh.test.Echo/Other")}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			slow, fast := grpctest.Start(t, "slow"), grpctest.Start(t, "fast")
			m, _ := newMesh(t, echoDoc(fmt.Sprintf(perTry, tc.rule)), staticOf(slow, fast))
			conn := dialWith(t, m, "echo", tc.opts...)
			meshtest.WaitFor(t, 5*time.Second, "both connections", func() bool {
				call(context.Background(), conn)
				return slow.Calls.Load() > 0 && fast.Calls.Load() > 0
			})
			slow.Delay.Store(int64(2 * time.Second))
			cut := 0
			for range 4 {
				before := slow.Calls.Load() + fast.Calls.Load()
				start := time.Now()
				name, err := call(context.Background(), conn)
				sent := slow.Calls.Load() + fast.Calls.Load() - before
				switch {
				case time.Since(start) > time.Second:
					t.Fatalf("%q %v after %v, want an answer within the per-try timeout", name, err, time.Since(start))
				case tc.resends && (err != nil || name != "fast"):
					t.Fatalf("%q %v, want fast: the call may be resent", name, err)
				case !tc.resends && err != nil && (status.Code(err) != codes.DeadlineExceeded || sent != 1):
					t.Fatalf("%v after %d tries, want DeadlineExceeded after one: the call must not be resent", err, sent)
				case err != nil:
					cut++
				}
			}
			if !tc.resends && cut == 0 {
				t.Fatal("no call went to the slow instance")
			}
		})
	}
}

// The retry budget caps the extra load in an outage.
func TestRetryBudget(t *testing.T) {
	a, b := grpctest.Start(t, "a"), grpctest.Start(t, "b")
	a.Code.Store(uint32(codes.Unavailable))
	b.Code.Store(uint32(codes.Unavailable))
	m, _ := newMesh(t, echoDoc("    retry: {attempts: 3, budget: 0.2, backoff: 1ms}\n"), staticOf(a, b))
	conn := dial(t, m, "echo")
	const n = 100
	for range n {
		if _, err := call(context.Background(), conn); status.Code(err) != codes.Unavailable {
			t.Fatalf("%v", err)
		}
	}
	if got := a.Calls.Load() + b.Calls.Load(); got > n+10+20 || got <= n {
		t.Fatalf("servers received %d calls for %d; the budget allows at most %d", got, n, n+30)
	}
}

// The caller's own deadline says nothing about the server: it does not
// count against the breaker.
func TestCallerCancellationIsNotAFailure(t *testing.T) {
	s := grpctest.Start(t, "s")
	s.Delay.Store(int64(time.Second))
	m, _ := newMesh(t, echoDoc("    breaker: {minRequests: 2, failureRatio: 0.5}\n"), staticOf(s))
	conn := dial(t, m, "echo")
	for range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		if _, err := grpctest.Call(ctx, conn); status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("err = %v, want the caller's deadline", err)
		}
		cancel()
	}
	for _, b := range m.Status().Breakers {
		if b.State != "closed" {
			t.Fatalf("caller deadlines tripped the breaker: %+v", b)
		}
	}
}

// The server side: the inbound limit of the local service answers
// ResourceExhausted with a pushback trailer, without reaching the handler.
func TestServerInboundLimit(t *testing.T) {
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rulesMemory(`apiVersion: lightmesh/v1
services:
  me:
    inbound:
      - name: echo-calls
        match: {path: {prefix: /lightmesh.test.Echo/}}
        rateLimit: {rps: 0.001, burst: 2}
`)), mesh.WithLocalService("me"))
	})
	s := grpctest.Start(t, "me", meshgrpc.ServerOptions(m)...)
	conn := plainConn(t, s.Addr)
	var trailer metadata.MD
	var got []codes.Code
	for range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := grpctest.Call(ctx, conn, grpc.Trailer(&trailer))
		cancel()
		got = append(got, status.Code(err))
	}
	if fmt.Sprint(got) != "[OK OK ResourceExhausted ResourceExhausted]" || s.Calls.Load() != 2 {
		t.Fatalf("codes %v, handler reached %d times", got, s.Calls.Load())
	}
	if v := trailer.Get("grpc-retry-pushback-ms"); len(v) != 1 || v[0] == "0" {
		t.Fatalf("pushback trailer %v", v)
	}
}

// gRPC calls are counted like HTTP ones, with the protocol label and the
// gRPC code names, and refusals only as rejections.
func TestMetrics(t *testing.T) {
	s := grpctest.Start(t, "s")
	reg := prometheus.NewRegistry()
	m, _ := newMesh(t, echoDoc("    rateLimit: {rps: 0.001, burst: 3}\n"), staticOf(s), mesh.WithRegisterer(reg))
	conn := dial(t, m, "echo")
	for range 2 {
		call(context.Background(), conn)
	}
	s.Code.Store(uint32(codes.NotFound))
	call(context.Background(), conn)
	call(context.Background(), conn) // rate limited
	out := map[string]string{"direction": "outbound", "protocol": "grpc", "destination_service": "echo"}
	with := func(kv ...string) map[string]string {
		l := maps.Clone(out)
		for i := 0; i < len(kv); i += 2 {
			l[kv[i]] = kv[i+1]
		}
		return l
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lightmesh_requests_total", with("code", "OK"), 2},
		{"lightmesh_requests_total", with("code", "NOT_FOUND"), 1},
		{"lightmesh_request_duration_seconds", out, 3},
		{"lightmesh_rejections_total", with("reason", "rate_limited"), 1},
	} {
		if got := meshtest.Metric(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}
