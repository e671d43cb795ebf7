package engine

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/propagation"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// Incoming is one incoming call the mesh serves — an HTTP request through
// mesh.Handler or a gRPC call through meshgrpc's server interceptors —
// from Enter to Finish. The zero value is a call Enter refused.
type Incoming struct {
	eng      *Engine
	protocol string
	start    time.Time
	span     oteltrace.Span
	own      bool // the span is the mesh's, for the adapter to end
	// shed is the shedder the call holds a place in until Release (nil:
	// none), under shedPolicy.
	shed       *Shedder
	shedPolicy *router.ShedPolicy
}

// StartSpan starts the protocol's server span of an incoming call.
type StartSpan func(ctx context.Context) (context.Context, oteltrace.Span)

// Enter admits an incoming call of protocol (HTTP or GRPC) to the local
// service, the same seven steps for both: the first inbound route of the
// local service matching req applies its rate limit — over it, Enter
// counts the rejection and returns a *RateLimitError with how long until
// the limit admits a call; then the local service's inboundShedding —
// over its adaptive limit, a *ShedError (health checks and the mesh's
// own endpoints are never shed, see router.ShedExempt); then the lane, trace context and request id of
// carrier go into ctx; then a server span: the one already current in ctx
// when keep is true and there is one (otelgrpc's stats handler started
// it: it stays the parent of the handler's work), else the one start
// makes (nil: none); the span is given the local service's name. Finish
// records the call.
func (e *Engine) Enter(ctx context.Context, protocol string, req *router.Request, carrier propagation.TextMapCarrier, keep bool, start StartSpan) (Incoming, context.Context, time.Duration, error) {
	local := e.local
	st := e.Load()
	if wait, limited := st.InboundLimit(local, req); limited {
		e.metrics.Reject(Inbound, protocol, local, ReasonRateLimited)
		_, route := st.table.Rules().MatchInbound(local, req) // on refusal only: which route refused
		return Incoming{}, ctx, wait, &RateLimitError{Service: local, Route: route}
	}
	shedPolicy, wait, err := e.shedAdmit(st, protocol, req)
	if err != nil {
		return Incoming{}, ctx, wait, err
	}
	in := Incoming{eng: e, protocol: protocol, start: time.Now(), shedPolicy: shedPolicy}
	if shedPolicy != nil {
		in.shed = st.shed
	}
	existing := oteltrace.SpanFromContext(ctx)
	ctx = e.prop.Extract(ctx, carrier)
	ctx = e.Load().enterLane(ctx, local, req)
	switch {
	case keep && existing.SpanContext().IsValid():
		ctx = oteltrace.ContextWithSpan(ctx, existing)
		in.span = existing
	case start != nil:
		ctx, in.span = start(ctx)
		in.own = true
	}
	ctx = e.prop.MintRequestID(ctx, carrier)
	if local != "" && in.span != nil && in.span.IsRecording() {
		in.span.SetAttributes(trace.AttrService.String(local))
	}
	return in, ctx, 0, nil
}

// Span returns the call's server span when it is the mesh's own, for the
// adapter to end with the protocol's status; nil otherwise.
func (in *Incoming) Span() oteltrace.Span {
	if !in.own {
		return nil
	}
	return in.span
}

// Finish records the call in the metrics: its code label and how long it
// took; and releases its place under the adaptive inbound limit
// (Release).
func (in *Incoming) Finish(ctx context.Context, code string) {
	in.Release()
	if in.eng == nil {
		return
	}
	in.eng.metrics.Observe(ctx, Inbound, in.protocol, in.eng.local, "", code, time.Since(in.start))
}
