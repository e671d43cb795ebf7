package mesh_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// durationSum returns the sum and count of the outbound request duration
// histogram of service svc.
func durationSum(t *testing.T, reg *prometheus.Registry) (sum float64, count uint64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "lightmesh_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			sum += h.GetSampleSum()
			count += h.GetSampleCount()
		}
	}
	return sum, count
}

// A call whose timeout runs out during a retry's backoff lasts the whole
// timeout for the caller; the latency histogram must say so too. With a
// slow-call threshold the breaker reads each try's end, and the call's
// latency was taken from that end, so the backoff the caller waited was
// missing from lightmesh_request_duration_seconds.
func TestLatencyMetricCountsBackoffThatEndsTheCall(t *testing.T) {
	for _, breaker := range []string{"", "    breaker: {minRequests: 100, slowCallThreshold: 10s}\n"} {
		bad := newFlaky(t, "bad")
		bad.status.Store(http.StatusServiceUnavailable)
		doc := svcDoc("    timeout: 300ms\n    retry: {attempts: 2, backoff: 2s}\n" + breaker)
		reg := prometheus.NewRegistry()
		m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": {bad.instance()}}), mesh.WithRegisterer(reg))
		client := &http.Client{Transport: m.Transport(nil)}
		start := time.Now()
		resp, err := client.Get("http://svc/")
		took := time.Since(start)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("breaker %q: got %d, want the call's timeout", breaker, resp.StatusCode)
		}
		if !errors.Is(err, context.DeadlineExceeded) || took < 250*time.Millisecond {
			t.Fatalf("breaker %q: %v after %v, want a timeout after 300ms", breaker, err, took)
		}
		sum, count := durationSum(t, reg)
		if count != 1 {
			t.Fatalf("breaker %q: %d observations, want 1", breaker, count)
		}
		if got := time.Duration(sum * float64(time.Second)); got < 250*time.Millisecond || got > took {
			t.Errorf("breaker %q: the caller waited %v, lightmesh_request_duration_seconds observed %v", breaker, took, got)
		}
	}
}

// stallKey marks the context of a call whose propagation stalls until the
// channel it holds is closed.
type stallKey struct{}

// stallPropagator is a caller's propagator (trace.WithPropagator) that,
// for a call marked with stallKey, says it has started and waits: the
// mesh's work between the call's clock read and its rate limit takes as
// long as a preempted goroutine or a GC pause can make it.
type stallPropagator struct{ entered chan struct{} }

func (p stallPropagator) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	if release, ok := ctx.Value(stallKey{}).(chan struct{}); ok {
		close(p.entered)
		<-release
	}
	propagation.TraceContext{}.Inject(ctx, c)
}

func (stallPropagator) Extract(ctx context.Context, _ propagation.TextMapCarrier) context.Context {
	return ctx
}

func (stallPropagator) Fields() []string { return []string{"traceparent"} }

// A call whose clock read comes to the rate limiter late (its goroutine
// was held up between reading the clock and taking a token) must not hand
// the limiter back the time in between: x/time/rate takes a time before
// its last one as the new last, so the next call is refilled for that
// time a second time. With the perf round's single clock read (the
// limiter given the call's start rather than reading the clock) a call
// held up for a second gave a 10 rps limiter a second bucket: 29 calls in
// just over a second instead of at most 21.
func TestRateLimitIsNotRefilledByALateCall(t *testing.T) {
	good := newFlaky(t, "good")
	doc := svcDoc("    rateLimit: {rps: 10, burst: 10}\n")
	prop := stallPropagator{entered: make(chan struct{})}
	m := newMesh(t, rules.NewMemory([]byte(doc)),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {good.instance()}}),
		mesh.WithTrace(trace.WithPropagator(prop)))
	client := &http.Client{Transport: m.Transport(nil)}
	// A valid span context, so that each call propagates one.
	sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{
		TraceID: oteltrace.TraceID{1}, SpanID: oteltrace.SpanID{1}, TraceFlags: oteltrace.FlagsSampled})
	base := oteltrace.ContextWithSpanContext(context.Background(), sc)
	call := func(ctx context.Context) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	calls := func(n int) (ok int) {
		for range n {
			if call(base) {
				ok++
			}
		}
		return ok
	}

	start := time.Now()
	release := make(chan struct{})
	late := make(chan bool, 1)
	go func() { late <- call(context.WithValue(base, stallKey{}, release)) }()
	<-prop.entered
	passed := calls(9) // the bucket's 10 tokens, less the one the late call may take
	time.Sleep(time.Second)
	passed += calls(9) // refilled by a second at 10 rps
	close(release)
	if <-late {
		passed++
	}
	passed += calls(10) // what the late call's old clock read refilled
	elapsed := time.Since(start)
	if limit := 10 + int(10*elapsed.Seconds()); passed > limit {
		t.Errorf("%d calls passed a limit of 10 rps with a burst of 10 in %v, want at most %d", passed, elapsed, limit)
	}
}

// The breakers' windows roll by the call's start, and only a breaker that
// times calls makes the engine read each try's end: over HTTP, slow
// successes must still trip a breaker with a slow-call threshold, and
// fast ones must not.
func TestSlowCallsTripTheServiceBreakerOverHTTP(t *testing.T) {
	for _, delay := range []time.Duration{0, 80 * time.Millisecond} {
		backend := newFlaky(t, "backend")
		backend.delay.Store(int64(delay))
		doc := svcDoc("    breaker: {minRequests: 4, slowCallThreshold: 40ms, slowCallRatio: 0.5, openBase: 1m}\n")
		_, _, client := meshFor(t, doc, backend)
		for range 4 {
			resp, err := client.Get("http://svc/")
			if err != nil {
				t.Fatalf("delay %v: %v", delay, err)
			}
			resp.Body.Close()
		}
		resp, err := client.Get("http://svc/")
		if err == nil {
			resp.Body.Close()
		}
		if open := errors.Is(err, mesh.ErrCircuitOpen); open != (delay > 0) {
			t.Errorf("backend answering in %v: fifth call's error %v, want the circuit open only for slow answers", delay, err)
		}
	}
}
