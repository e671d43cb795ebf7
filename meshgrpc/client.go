package meshgrpc

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// DialOptions returns the options that make a grpc-go client a mesh client
// of m: the lightmesh resolver for this client only, the lightmesh
// balancer as its default service config, and the unary and stream
// interceptors. Dial lightmesh:///<service>:
//
//	conn, err := grpc.NewClient("lightmesh:///user-api", meshgrpc.DialOptions(m)...)
//
// Add transport credentials and other options as usual. Calls on other
// ClientConns made with these interceptors pass through untouched.
func DialOptions(m *mesh.Mesh) []grpc.DialOption {
	eng := m.Engine()
	return []grpc.DialOption{
		grpc.WithResolvers(resolverBuilder{eng: eng}),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithChainUnaryInterceptor(UnaryClientInterceptor(m)),
		grpc.WithChainStreamInterceptor(StreamClientInterceptor(m)),
	}
}

// UnaryClientInterceptor returns the client interceptor of unary calls, for
// programs that assemble their dial options themselves (DialOptions
// includes it). It applies the rate limit, the service breaker, the
// timeout and retries of the matched route, propagates the lane and trace
// context in the outgoing metadata, and records metrics and spans.
func UnaryClientInterceptor(m *mesh.Mesh) grpc.UnaryClientInterceptor {
	eng := m.Engine()
	return func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		service, ok := serviceOf(conn.Target())
		if !ok {
			return invoker(ctx, method, req, reply, conn, opts...)
		}
		cc := newClientCall(eng, service, method)
		ctx, err := cc.open(ctx)
		if err == nil {
			cc.c.SetReplayable(true) // the request message is kept: resending it is safe for the rule's conditions
			cc.unary = unaryArgs{conn: conn, invoker: invoker, req: req, reply: reply, opts: opts}
			cc.parent = ctx
			err = cc.c.Run(ctx, cc)
			cc.c.Release()
		}
		return cc.finish(ctx, err)
	}
}

// StreamClientInterceptor returns the client interceptor of streams, for
// programs that assemble their dial options themselves (DialOptions
// includes it). Streams get the rate limit, the service breaker, lane and
// trace propagation, metrics and spans; they are not retried (a stream
// that has begun cannot be replayed) and the rule's timeout does not apply
// to them (it would cut long-lived streams): their context bounds them.
func StreamClientInterceptor(m *mesh.Mesh) grpc.StreamClientInterceptor {
	eng := m.Engine()
	return func(ctx context.Context, desc *grpc.StreamDesc, conn *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		service, ok := serviceOf(conn.Target())
		if !ok {
			return streamer(ctx, desc, conn, method, opts...)
		}
		cc := newClientCall(eng, service, method)
		ctx, err := cc.open(ctx)
		if err == nil {
			err = cc.c.BeginTry()
		}
		if err != nil {
			return nil, cc.finish(ctx, err)
		}
		cc.parent, cc.try = ctx, ctx
		cs, err := streamer(context.WithValue(ctx, callKey{}, cc), desc, conn, method, opts...)
		if err != nil {
			if perr := cc.c.PickErr(); perr != nil && perr != engine.ErrNoConnection {
				err = perr
			}
			return nil, cc.endStream(ctx, err)
		}
		s := &clientStream{ClientStream: cs, cc: cc, ctx: ctx, serverStreams: desc.ServerStreams}
		// A stream ends with its last message or error, or when the
		// caller cancels its context, whichever comes first.
		s.stop = context.AfterFunc(ctx, func() { s.end(ctx.Err()) })
		return s, nil
	}
}

// clientStream watches a stream for its end, to report it once.
type clientStream struct {
	grpc.ClientStream
	cc            *clientCall
	ctx           context.Context
	serverStreams bool
	stop          func() bool
	once          sync.Once
}

func (s *clientStream) end(err error) {
	s.once.Do(func() {
		s.stop()
		s.cc.endStream(s.ctx, err)
	})
}

// RecvMsg ends the stream on an error (io.EOF is its clean end), and after
// the one reply of a stream the server does not stream.
func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err == io.EOF:
		s.end(nil)
	case err != nil:
		s.end(err)
	case !s.serverStreams:
		s.end(nil)
	}
	return err
}

// SendMsg ends the stream on an error other than io.EOF (which means the
// stream ended and RecvMsg tells how).
func (s *clientStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err != nil && err != io.EOF {
		s.end(err)
	}
	return err
}

// Header ends the stream when it failed before its headers.
func (s *clientStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if err != nil {
		s.end(err)
	}
	return md, err
}

// callKey is the context key under which an interceptor hands its call to
// the picker.
type callKey struct{}

// clientCall is one RPC through the mesh: the gRPC adapter's side of an
// engine.Call.
type clientCall struct {
	c       engine.Call
	eng     *engine.Engine
	service string
	method  string
	md      metadata.MD // the outgoing metadata, lane and trace injected
	req     router.Request
	start   time.Time
	span    oteltrace.Span
	unary   unaryArgs
	release func() // of a demand made to look the service up on first use
	// The picker reports every attempt (grpc-go may make several for one
	// try) to the instance's breaker through done, with the ticket of the
	// pick it made: parent and try are the call's and the try's contexts.
	done        func(balancer.DoneInfo)
	inst        engine.InstanceTicket
	parent, try context.Context
	finished    atomic.Bool
}

// unaryArgs are the arguments of a unary call, for its tries.
type unaryArgs struct {
	conn       *grpc.ClientConn
	invoker    grpc.UnaryInvoker
	req, reply any
	opts       []grpc.CallOption
}

func newClientCall(eng *engine.Engine, service, method string) *clientCall {
	cc := &clientCall{eng: eng, service: service, method: method, start: time.Now()}
	cc.done = cc.attemptDone // one func value per call, not one per pick
	return cc
}

// open opens the call's span (in span mode), propagates, routes and
// applies the rate limit; it returns the call's context.
func (cc *clientCall) open(ctx context.Context) (context.Context, error) {
	ctx, cc.span = cc.eng.Propagator().StartRPCClient(ctx, cc.method, cc.service)
	ctx = cc.propagate(ctx)
	if err := cc.begin(ctx, true); err != nil {
		return ctx, err
	}
	return ctx, cc.c.Admit(cc.start)
}

// propagate writes the lane, trace context and request id of ctx into its
// outgoing metadata. grpc-go offers no way to read single outgoing keys
// without copying the whole metadata (grpc-go#8860), so the metadata is
// copied once, and only when the caller set any.
func (cc *clientCall) propagate(ctx context.Context) context.Context {
	md, _ := metadata.FromOutgoingContext(ctx)
	car := mdCarrier{md: md}
	cc.eng.Propagator().Inject(ctx, &car)
	cc.md = car.md
	if car.wrote {
		ctx = metadata.NewOutgoingContext(ctx, car.md)
	}
	return ctx
}

// FirstUseWait bounds how long the first call to a service the mesh does
// not know yet waits for the mesh to discover an instance of it (the same
// bound as mesh.WithMeshServices').
const FirstUseWait = engine.FirstUseWait

// begin matches the call against the service's routes on the State in
// force: its outgoing metadata as headers, its full method name as path.
// A service the mesh does not know yet (not named by the rules or
// WithServices, and this client's resolver not built yet) is looked up on
// first use: with wait, the call waits up to FirstUseWait for discovery to
// report an instance, and keeps the service discovered until it ends.
func (cc *clientCall) begin(ctx context.Context, wait bool) error {
	if cc.md == nil {
		cc.md, _ = metadata.FromOutgoingContext(ctx)
	}
	cc.req = router.Request{Method: "POST", Path: cc.method, Metadata: cc.md}
	err := cc.c.Begin(cc.eng.Load(), cc.service, &cc.req, cc.eng.Metrics())
	if err == router.ErrUnknownService && wait {
		cc.release = cc.eng.Demand(cc.service)
		if cc.eng.AwaitInstances(ctx, cc.service, FirstUseWait) || cc.eng.Load().Table().Has(cc.service) {
			err = cc.c.Begin(cc.eng.Load(), cc.service, &cc.req, cc.eng.Metrics())
		}
	}
	return err
}

// Try implements engine.Attempt: one unary call; the picker picks.
func (cc *clientCall) Try(ctx context.Context) engine.Outcome {
	a := &cc.unary
	cc.try = ctx
	return outcomeOf(a.invoker(context.WithValue(ctx, callKey{}, cc), cc.method, a.req, a.reply, a.conn, a.opts...))
}

// Discard implements engine.Attempt: a unary reply is simply overwritten
// by the next try.
func (cc *clientCall) Discard() {}

// attemptDone is the picker's Done callback: it reports one attempt to the
// breaker of the instance it was picked for. An attempt that sent nothing
// (grpc-go found the connection not ready, or will retry it transparently)
// counts for nothing.
func (cc *clientCall) attemptDone(di balancer.DoneInfo) {
	it := cc.inst
	cc.inst = engine.InstanceTicket{}
	o := outcomeOf(di.Err)
	callerDone, timedOut := engine.Judge(cc.parent, cc.try, &o)
	it.Done(&o, di.BytesSent || di.BytesReceived, callerDone, timedOut)
}

// outcomeOf turns a call's error into the engine's outcome.
func outcomeOf(err error) engine.Outcome {
	return engine.Outcome{GRPC: true, Code: uint32(status.Code(err)), Err: err}
}

// endStream ends a stream (or a call without interceptors), once: it
// reports the outcome to the service breaker and records the call; it
// returns the error as the caller gets it.
func (cc *clientCall) endStream(ctx context.Context, err error) error {
	if !cc.finished.CompareAndSwap(false, true) {
		return statusOf(err, cc.c.Result().Route)
	}
	o := outcomeOf(err)
	if stop := cc.c.EndTry(&o, engine.CallerEnded(ctx, &o), false); stop != nil {
		err = stop
	}
	cc.record(ctx, err)
	return statusOf(err, cc.c.Result().Route)
}

// finish records a call the interceptor saw end and returns its error as
// the caller gets it.
func (cc *clientCall) finish(ctx context.Context, err error) error {
	if cc.finished.CompareAndSwap(false, true) {
		cc.record(ctx, err)
	}
	return statusOf(err, cc.c.Result().Route)
}

// record writes the call's metrics, ends its span and ends a demand it
// made.
func (cc *clientCall) record(ctx context.Context, err error) {
	if cc.release != nil {
		cc.release()
	}
	code := status.Code(statusOf(err, ""))
	name := router.GRPCCodeName(uint32(code))
	cc.eng.Metrics().Finish(ctx, &cc.c, engine.GRPC, name, time.Since(cc.start), err)
	if cc.span != nil {
		if cc.span.IsRecording() {
			engine.Annotate(cc.span, &cc.c)
			engine.AnnotateReason(cc.span, cc.c.Reason(err, code != 0))
		}
		trace.EndRPC(cc.span, name, code != 0, err)
	}
}

func spanOf(ctx context.Context) oteltrace.Span { return oteltrace.SpanFromContext(ctx) }
