package mesh

import (
	"bufio"
	"context"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/felixge/httpsnoop"
	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// Handler wraps next so each request's lane (its lane headers or baggage),
// trace context and request id are in the request's context. Outgoing
// calls the handler makes through the mesh Transport with that context
// stay in the same lane.
//
// With WithLocalService, the first inbound route of that service matching
// the request applies its rate limit: a request over the limit gets 429
// Too Many Requests with a Retry-After header and does not reach next
// (WithRefusalWriter answers in the service's own format instead). With
// the service's inboundShedding in mode adaptive, a request over the
// service's adaptive concurrency limit gets the same answer with reason
// "shed"; health checks (/healthz, /readyz, /livez, /health, /ready,
// /live), /metrics and paths under /debug/pprof/ and /lightmesh/ are
// never shed (router.ShedExempt), and a request whose handler flushes or
// hijacks the connection stops counting under the limit from then on.
//
// When metrics or spans are on, the ResponseWriter next sees is wrapped
// with github.com/felixge/httpsnoop, which keeps every optional interface
// of the original (http.Hijacker for WebSocket upgrades, http.Flusher,
// io.ReaderFrom, http.Pusher) visible to type assertions.
func (m *Mesh) Handler(next http.Handler) http.Handler {
	prop := m.eng.Propagator()
	record := m.metrics != nil || prop.Mode() == trace.ModeSpans
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var start engine.StartSpan
		if record {
			start = func(ctx context.Context) (context.Context, oteltrace.Span) { return prop.StartServer(ctx, r) }
		}
		in, ctx, wait, err := m.eng.Enter(r.Context(), engine.HTTP,
			&router.Request{Method: r.Method, Path: r.URL.Path, Header: r.Header, RawQuery: r.URL.RawQuery}, propagation.HeaderCarrier(r.Header), false, start)
		if err != nil {
			m.refuse(w, r, err, wait)
			return
		}
		defer in.Release() // also when next panics
		if in.Shedding() {
			w = detachOnStream(w, &in)
		}
		if !record {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		code := 0
		sw := httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(c int) {
					// An informational status (103 Early Hints, 100
					// Continue) comes before the final one; 101 ends
					// the exchange.
					if code == 0 && (c >= 200 || c == http.StatusSwitchingProtocols) {
						code = c
					}
					next(c)
				}
			},
			Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(b []byte) (int, error) {
					if code == 0 {
						code = http.StatusOK
					}
					return next(b)
				}
			},
			Hijack: func(next httpsnoop.HijackFunc) httpsnoop.HijackFunc {
				return func() (net.Conn, *bufio.ReadWriter, error) {
					if code == 0 {
						code = http.StatusSwitchingProtocols
					}
					return next()
				}
			},
		})
		next.ServeHTTP(sw, r.WithContext(ctx))
		if code == 0 {
			code = http.StatusOK
		}
		if span := in.Span(); span != nil {
			trace.End(span, code, nil)
		}
		in.Finish(ctx, engine.HTTPCode(code))
	})
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1 and at
// most a day (a limiter that never refills reports an infinite wait).
func retryAfterSeconds(d time.Duration) int {
	s := math.Ceil(d.Seconds())
	return int(min(max(s, 1), 86400))
}
