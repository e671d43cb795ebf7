// Package floor is the least a client-side mesh must do per call to keep
// lightmesh's contracts, written as plainly as the libraries allow, for
// benchmarks to measure lightmesh against. A floor knows everything in
// advance (the instance, the lane's baggage value, the metric series):
// it routes nothing, looks nothing up and has no rules. What lightmesh
// spends beyond the floor doing the same work is lightmesh's own cost,
// and a target set below a floor without a Protection cannot be met by
// any implementation that keeps the contracts (with one, see Protection
// below: it is the plain libraries' cost, not the least).
//
// The contracts kept: the caller's request and its header map are never
// changed (http.RoundTripper); the lane travels as W3C baggage and the
// trace as a traceparent; with a Protection, the call is bounded by a
// timeout that lasts until the caller closes the body, admitted by a rate
// limiter, a service breaker and an instance breaker, and counted in a
// request counter and a latency histogram.
//
// A Protection is a floor for the wire work only: its limiter and
// breakers are the plain libraries' (x/time/rate, gobreaker), which is
// what a service composing them would pay, not the least a breaker can
// cost. A gobreaker Execute takes a mutex twice and reads the clock
// (120-160 ns on the benchmark machine) where a failure-ratio breaker's
// closed path can be a few atomic operations (about 3 ns), so lightmesh's
// cost above floor-full understates its own cost by up to about 0.3 µs. A
// Protection keeps no retry budget (lightmesh's full stack, with retries,
// counts every call into one), which errs the other way.
package floor

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	oteltrace "go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Protection is what lightmesh's full stack does around a call, with the
// plain libraries it competes with: a timeout (context.WithDeadline), a
// rate limiter (x/time/rate), a service and an instance breaker
// (gobreaker) and Prometheus metrics (a counter and a histogram whose
// series are resolved in advance). The histogram is classic only;
// lightmesh's is classic and native, which costs it about 50 ns a call
// more (bench/PROFILE-NOTES.md, eighth round).
type Protection struct {
	timeout           time.Duration
	limiter           *rate.Limiter
	service, instance *gobreaker.CircuitBreaker[struct{}]
	requests          prometheus.Counter
	latency           prometheus.Observer
}

// NewProtection returns a Protection with the given timeout (0: none),
// a limiter that never refuses and its metrics registered with reg.
func NewProtection(timeout time.Duration, reg prometheus.Registerer) *Protection {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "floor_requests_total", Help: "Calls."}, []string{"service", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "floor_request_duration_seconds", Help: "Call latency."}, []string{"service"})
	reg.MustRegister(requests, latency)
	return &Protection{
		timeout:  timeout,
		limiter:  rate.NewLimiter(1e12, 1e9),
		service:  gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "service"}),
		instance: gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "instance"}),
		requests: requests.WithLabelValues("svc", "200"),
		latency:  latency.WithLabelValues("svc"),
	}
}

var (
	errLimited = errors.New("floor: rate limited")
	errFailed  = errors.New("floor: server error")
)

// admit applies the limiter at start and runs send through both breakers;
// failed reports whether the answer counts as a failure.
func (p *Protection) admit(start time.Time, send func() (failed bool, err error)) error {
	if !p.limiter.AllowN(start, 1) {
		return errLimited
	}
	_, err := p.service.Execute(func() (struct{}, error) {
		return p.instance.Execute(func() (struct{}, error) {
			failed, err := send()
			if err == nil && failed {
				err = errFailed
			}
			return struct{}{}, err
		})
	})
	return err
}

// record counts a call that started at start.
func (p *Protection) record(start time.Time) {
	p.requests.Inc()
	p.latency.Observe(time.Since(start).Seconds())
}

// SampledParent returns the context the benchmarks send their calls in:
// inside a sampled remote span, as a service's outgoing calls are, so
// that a floor, lightmesh and otel all have a traceparent to inject.
func SampledParent() context.Context {
	sc := oteltrace.NewSpanContext(oteltrace.SpanContextConfig{
		TraceID:    oteltrace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     oteltrace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: oteltrace.FlagsSampled,
		Remote:     true,
	})
	return oteltrace.ContextWithRemoteSpanContext(context.Background(), sc)
}

// traceparent writes the W3C traceparent of sc into buf and returns it as
// a string sharing buf, which the caller never reuses.
func traceparent(buf *[55]byte, sc oteltrace.SpanContext) string {
	tid, sid := sc.TraceID(), sc.SpanID()
	copy(buf[:], "00-")
	hex.Encode(buf[3:35], tid[:])
	buf[35] = '-'
	hex.Encode(buf[36:52], sid[:])
	copy(buf[52:], "-00")
	if sc.IsSampled() {
		buf[54] = '1'
	}
	return unsafe.String(&buf[0], len(buf))
}

// RoundTripper sends every request to Addr through Base the way
// lightmesh's transport does, and does nothing else: one allocation
// holding a shallow copy of the request and of its URL with Addr as host
// (and, with a Protection, the body wrapper that ends the timeout); a
// copy of the header map with the lane's baggage added when the request
// has the lane header and, with Trace, a traceparent from the context's
// span.
type RoundTripper struct {
	Base        http.RoundTripper
	Addr        string
	LaneHeader  string // canonical, e.g. "X-Env"
	LaneBaggage string // the baggage value sent for it, known in advance
	Trace       bool
	Protect     *Protection // nil: none
}

// RoundTrip implements http.RoundTripper.
func (f *RoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	p := f.Protect
	var start time.Time
	if p != nil {
		start = time.Now()
	}
	out := new(struct {
		req  http.Request
		url  url.URL
		vals [2]string
		tp   [55]byte
		body cancelBody
	})
	ctx := req.Context()
	if p != nil && p.timeout > 0 {
		ctx, out.body.cancel = context.WithDeadline(ctx, start.Add(p.timeout)) // start is read: no second clock read
	}
	if ctx == req.Context() {
		out.req = *req // WithContext would copy the request twice, as lightmesh does not
	} else {
		out.req = *req.WithContext(ctx)
	}
	out.url = *req.URL
	out.url.Host = f.Addr
	out.req.URL = &out.url
	if out.req.Host == "" {
		out.req.Host = req.URL.Host
	}
	h := make(http.Header, len(req.Header)+2)
	for k, v := range req.Header {
		h[k] = v[:len(v):len(v)]
	}
	if len(req.Header[f.LaneHeader]) > 0 {
		out.vals[0] = f.LaneBaggage
		h["Baggage"] = out.vals[0:1:1]
	}
	if f.Trace {
		if sc := oteltrace.SpanContextFromContext(ctx); sc.IsValid() {
			out.vals[1] = traceparent(&out.tp, sc)
			h["Traceparent"] = out.vals[1:2:2]
		}
	}
	out.req.Header = h
	if p == nil {
		return f.Base.RoundTrip(&out.req)
	}
	var resp *http.Response
	err := p.admit(start, func() (bool, error) {
		var err error
		resp, err = f.Base.RoundTrip(&out.req)
		return err == nil && resp.StatusCode >= 500, err
	})
	if resp == nil {
		if out.body.cancel != nil {
			out.body.cancel()
		}
		return nil, err
	}
	p.record(start)
	if out.body.cancel != nil {
		out.body.ReadCloser = resp.Body
		resp.Body = &out.body
	}
	return resp, nil
}

// cancelBody ends the call's timeout when the caller closes the body. It
// is mesh's cancelBody written again on purpose: a floor uses nothing of
// the code it measures.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// UnaryInterceptor returns the least a gRPC client interceptor must do to
// send a call with its lane and trace the way lightmesh does: copy the
// outgoing metadata (grpc-go has no public way to read one outgoing key
// without copying them all), add the lane's baggage (laneBaggage, when the
// metadata has laneKey) and the traceparent, and, with p, the protection
// around the call.
func UnaryInterceptor(laneKey, laneBaggage string, p *Protection) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var start time.Time
		if p != nil {
			start = time.Now()
			if p.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, start.Add(p.timeout))
				defer cancel()
			}
		}
		md, _ := metadata.FromOutgoingContext(ctx)
		if md == nil {
			md = make(metadata.MD, 2)
		}
		if len(md[laneKey]) > 0 {
			md["baggage"] = []string{laneBaggage}
		}
		if sc := oteltrace.SpanContextFromContext(ctx); sc.IsValid() {
			buf := new([55]byte)
			md["traceparent"] = []string{traceparent(buf, sc)}
		}
		ctx = metadata.NewOutgoingContext(ctx, md)
		if p == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		var err error
		if aerr := p.admit(start, func() (bool, error) {
			err = invoker(ctx, method, req, reply, cc, opts...)
			return err != nil, nil
		}); aerr != nil && err == nil {
			err = aerr
		}
		p.record(start)
		return err
	}
}
