package trace

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/propagation"
)

// RequestIDFormat selects the request ids a Propagator mints for requests
// that arrive without one (see WithRequestIDMinting).
type RequestIDFormat int

const (
	// NoRequestIDs, the default, mints nothing: a request without a
	// request id has none, and none is sent on.
	NoRequestIDs RequestIDFormat = iota
	// UUIDv4 mints random RFC 9562 version 4 UUIDs
	// (6f1c3e0a-8b2d-4f5e-9a7c-1d2e3f405162).
	UUIDv4
	// UUIDv7 mints RFC 9562 version 7 UUIDs: a millisecond Unix time then
	// random bits, so ids sort by the time they were minted.
	UUIDv7
	// W3CTraceID uses the request's trace id, 32 lowercase hex digits, so
	// that the request id found in a log line is the trace to look up: the
	// trace id of the incoming traceparent, or of the server span the mesh
	// (ModeSpans) or a stats handler started. A request with no trace at
	// all gets a random id of the same form.
	W3CTraceID
)

// String returns "none", "uuidv4", "uuidv7", "w3c-trace-id" or
// "RequestIDFormat(n)".
func (f RequestIDFormat) String() string {
	switch f {
	case NoRequestIDs:
		return "none"
	case UUIDv4:
		return "uuidv4"
	case UUIDv7:
		return "uuidv7"
	case W3CTraceID:
		return "w3c-trace-id"
	default:
		return "RequestIDFormat(" + strconv.Itoa(int(f)) + ")"
	}
}

// WithRequestIDMinting makes the mesh mint a request id, in format f, for
// every incoming request (HTTP, and gRPC through meshgrpc's server
// interceptors) that arrives without a valid one under any of the
// request-id headers (WithRequestIDHeaders). The id is in the handler's
// context (RequestIDFromContext) and, like a received one, is sent under
// each request-id header on every outgoing call made with that context;
// an incoming HTTP request also gets it under each request-id header it
// lacks or holds an invalid id under, so a framework middleware or
// handler reading X-Request-Id (or X-Trace-Id) from the request sees it.
// A received id is always kept, and is written the same way under the
// request-id headers it did not arrive under, so such a middleware never
// makes up a second id for the request. An unknown format is ignored;
// the default is NoRequestIDs.
func WithRequestIDMinting(f RequestIDFormat) Option {
	return optionFunc(func(c *config) {
		if f >= NoRequestIDs && f <= W3CTraceID {
			c.mint = f
		}
	})
}

// RequestIDMinting reports the format the Propagator mints request ids in
// (see WithRequestIDMinting).
func (p *Propagator) RequestIDMinting() RequestIDFormat { return p.mint }

// MintRequestID returns ctx with a new request id when minting is on
// (WithRequestIDMinting) and ctx carries none. With minting on it writes
// ctx's id, new or received, into carrier under each request-id header
// carrier lacks or holds an invalid id under; without, it returns ctx and
// leaves carrier unchanged. Call it on the server side after Extract and after
// starting the server span, so that W3CTraceID can use the span's trace
// id; mesh.Handler and meshgrpc's server interceptors do.
func (p *Propagator) MintRequestID(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if p.mint == NoRequestIDs {
		return ctx
	}
	if id := RequestIDFromContext(ctx); id != "" {
		// A received id: the headers it did not come under get it too,
		// so a middleware reading another of them makes up no second id.
		if carrier != nil {
			p.injectRequestID(id, wrapCarrier(carrier))
		}
		return ctx
	}
	var id string
	switch p.mint {
	case UUIDv4:
		id = newUUID(4, time.Time{})
	case UUIDv7:
		id = newUUID(7, time.Now())
	case W3CTraceID:
		if id = TraceIDFromContext(ctx); id == "" {
			id = randomTraceID()
		}
	}
	ctx = context.WithValue(ctx, requestIDCtxKey, id)
	if carrier != nil {
		p.injectRequestID(id, wrapCarrier(carrier))
	}
	return ctx
}

// newUUID returns an RFC 9562 UUID of version 4 (random) or 7 (now's Unix
// milliseconds, then random), in its 36-character text form.
func newUUID(version byte, now time.Time) string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // crypto/rand.Read never fails (Go 1.24+)
	if version == 7 {
		var ms [8]byte
		binary.BigEndian.PutUint64(ms[:], uint64(now.UnixMilli()))
		copy(u[:6], ms[2:])
	}
	u[6] = u[6]&0x0f | version<<4
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// randomTraceID returns 16 random bytes, not all zero, as 32 lowercase hex
// digits: the form of a W3C trace id.
func randomTraceID() string {
	var t [16]byte
	for t == ([16]byte{}) {
		_, _ = rand.Read(t[:])
	}
	return hex.EncodeToString(t[:])
}
