package trace

import (
	"strconv"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Mode selects whether a Propagator creates spans.
type Mode int

const (
	// ModePropagate, the default, only injects and extracts trace context,
	// baggage, lane and request id; StartClient and StartServer return a
	// non-recording span and create nothing.
	ModePropagate Mode = iota
	// ModeSpans also creates a client span per outgoing call (StartClient)
	// and a server span per incoming request (StartServer).
	ModeSpans
)

// String returns "propagate", "spans" or "Mode(n)".
func (m Mode) String() string {
	switch m {
	case ModePropagate:
		return "propagate"
	case ModeSpans:
		return "spans"
	default:
		return "Mode(" + strconv.Itoa(int(m)) + ")"
	}
}

// DefaultLaneKey is the lane key a Propagator reads when WithLaneKeys is not
// given.
const DefaultLaneKey = "x-env"

// Option configures a Propagator. Options are applied by New in order; a
// later option overrides an earlier one.
type Option interface {
	apply(*config)
}

type config struct {
	tp            trace.TracerProvider
	prop          propagation.TextMapPropagator
	mode          Mode
	laneKeys      []string
	idKeys        []string
	noInboundLane bool
	mint          RequestIDFormat
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTracerProvider sets the TracerProvider used for spans in ModeSpans. The
// default is otel.GetTracerProvider() resolved once by New; the global
// provider delegates to whatever is installed later, so that is safe. A nil tp
// is ignored.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	})
}

// WithPropagator sets the propagator for trace context and baggage. The
// default is otel.GetTextMapPropagator() resolved once by New, or W3C
// TraceContext+Baggage when no global propagator is installed at that time.
// If p does not propagate the "baggage" field, W3C Baggage is added to it,
// because the lane travels in baggage. A nil p is ignored.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) {
		if p != nil {
			c.prop = p
		}
	})
}

// WithMode sets the mode; the default is ModePropagate. An unknown mode is
// ignored.
func WithMode(m Mode) Option {
	return optionFunc(func(c *config) {
		if m == ModePropagate || m == ModeSpans {
			c.mode = m
		}
	})
}

// WithLaneKeys sets the lane keys: the header names (and baggage member
// suffixes) Extract reads lane labels from. The default is
// [DefaultLaneKey] ("x-env"). Keys are lowercased; keys that are not valid
// label keys (see NewLane) and duplicates are dropped, and at most
// MaxLaneLabels are kept; Propagator.LaneKeys reports the result (empty if
// no key was valid: then no lane is extracted). Calling WithLaneKeys with no
// keys is ignored.
func WithLaneKeys(keys ...string) Option {
	keys = append([]string(nil), keys...)
	return optionFunc(func(c *config) {
		if len(keys) > 0 {
			c.laneKeys = keys
		}
	})
}

// WithRequestIDHeaders sets the headers that carry the request id, in
// order of preference. Extract takes the id from the first of them the
// carrier holds with a valid value; Inject writes it under each of them
// the carrier lacks or holds an invalid value under, so services that set or read their own header (a
// middleware that sets X-Trace-ID per request, say) keep seeing it on
// every hop. The default is [RequestIDHeader] and [TraceIDHeader]. Names are case-insensitive; names
// that are not header tokens, that this package writes itself
// (traceparent, tracestate, baggage) or that are hop-by-hop or reserved by
// gRPC are dropped, as are duplicates; a lane key that is also a request-id
// header is no lane key. Propagator.RequestIDHeaders reports the result.
// Calling it with no names is ignored.
func WithRequestIDHeaders(names ...string) Option {
	names = append([]string(nil), names...)
	return optionFunc(func(c *config) {
		if len(names) > 0 {
			c.idKeys = names
		}
	})
}

// WithoutInboundLanes makes Extract ignore the lane an incoming request
// carries: its lane headers (X-Env: staging) and every baggage member
// named BaggagePrefix + key (lightmesh.lane.x-env=staging) are dropped,
// whatever the key; the members are removed from the extracted baggage, so
// they are not forwarded either. Use it on a service facing the public
// internet, so that a stranger cannot send its calls into a lane and reach
// staging instances.
//
// Everything else is still read: the trace context, the rest of the
// baggage and the request id (X-Request-Id, which selects no instance and
// is validated like any input). A lane the context already holds is kept,
// so the service can still put a request it trusts into a lane itself with
// ContextWithLane (after authenticating it, say). Inject is unchanged: the
// context's lane travels on, and so does a lane header the service sets on
// an outgoing request itself — a reverse proxy copying incoming headers
// onto its outgoing requests must leave out the lane headers and the
// baggage header (or at least its lightmesh.lane.* members).
//
// A mesh extracts with one Propagator in its HTTP Handler and its gRPC
// server interceptors, so mesh.WithTrace(trace.WithoutInboundLanes())
// covers both. Propagator.InboundLanes reports the setting.
func WithoutInboundLanes() Option {
	return optionFunc(func(c *config) { c.noInboundLane = true })
}
