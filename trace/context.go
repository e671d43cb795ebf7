package trace

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// ctxKey is the type of this package's context keys.
type ctxKey int

const (
	laneCtxKey ctxKey = iota
	requestIDCtxKey
)

// ContextWithLane returns a copy of ctx carrying l, replacing any lane ctx
// already carries. Passing the empty lane clears the lane for calls made with
// the returned context.
func ContextWithLane(ctx context.Context, l Lane) context.Context {
	return context.WithValue(ctx, laneCtxKey, l)
}

// LaneFromContext returns the lane carried by ctx, or the empty lane. It does
// not allocate.
func LaneFromContext(ctx context.Context) Lane {
	if ctx == nil {
		return Lane{}
	}
	l, _ := ctx.Value(laneCtxKey).(Lane)
	return l
}

// ContextWithRequestID returns a copy of ctx carrying the request id id, which
// Inject sends under each request-id header (see WithRequestIDHeaders).
// An id that is empty, longer than MaxRequestIDLen bytes or not printable
// ASCII is not a valid header value and is ignored: ctx is returned
// unchanged.
func ContextWithRequestID(ctx context.Context, id string) context.Context {
	if !validRequestID(id) {
		return ctx
	}
	return context.WithValue(ctx, requestIDCtxKey, id)
}

// RequestIDFromContext returns the request id carried by ctx, or "".
func RequestIDFromContext(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	id, _ := ctx.Value(requestIDCtxKey).(string)
	return id
}

// TraceIDFromContext returns the hex trace id of the span (local or remote)
// carried by ctx, for logs, or "" if ctx carries no valid trace id.
func TraceIDFromContext(ctx context.Context) string {
	if ctx == nil {
		return ""
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
