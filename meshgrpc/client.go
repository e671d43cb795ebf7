package meshgrpc

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/internal/meshlink"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// DialOptions returns the options that make a grpc-go client a mesh client
// of m: the lightmesh resolver for this client only (it names the
// lightmesh balancer in the service config it sends), and the unary and
// stream interceptors. It installs no stats handler. Dial
// lightmesh:///<service>:
//
//	conn, err := grpc.NewClient("lightmesh:///user-api", meshgrpc.DialOptions(m)...)
//
// When m has an identity (mesh.WithIdentity), the options also set the
// client's transport credentials (grpcidentity.RulesDialOptions): calls to
// a service whose rules set serverID use mutual TLS presenting m's SVID
// and accept only a server with that SPIFFE ID (another fails the call,
// naming both IDs, before any request byte); other calls go in plaintext.
// Give no grpc.WithTransportCredentials of your own then: given after
// DialOptions it replaces the mesh's, and calls to services with serverID
// fail with codes.Unauthenticated saying so.
//
// Without an identity add transport credentials and other options as
// usual; calls to a service whose rules set serverID then fail with
// codes.Unauthenticated (errors.Is mesh.ErrNoIdentity) before reaching
// it, whatever credentials are given, as m.Transport's do. Give the client's
// own service config (method configs) with WithServiceConfig, not
// grpc.WithDefaultServiceConfig, and the methods that may be resent after
// the server may have acted on them with WithIdempotentMethods.
func DialOptions(m *mesh.Mesh, opts ...Option) []grpc.DialOption {
	eng := m.Engine(meshlink.Key{})
	cfg := newConfig(opts)
	dopts := []grpc.DialOption{
		grpc.WithResolvers(resolverBuilder{eng: eng, serviceConfig: cfg.serviceConfig}),
		// The resolver's service config is the one in force; this default
		// makes grpc.NewClient reject a bad one at once.
		grpc.WithDefaultServiceConfig(cfg.serviceConfig),
		grpc.WithChainUnaryInterceptor(unaryInterceptor(eng, &cfg, m)),
		grpc.WithChainStreamInterceptor(streamInterceptor(eng, &cfg, m)),
	}
	if src := m.Identity(); src != nil {
		dopts = append(dopts, grpcidentity.RulesDialOptions(src, m)...)
	}
	return dopts
}

// noIdentity returns the refusal of a call to service from mesh m without
// an identity when the rules in force set the service's serverID (as
// m.Transport refuses it with mesh.ErrNoIdentity): Unauthenticated,
// unwrapping to mesh.ErrNoIdentity. Nil for other calls, and always nil
// from a mesh with an identity (grpcidentity's credentials check those).
// The interceptors ask it first, so that a refused call touches no
// breaker, limit or metric.
func noIdentity(m *mesh.Mesh, service string) error {
	if m.Identity() != nil {
		return nil
	}
	want, ok := m.ServerID(service)
	if !ok {
		return nil
	}
	return &meshError{st: status.New(codes.Unauthenticated, fmt.Sprintf("%v: calling %s, whose servers must present %s", mesh.ErrNoIdentity, service, want)), cause: mesh.ErrNoIdentity}
}

// unaryInterceptor is the client interceptor of unary calls. It applies
// the rate limit, the service breaker, the timeout and retries of the
// matched route, propagates the lane and trace context in the outgoing
// metadata, and records metrics and spans.
//
// The per-call state is pooled: grpc-go runs the picker and its Done
// within the invoker, and what it may keep, the try's context and the
// metadata, is in the call's callScratch, never reused. An interceptor
// chained after the mesh's may outlive the call, though (a mirror or a
// hedge still running when the call returns): the call closes its
// scratch when its tries are over, so that a later pick with its context
// fails instead of picking for the call that reuses the state, and the
// state of a call with a pick still out is not reused.
func unaryInterceptor(eng *engine.Engine, cfg *config, m *mesh.Mesh) grpc.UnaryClientInterceptor {
	calls := &sync.Pool{New: func() any {
		cc := new(clientCall)
		cc.done = cc.attemptDone // one func value per pooled call, not one per call or pick
		return cc
	}}
	return func(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		service, ok := serviceOf(conn.Target())
		if !ok {
			return invoker(ctx, method, req, reply, conn, opts...)
		}
		opts, onFinish := splitOnFinish(opts)
		if err := noIdentity(m, service); err != nil {
			runOnFinish(onFinish, err) // refused before grpc-go saw it, which would have run them
			return err
		}
		if ctx2, cancel := cfg.methodDeadline(ctx, conn, method); cancel != nil {
			ctx = ctx2
			defer cancel()
		}
		cc := calls.Get().(*clientCall)
		cc.init(eng, conn, service, method)
		ctx, err := cc.open(ctx)
		if err == nil {
			// The request message is kept: resending it is safe on a
			// connect failure and the listed codes; after a per-try
			// timeout or a reset only for an idempotent method.
			cc.c.SetReplayable(true, cc.c.NonIdempotentAllowed() || cfg.idempotentMethod(method))
			cc.unary = unaryArgs{conn: conn, invoker: invoker, req: req, reply: reply, opts: opts}
			err = cc.c.Run(ctx, cc)
			cc.c.Release()
		}
		idle := cc.scratch.close()
		err = cc.finish(ctx, err)
		runOnFinish(onFinish, err)
		if idle {
			*cc = clientCall{done: cc.done}
			calls.Put(cc)
		}
		return err
	}
}

// splitOnFinish takes the caller's grpc.OnFinish options out of opts: grpc-go
// would run them after every try, and it promises once per call. It
// allocates only when there is one.
func splitOnFinish(opts []grpc.CallOption) (rest []grpc.CallOption, onFinish []func(error)) {
	n := 0
	for _, o := range opts {
		if _, ok := o.(grpc.OnFinishCallOption); ok {
			n++
		}
	}
	if n == 0 {
		return opts, nil
	}
	rest = make([]grpc.CallOption, 0, len(opts)-n)
	for _, o := range opts {
		if f, ok := o.(grpc.OnFinishCallOption); ok {
			onFinish = append(onFinish, f.OnFinish)
		} else {
			rest = append(rest, o)
		}
	}
	return rest, onFinish
}

// runOnFinish runs the caller's grpc.OnFinish functions with the call's
// final error.
func runOnFinish(onFinish []func(error), err error) {
	for _, f := range onFinish {
		f(err)
	}
}

// streamInterceptor is the client interceptor of streams. Streams get the
// rate limit, the service breaker, lane and trace propagation, metrics and
// spans; they are not retried (a stream that has begun cannot be replayed)
// and the rule's timeout does not apply to them (it would cut long-lived
// streams): their context bounds them.
//
// A stream's life is taken from grpc-go's own signals, without a stats
// handler (which would make grpc-go build per-RPC events for every unary
// call too): the breakers and the latency histogram judge it at its first
// response, its headers arriving (the server is up; clientStream waits for
// them, whenever the caller reads); a half-open probe slot it holds is
// given back when that is overdue (probeOverdue). Its end is the
// grpc.OnFinish call option, which grpc-go runs once when the stream ends,
// also when the caller's context ends it or the ClientConn is closed under
// it, or the caller's RecvMsg that returns its error, whichever comes
// first, and goes to the request metrics and the span. Each of its
// attempts reports to the breaker of its instance through the picker's
// Done, before OnFinish.
func streamInterceptor(eng *engine.Engine, cfg *config, m *mesh.Mesh) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, conn *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		service, ok := serviceOf(conn.Target())
		if !ok {
			return streamer(ctx, desc, conn, method, opts...)
		}
		if err := noIdentity(m, service); err != nil {
			_, onFinish := splitOnFinish(opts)
			runOnFinish(onFinish, err) // refused before grpc-go saw it, which would have run them
			return nil, err
		}
		ctx, cancelTimeout := cfg.methodDeadline(ctx, conn, method)
		cc := newClientCall(eng, conn, service, method)
		cc.stream, cc.cancelTimeout = true, cancelTimeout
		ctx, err := cc.open(ctx)
		if err == nil {
			cc.t, err = cc.c.NewTry(ctx)
		}
		if err != nil {
			// Refused before grpc-go saw it: grpc-go will not run the
			// caller's OnFinish options, which it promises for every RPC.
			err = cc.finish(ctx, err)
			_, onFinish := splitOnFinish(opts)
			runOnFinish(onFinish, err)
			return nil, err
		}
		cc.ctx = ctx
		due := time.Now().Add(cc.probeWait()) // the first response is overdue then
		if cc.t.Probing() {
			// Armed before the stream is set up: its wait for a
			// connection counts, or a stream waiting on a hung
			// instance would hold the service's slot for as long.
			cc.probeTimer = time.AfterFunc(time.Until(due), cc.probeOverdue)
		}
		opts = append(opts[:len(opts):len(opts)], grpc.OnFinish(cc.streamEnded))
		cs, err := streamer(cc.tryContext(ctx), desc, conn, method, opts...)
		cc.scratch.mu.Lock()
		if err != nil {
			err = cc.meshErr(err)
		}
		if err != nil || cc.attempts == 0 {
			// grpc-go refused the stream (it ran OnFinish already, or
			// never saw the stream: a later interceptor refused it), or
			// an interceptor after this one served the stream itself:
			// no attempt was picked and OnFinish will not come.
			if err == nil {
				// The stream served so lives on: its method-config
				// deadline, if any, ends its context, not this end.
				cc.cancelTimeout = nil
			}
			cc.endStream(err)
		} else if cc.t.Probing() {
			// A probe slot still held, the instance's taken by the
			// pick among them: given back at the same due time.
			if cc.probeTimer != nil {
				cc.probeTimer.Stop()
			}
			cc.probeTimer = time.AfterFunc(time.Until(due), cc.probeOverdue)
		}
		cc.scratch.mu.Unlock()
		if err != nil {
			return nil, statusOf(err, cc.c.Result().Route)
		}
		s := &clientStream{ClientStream: cs, cc: cc}
		if !cc.finished.Load() {
			go s.awaitHeader()
		}
		return s, nil
	}
}

// streamProbeWait is how long a stream holding a half-open probe slot
// waits for its first response before it gives the slot back, when its
// route has no timeout.
const streamProbeWait = time.Second

// probeWait is how long the stream's first response may take before its
// half-open probe slots are given back: the route's timeout (which does
// not cut a stream), else streamProbeWait.
func (cc *clientCall) probeWait() time.Duration {
	if p := cc.c.Policy(); p != nil && p.Timeout > 0 {
		return p.Timeout
	}
	return streamProbeWait
}

// probeOverdue gives back the half-open probe slots of a stream that has
// had no response within probeWait, with no verdict: a watch that answers
// at its first event, or an upload whose server answers at its end, would
// otherwise refuse every other call of the service (or instance) for as
// long as it waits. The stream goes on.
func (cc *clientCall) probeOverdue() {
	cc.scratch.mu.Lock()
	defer cc.scratch.mu.Unlock()
	if !cc.answered.Load() && !cc.finished.Load() {
		cc.t.GiveUpProbes()
	}
}

// clientStream is a mesh stream as its caller gets it. Its first response
// is the server's headers, when they arrive: awaitHeader waits for them,
// so that neither the breakers nor the latency histogram depend on when
// the caller reads (a caller that sends before it reads would make a
// server that answered at once look slow, and keep a half-open probe slot
// it no longer needs). The caller's own Header and RecvMsg report it too,
// so that it is in before they return.
type clientStream struct {
	grpc.ClientStream
	cc *clientCall
}

// awaitHeader reports the stream's first response when the server's
// headers arrive; it returns then, or when the stream ends without them
// (grpc-go's Header ends the stream then, as the caller's own would).
// It runs on a goroutine of its own for each stream, which lives no
// longer than the stream's wait for its headers.
func (s *clientStream) awaitHeader() {
	if md, err := s.ClientStream.Header(); md != nil && err == nil {
		s.cc.responded()
	}
}

// Header implements grpc.ClientStream: headers are a response.
func (s *clientStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	if md != nil && err == nil {
		s.cc.responded()
	}
	return md, err
}

// RecvMsg implements grpc.ClientStream: a message is a response (from a
// server that sent no headers before it, too). An error ends the stream:
// when grpc-go's OnFinish runs on another goroutine (awaitHeader's, which
// saw the stream end first), the end is recorded here, so that the
// breakers have the verdict before the caller sees the error.
func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	switch {
	case err == nil:
		s.cc.responded()
	case err == io.EOF:
		s.cc.streamEnded(nil)
	default:
		s.cc.streamEnded(err)
	}
	return err
}

// callKey is the context key under which an interceptor hands its call to
// the picker.
type callKey struct{}

// callContext is the context of one try of a call: its context with the
// call's callScratch under callKey, as context.WithValue would make it
// (the first try's is in the callScratch, with no allocation of its own).
type callContext struct {
	context.Context
	sc *callScratch
}

// Value implements context.Context.
func (c *callContext) Value(key any) any {
	if key == (callKey{}) {
		return c.sc
	}
	return c.Context.Value(key)
}

// tryContext returns ctx with the call under callKey for the picker. The
// first try's is the call's own; a later try gets a new one, as grpc-go
// may still read an earlier try's context.
func (cc *clientCall) tryContext(ctx context.Context) context.Context {
	if first := &cc.scratch.first; first.sc == nil {
		*first = callContext{Context: ctx, sc: cc.scratch}
		return first
	}
	return &callContext{Context: ctx, sc: cc.scratch}
}

// clientCall is one RPC through the mesh: the gRPC adapter's side of an
// engine.Call.
type clientCall struct {
	c       engine.Call
	t       *engine.Try // the try in progress
	eng     *engine.Engine
	conn    *grpc.ClientConn // the call's
	service string
	method  string
	md      metadata.MD // the outgoing metadata, lane and trace injected
	car     mdCarrier   // writes md
	scratch *callScratch
	req     router.Request
	start   time.Time
	span    oteltrace.Span
	unary   unaryArgs
	release func() // of a demand made to look the service up on first use
	// cancelTimeout ends a stream's method-config timeout (methodDeadline)
	// when the stream is recorded; nil for none.
	cancelTimeout context.CancelFunc
	// done is the picker's Done callback of every pick of the call (one
	// func value per call, not one per pick).
	done     func(balancer.DoneInfo)
	finished atomic.Bool

	// A stream is reported from grpc-go's goroutines (OnFinish, the
	// picker's Done) and the caller's (Header, RecvMsg): scratch.mu
	// orders them. A unary call takes it too, on one goroutine.
	stream     bool
	ctx        context.Context // the stream's context, for its end
	probeTimer *time.Timer     // runs probeOverdue; nil when the stream holds no probe slot
	answered   atomic.Bool     // the stream had its first response
	latency    time.Duration   // time to the first response
	attempts   int             // attempts the picker picked an instance for
	conns      callConns       // the engine.Conns of the pick in progress
	reset      bool            // the last attempt's connection broke after it was sent
	pushback   time.Duration   // the last attempt's server pushback (engine.Outcome.RetryAfter)
}

// unaryArgs are the arguments of a unary call, for its tries.
type unaryArgs struct {
	conn       *grpc.ClientConn
	invoker    grpc.UnaryInvoker
	req, reply any
	opts       []grpc.CallOption
}

// callScratch is what grpc-go, or an interceptor chained after the
// mesh's, may still hold of a call after it returned: the first try's
// context, which reaches the call through it, and the values of the
// metadata keys the mesh set. It is allocated per call and never reused.
type callScratch struct {
	first callContext
	vals  [4]string

	// mu orders the reports of the call (see clientCall). cc is the call,
	// nil once a unary call's tries are over (close); picks counts the
	// picks whose Done has not come yet.
	mu    sync.Mutex
	cc    *clientCall
	picks int
}

// close ends the call's picks: a later one (by an interceptor after the
// mesh's that outlived the call) fails. It reports whether no pick is
// still out, so that the call's state may be reused.
func (sc *callScratch) close() (idle bool) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	sc.cc = nil
	return sc.picks == 0
}

func newClientCall(eng *engine.Engine, conn *grpc.ClientConn, service, method string) *clientCall {
	cc := new(clientCall)
	cc.done = cc.attemptDone // one func value per call, not one per pick
	cc.init(eng, conn, service, method)
	return cc
}

// init starts cc, new or cleared, as a call of method of service.
func (cc *clientCall) init(eng *engine.Engine, conn *grpc.ClientConn, service, method string) {
	cc.eng, cc.conn, cc.service, cc.method, cc.start = eng, conn, service, method, time.Now()
	cc.scratch = &callScratch{cc: cc}
	cc.car.vals = cc.scratch.vals[:0]
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
	cc.car.md, _ = metadata.FromOutgoingContext(ctx)
	cc.eng.Propagator().Inject(ctx, &cc.car)
	cc.md = cc.car.md
	if cc.car.wrote {
		ctx = metadata.NewOutgoingContext(ctx, cc.md)
	}
	return ctx
}

// begin matches the call against the service's routes on the State in
// force: its outgoing metadata as headers, its full method name as path.
// A service the mesh does not know yet (not named by the rules or
// WithServices, and this client's resolver not built yet) is looked up on
// first use: with wait, the call waits up to engine.FirstUseWait for discovery to
// report an instance, and keeps the service discovered until it ends.
func (cc *clientCall) begin(ctx context.Context, wait bool) error {
	if cc.md == nil {
		cc.md, _ = metadata.FromOutgoingContext(ctx)
	}
	cc.req = router.Request{Method: "POST", Path: cc.method, Metadata: cc.md}
	err := cc.c.Begin(cc.eng.Load(), cc.service, &cc.req, cc.eng.Metrics())
	if err == router.ErrUnknownService && wait {
		cc.release = cc.eng.Demand(cc.service)
		if cc.eng.AwaitInstances(ctx, cc.service, engine.FirstUseWait) || cc.eng.Load().Table().Has(cc.service) {
			err = cc.c.Begin(cc.eng.Load(), cc.service, &cc.req, cc.eng.Metrics())
		}
		// The rule's timeout and the latency count from the end of the
		// first-use lookup, as over HTTP: the wait is the mesh's, not the
		// call's (the caller's own deadline still bounds it).
		cc.start = time.Now()
	}
	return err
}

// Send implements engine.Sender: one unary call; the picker picks.
func (cc *clientCall) Send(ctx context.Context, t *engine.Try) engine.Outcome {
	a := &cc.unary
	cc.t, cc.reset, cc.pushback = t, false, 0
	o := cc.outcomeOf(a.invoker(cc.tryContext(ctx), cc.method, a.req, a.reply, a.conn, a.opts...))
	cc.scratch.mu.Lock()
	if o.Kind == engine.KindNone && o.Err != nil && cc.reset {
		// Not the server's UNAVAILABLE: the connection broke after the
		// call went out, and only an idempotent call may be resent.
		o.Kind = engine.KindReset
	}
	if o.Err != nil {
		o.RetryAfter = cc.pushback
	}
	cc.scratch.mu.Unlock()
	return o
}

// Discard implements engine.Sender: a unary reply is simply overwritten
// by the next try.
func (cc *clientCall) Discard() {}

// attemptDone is the picker's Done callback: it reports one attempt to the
// breaker of the instance it was picked for. An attempt that sent nothing
// (grpc-go found the connection not ready, or will retry it transparently)
// counts for nothing.
//
// An attempt that was sent and ended UNAVAILABLE before any answer came
// back (not even the server's status) is a reset: the connection broke
// after the server may have received the call.
func (cc *clientCall) attemptDone(di balancer.DoneInfo) {
	o := cc.outcomeOf(di.Err)
	if o.Kind == engine.KindNone && di.Err != nil && di.BytesSent && !di.BytesReceived && status.Code(di.Err) == codes.Unavailable {
		o.Kind = engine.KindReset
	}
	sc := cc.scratch
	sc.mu.Lock()
	sc.picks--
	cc.reset = o.Kind == engine.KindReset
	cc.pushback = 0
	if di.Err != nil { // a pushback comes with a failure; a success reads no trailer
		cc.pushback = pushback(di.Trailer)
	}
	cc.t.AttemptDone(&o, di.BytesSent || di.BytesReceived)
	sc.mu.Unlock()
}

// pushback returns the server's grpc-retry-pushback-ms trailer as an
// engine.Outcome.RetryAfter: 0 when there is none, negative when it is
// not a count of milliseconds (gRFC A6: do not retry), else at least 1ns.
func pushback(trailer metadata.MD) time.Duration {
	v := trailer.Get("grpc-retry-pushback-ms")
	if len(v) == 0 {
		return 0
	}
	ms, err := strconv.ParseInt(v[0], 10, 32)
	if err != nil || ms < 0 {
		return -1
	}
	return max(time.Duration(ms)*time.Millisecond, 1)
}

// outcomeOf turns a call's error into the engine's outcome. An error
// after the call's ClientConn was closed is the caller's side ending the
// call, whatever code grpc-go gave it (CANCELLED or, when the transport
// closed first, UNAVAILABLE): it says nothing about the server.
func (cc *clientCall) outcomeOf(err error) engine.Outcome {
	o := engine.Outcome{GRPC: true, Code: uint32(status.Code(err)), Err: err}
	if err != nil && cc.conn.GetState() == connectivity.Shutdown {
		o.Kind = engine.KindCallerEnded
	}
	return o
}

// meshErr returns the mesh's own pick error in place of err, the status
// grpc-go made of it, so that errors.Is keeps working; mu is held.
func (cc *clientCall) meshErr(err error) error {
	if perr := cc.t.PickErr(); perr != nil && perr != engine.ErrNoConnection {
		return perr
	}
	return err
}

// responded is the stream's first response (its headers or, for a server
// that sends none, a message): the breakers and the latency histogram
// judge the stream now; the server is up.
func (cc *clientCall) responded() {
	if cc.answered.Load() {
		return
	}
	cc.scratch.mu.Lock()
	defer cc.scratch.mu.Unlock()
	if cc.answered.Load() || cc.finished.Load() {
		return
	}
	cc.answered.Store(true)
	if cc.probeTimer != nil {
		cc.probeTimer.Stop()
	}
	cc.latency = time.Since(cc.start)
	o := engine.Outcome{GRPC: true}
	cc.t.Done(&o)
}

// streamEnded is the stream's grpc.OnFinish: grpc-go ran it once, after
// the picker's Done of the stream's last attempt.
func (cc *clientCall) streamEnded(err error) {
	cc.scratch.mu.Lock()
	cc.endStream(cc.meshErr(err))
	cc.scratch.mu.Unlock()
}

// endStream ends a stream, once, with err: a stream that had no response
// reports it to the breakers now; the metrics record the stream's code and
// its time to first response (to its end when it had none), and its span
// ends. mu is held.
func (cc *clientCall) endStream(err error) {
	if !cc.finished.CompareAndSwap(false, true) {
		return
	}
	if cc.probeTimer != nil {
		cc.probeTimer.Stop()
	}
	o := cc.outcomeOf(err)
	if stop := cc.t.Done(&o); stop != nil {
		err = stop
	}
	d := cc.latency
	if !cc.answered.Load() {
		d = time.Since(cc.start)
	}
	cc.record(cc.ctx, err, d)
}

// finish records a call the interceptor saw end and returns its error as
// the caller gets it.
func (cc *clientCall) finish(ctx context.Context, err error) error {
	if cc.finished.CompareAndSwap(false, true) {
		cc.record(ctx, err, time.Since(cc.start))
	}
	return statusOf(err, cc.c.Result().Route)
}

// record writes the call's metrics (d is its latency), ends its span and
// ends a demand it made.
func (cc *clientCall) record(ctx context.Context, err error, d time.Duration) {
	if cc.release != nil {
		cc.release()
	}
	if cc.cancelTimeout != nil {
		cc.cancelTimeout()
	}
	code := status.Code(statusOf(err, ""))
	name := router.GRPCCodeName(uint32(code))
	cc.eng.Metrics().Finish(ctx, &cc.c, engine.GRPC, name, d, err)
	if cc.span != nil {
		if cc.span.IsRecording() {
			engine.Annotate(cc.span, &cc.c)
			engine.AnnotateReason(cc.span, cc.c.Reason(err, code != 0))
		}
		trace.EndRPC(cc.span, name, code != 0, err)
	}
}

func spanOf(ctx context.Context) oteltrace.Span { return oteltrace.SpanFromContext(ctx) }
