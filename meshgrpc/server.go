package meshgrpc

import (
	"context"
	"errors"
	"strconv"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/internal/meshlink"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// ServerOptions returns the options that make a grpc-go server a mesh
// server of m: its unary and stream interceptors. Of opts, only
// WithRefusalStatus applies to servers.
//
//	srv := grpc.NewServer(meshgrpc.ServerOptions(m)...)
func ServerOptions(m *mesh.Mesh, opts ...Option) []grpc.ServerOption {
	eng := m.Engine(meshlink.Key{})
	refusal := newConfig(opts).refusalStatus
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unaryServerInterceptor(eng, refusal)),
		grpc.ChainStreamInterceptor(streamServerInterceptor(eng, refusal)),
	}
}

// refusalFunc builds the status of a call the mesh refuses; nil for the
// default (WithRefusalStatus).
type refusalFunc = func(context.Context, mesh.Refusal) *status.Status

// unaryServerInterceptor is the server interceptor of unary calls: it puts
// the call's lane, trace context and request id into the handler's
// context, applies the inbound rate limit of the mesh's local service
// (WithLocalService), records metrics and, in span mode, a server span.
func unaryServerInterceptor(eng *engine.Engine, refusal refusalFunc) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		in, ctx, err := enter(ctx, eng, info.FullMethod, refusal)
		if err != nil {
			return nil, err
		}
		defer in.Release() // also when handler panics
		resp, err := handler(ctx, req)
		finish(ctx, &in, err)
		return resp, err
	}
}

// streamServerInterceptor does for each stream what
// unaryServerInterceptor does for a call.
func streamServerInterceptor(eng *engine.Engine, refusal refusalFunc) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		in, ctx, err := enter(ss.Context(), eng, info.FullMethod, refusal)
		if err != nil {
			return err
		}
		in.Detach() // shed when over the limit, but a stream's life is no latency
		err = handler(srv, &serverStream{ServerStream: ss, ctx: ctx})
		finish(ctx, &in, err)
		return err
	}
}

// serverStream gives the handler the mesh's context.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

// Context returns the stream's context with the lane and trace context.
func (s *serverStream) Context() context.Context { return s.ctx }

// enter admits an incoming call through the engine's one inbound path
// (the same as mesh.Handler's): the inbound limit — over it, a
// ResourceExhausted status with a grpc-retry-pushback-ms trailer — then
// the lane and trace context into ctx and, in span mode, a server span. A
// span a stats handler (otelgrpc) started for the call stays the current
// span, so there are never two server spans and the handler's work is its
// child.
func enter(ctx context.Context, eng *engine.Engine, method string, refusal refusalFunc) (engine.Incoming, context.Context, error) {
	start := func(ctx context.Context) (context.Context, oteltrace.Span) {
		addr := ""
		if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
			addr = p.Addr.String()
		}
		return eng.Propagator().StartRPCServer(ctx, method, addr)
	}
	in, ctx, wait, err := eng.Enter(ctx, engine.GRPC, &router.Request{Method: "POST", Path: method, Getter: incomingHeaders{ctx}}, incoming{ctx}, true, start)
	if err != nil {
		// Rounded up: a client that waits exactly this long (gRFC A6)
		// must find the limit refilled.
		ms := wait / time.Millisecond
		if wait%time.Millisecond != 0 {
			ms++
		}
		ms = max(ms, 1)
		grpc.SetTrailer(ctx, metadata.Pairs("grpc-retry-pushback-ms", strconv.FormatInt(int64(ms), 10)))
		if refusal != nil {
			if st := callRefusal(ctx, eng, refusal, engine.NewRefusal(err, wait)); st != nil && st.Code() != codes.OK {
				return in, ctx, &meshError{st: st, cause: err}
			}
		}
		if errors.Is(err, engine.ErrShed) {
			return in, ctx, &meshError{st: status.Newf(codes.ResourceExhausted, "lightmesh: shed: service %q is over its adaptive concurrency limit", eng.Local()), cause: err}
		}
		return in, ctx, &meshError{st: status.Newf(codes.ResourceExhausted, "lightmesh: rate limited: inbound limit of service %q", eng.Local()), cause: err}
	}
	return in, ctx, nil
}

// callRefusal returns refusal's status for rf, or nil, logged as an
// error, when refusal panics: grpc-go recovers no panic in an
// interceptor, and a service must not end because its error envelope
// code failed while it was over its limit.
func callRefusal(ctx context.Context, eng *engine.Engine, refusal refusalFunc, rf mesh.Refusal) (st *status.Status) {
	defer func() {
		if p := recover(); p != nil {
			eng.Logger().Error("lightmesh: the refusal status function (meshgrpc.WithRefusalStatus) panicked; the call is refused with the default status",
				"service", rf.Service, "route", rf.Route, "panic", p)
			st = nil
		}
	}()
	return refusal(ctx, rf)
}

// finish records the call's metrics and ends lightmesh's span with the
// code grpc-go sends for err: a handler's bare context error goes out as
// DEADLINE_EXCEEDED or CANCELLED, not UNKNOWN.
func finish(ctx context.Context, in *engine.Incoming, err error) {
	code := wireCode(err)
	name := router.GRPCCodeName(uint32(code))
	if span := in.Span(); span != nil {
		trace.EndRPC(span, name, serverFault(code), err)
	}
	in.Finish(ctx, name)
}

// wireCode is the code grpc-go's server sends for a handler's error: its
// status when it has one, else that of a context error, else UNKNOWN.
func wireCode(err error) codes.Code {
	if st, ok := status.FromError(err); ok {
		return st.Code()
	}
	return status.FromContextError(err).Code()
}

// serverFault reports whether code is a server error by the RPC semantic
// conventions.
func serverFault(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}
