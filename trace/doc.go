// Package trace carries a request's lane, trace context and request id from
// hop to hop, and creates HTTP client and server spans when asked.
//
// # Lanes
//
// A lane is the set of routing labels a request carries, such as
// x-env=staging. Its keys are lowercase header names; a Propagator reads the
// keys given by WithLaneKeys (default just "x-env"). The lane lives in the
// context (ContextWithLane, LaneFromContext): a service's inbound lane is
// extracted into the request context, and every outgoing call made with that
// context carries it on, so A → B → C stays in the staging lane without
// service code copying headers.
//
// # Wire format
//
// On the wire a lane label travels twice:
//
//   - as the plain header, "X-Env: staging", so routing rules on the next hop
//     match it;
//   - as a W3C baggage member named BaggagePrefix + key,
//     "baggage: lightmesh.lane.x-env=staging", so it survives hops through
//     services that forward baggage but not unknown headers.
//
// Label values are restricted (see NewLane) so that both forms carry the same
// bytes with no escaping. Trace context travels as W3C traceparent and
// tracestate, and the request id as X-Request-Id and X-Trace-Id (see
// WithRequestIDHeaders). With WithRequestIDMinting a server mints a request
// id (UUIDv4, UUIDv7 or the W3C trace id) for a request that arrives without
// one (MintRequestID).
//
// # Precedence
//
// Extract: for each lane key, a valid header on the incoming request wins
// over the lightmesh.lane.<key> baggage member; a header whose value is not a
// valid label value is ignored and the baggage member, if valid, is used.
// Baggage members under the prefix for keys that are not lane keys of this
// Propagator are not part of the lane but are forwarded with the rest of the
// baggage.
//
// Inject: the outgoing lane is the context's lane, except that a valid lane
// header the caller already put on the outgoing request wins for its key. The
// caller's headers are never overwritten; the lane's baggage members are set
// to the outgoing lane and the caller's own baggage members are kept.
//
// # Lanes at the edge
//
// A service facing the public internet must not let strangers pick its
// lane: with WithoutInboundLanes, Extract reads no lane header and drops the
// lightmesh.lane.* baggage members, so the service's calls go where
// requests without a lane go. Trace context, the rest of the baggage and
// the request id still propagate, and a lane the service sets itself with
// ContextWithLane still travels on.
//
// # Propagator default
//
// Without WithPropagator, New uses otel.GetTextMapPropagator() if a global
// propagator is installed at that time, and W3C TraceContext+Baggage
// otherwise (otel's default propagator propagates nothing, which would break
// lanes silently). Install the global propagator before calling New, or pass
// WithPropagator. Whatever the propagator, W3C Baggage is added if it does
// not already propagate the "baggage" field.
//
// # Hostile input
//
// Extract never fails: invalid input is dropped and the request proceeds
// with whatever valid state remains, and its cost is bounded whatever the
// input size.
//
//   - A malformed traceparent is ignored (the request starts a new trace).
//   - Baggage is ignored whole when all baggage headers together exceed
//     8192 bytes (the W3C limit) or 128 comma-separated list-members (twice
//     the 64 members the W3C spec requires propagating; without this cap,
//     8 KiB of duplicate or invalid members costs thousands of allocations).
//     Otherwise otel parses it: it keeps at most 64 members and skips
//     members that are malformed or badly percent-encoded.
//   - A lane header or lightmesh.lane.* member whose value fails NewLane's
//     validation is ignored; at most MaxLaneLabels lane keys are read, and
//     of a repeated header only the first value.
//   - A request id longer than MaxRequestIDLen bytes or not printable ASCII
//     is ignored.
//
// Inject keeps the outgoing baggage within the W3C limits (see
// Propagator.Inject) and only writes header values that passed validation.
//
// # Modes and cost
//
// In ModePropagate (the default) a Propagator creates no spans: Inject and
// Extract only move what the context and headers carry, and StartClient and
// StartServer return a non-recording span. With no span, no baggage, no lane
// and no request id, Inject and Extract do not allocate. ModeSpans adds a
// client span per outgoing call and a server span per incoming request, with
// the HTTP semantic conventions (semconv v1.43.0) and the lightmesh.*
// attribute keys.
//
// # Integrating
//
// A client http.RoundTripper, per request r:
//
//	req := r.Clone(r.Context())                  // never mutate the caller's request
//	ctx, span := p.StartClient(req.Context(), req, trace.AttrService.String(svc))
//	p.Inject(ctx, propagation.HeaderCarrier(req.Header)) // lane headers now on req
//	// route on req.Header (and LaneFromContext(ctx)); pick subset and instance
//	span.SetAttributes(trace.AttrSubset.String(subset), trace.AttrInstance.String(addr))
//	resp, err := base.RoundTrip(req.WithContext(ctx))
//	code := 0
//	if resp != nil { code = resp.StatusCode }
//	trace.End(span, code, err)
//
// For a retry to another instance, start a new client span and Inject again
// on a fresh clone of the original request.
//
// A server http.Handler, per request r:
//
//	ctx := p.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
//	ctx, span := p.StartServer(ctx, r, trace.AttrService.String(local))
//	sw := &statusWriter{ResponseWriter: w}      // records the status code
//	next.ServeHTTP(sw, r.WithContext(ctx))
//	trace.End(span, sw.code, nil)
//
// gRPC uses the same Extract and Inject with a propagation.TextMapCarrier
// over its metadata (lowercase keys).
package trace
