package mesh

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// Middleware returns the server-side wrapper as a function, for routers
// that chain func(http.Handler) http.Handler.
func (m *Mesh) Middleware() func(http.Handler) http.Handler { return m.Handler }

// Handler wraps next so each request's lane (its lane headers or baggage),
// trace context and request id are in the request's context. Outgoing
// calls the handler makes through the mesh Transport with that context
// stay in the same lane.
//
// With WithLocalService, the first inbound route of that service matching
// the request applies its rate limit: a request over the limit gets 429
// Too Many Requests with a Retry-After header and does not reach next.
func (m *Mesh) Handler(next http.Handler) http.Handler {
	record := m.metrics != nil || m.prop.Mode() == trace.ModeSpans
	local := m.cfg.local
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if wait, limited := m.inboundLimited(r); limited {
			m.metrics.reject(inbound, local, reasonRateLimited)
			w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
			http.Error(w, "lightmesh: rate limited", http.StatusTooManyRequests)
			return
		}
		ctx := m.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		if !record {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		start := time.Now()
		ctx, span := m.prop.StartServer(ctx, r)
		if span.IsRecording() && local != "" {
			span.SetAttributes(trace.AttrService.String(local))
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(ctx))
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		trace.End(span, code, nil)
		m.metrics.observe(ctx, inbound, local, "", code, time.Since(start))
	})
}

// statusWriter records the status code a handler writes. Unwrap lets
// http.ResponseController reach the writer's Flush, Hijack and deadlines.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher when the underlying writer does.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.code == 0 {
			w.code = http.StatusOK
		}
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// inboundLimited applies the local service's inbound rate limits to r.
func (m *Mesh) inboundLimited(r *http.Request) (time.Duration, bool) {
	if m.cfg.local == "" {
		return 0, false
	}
	snap := m.snap.Load()
	p := snap.policies[m.cfg.local]
	if p == nil || len(p.inbound) == 0 {
		return 0, false
	}
	i, _ := snap.table.Rules().MatchInbound(m.cfg.local, &router.Request{Method: r.Method, Path: r.URL.Path, Header: r.Header})
	if i < 0 || p.inbound[i].limiter == nil || p.inbound[i].limiter.Allow() {
		return 0, false
	}
	return p.inbound[i].limiter.RetryAfter(), true
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1 and at
// most a day (a limiter that never refills reports an infinite wait).
func retryAfterSeconds(d time.Duration) int {
	s := math.Ceil(d.Seconds())
	return int(min(max(s, 1), 86400))
}
