package meshgrpc

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/engine"
)

// BalancerName is the name the lightmesh balancer is registered under.
const BalancerName = "lightmesh"

// serviceConfig selects the lightmesh balancer: the service config the
// resolver sends when the client gives none of its own.
const serviceConfig = `{"loadBalancingConfig": [{"` + BalancerName + `": {}}]}`

// The one accepted init side effect: grpc-go installs balancers by name.
// The builder holds no state.
func init() { balancer.Register(builder{}) }

type builder struct{}

// Name implements balancer.Builder.
func (builder) Name() string { return BalancerName }

// Build implements balancer.Builder: endpointsharding with a pick_first
// child per endpoint, whose aggregated state the balancer turns into its
// own picker.
func (builder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &meshBalancer{ClientConn: cc}
	b.Balancer = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// meshBalancer is the balancer of one ClientConn. grpc-go calls it from
// one goroutine at a time; endpointsharding reports child states
// (UpdateState) from within those calls or from its own goroutines, and
// the engine calls republish after every rule or instance change.
type meshBalancer struct {
	balancer.Balancer   // endpointsharding: children, ExitIdle, Close
	balancer.ClientConn // the parent ClientConn; UpdateState is intercepted

	// target is the mesh and the service, from the resolver's first state.
	// endpointsharding may call UpdateState from a goroutine of its own
	// (a child leaving idle), hence the atomic.
	target atomic.Pointer[balancerTarget]

	// mu orders the pickers published: the children's last aggregated
	// state is rebuilt into a picker on every child change and every
	// publish of the engine.
	mu          sync.Mutex
	last        balancer.State
	hasLast     bool
	closed      bool
	unsubscribe func()

	// connecting is when each instance connecting (or idle) was first
	// seen so; stallTimer republishes when the next of them passes
	// stallAfter, so that calls waiting for it pick again.
	connecting map[string]time.Time
	stallTimer *time.Timer
}

// stallAfter is how long a connection may be set up before the picker
// reports its instance stalled (engine.ConnStalled): a call of a lane
// then goes to base, keeping its lane, rather than wait, up to its
// deadline, for a lane instance that may never connect (a hung process,
// packets dropped); grpc-go itself gives a connection attempt 20s.
const stallAfter = time.Second

type balancerTarget struct {
	eng     *engine.Engine
	service string
}

// UpdateClientConnState implements balancer.Balancer: it takes the mesh
// and the service from the lightmesh resolver's state and hands the
// endpoints to endpointsharding. On the first state it subscribes to the
// engine: every rule or instance change then publishes a new picker, so
// calls waiting for a connection pick again with the rules in force.
func (b *meshBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	eng, _ := s.ResolverState.Attributes.Value(engineKey{}).(*engine.Engine)
	service, _ := s.ResolverState.Attributes.Value(serviceKey{}).(string)
	if eng == nil || service == "" {
		return fmt.Errorf("meshgrpc: the %s balancer needs the %s resolver: dial %s:///<service> with meshgrpc.DialOptions", BalancerName, Scheme, Scheme)
	}
	if t := b.target.Load(); t == nil || t.eng != eng || t.service != service {
		b.target.Store(&balancerTarget{eng: eng, service: service})
		b.mu.Lock()
		if b.unsubscribe != nil {
			b.unsubscribe()
		}
		if !b.closed {
			b.unsubscribe = eng.Subscribe(b.republish)
		}
		b.mu.Unlock()
	}
	err := b.Balancer.UpdateClientConnState(balancer.ClientConnState{
		// The health listener, as round_robin enables it, for client-side
		// health checks when a service config asks for them.
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
	if errors.Is(err, balancer.ErrBadResolverState) && len(s.ResolverState.Endpoints) == 0 {
		// No instance yet: the picker fails calls fast with a clear
		// status; there is nothing to re-resolve, the mesh pushes changes.
		return nil
	}
	return err
}

// UpdateState receives endpointsharding's aggregated state and publishes
// a picker of the mesh's own, rebuilt from the child states every time.
func (b *meshBalancer) UpdateState(s balancer.State) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last, b.hasLast = s, true
	b.publish()
}

// republish publishes a new picker over the same children: the engine
// published a new State. It does not block on anything but the
// ClientConn's own short lock.
func (b *meshBalancer) republish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hasLast && !b.closed {
		b.publish()
	}
}

// publish sends the parent a picker over the children's last state; mu
// is held.
func (b *meshBalancer) publish() {
	t := b.target.Load()
	if t == nil {
		b.ClientConn.UpdateState(b.last) // no resolver state yet: nothing to pick from
		return
	}
	children := endpointsharding.ChildStatesFromPicker(b.last.Picker)
	b.ClientConn.UpdateState(balancer.State{
		ConnectivityState: b.last.ConnectivityState,
		Picker:            newPicker(t.eng, t.service, children, b.stalled(children)),
	})
}

// stalled returns the instances of children that have been connecting
// (or idle) for stallAfter or longer, and arms the timer that republishes
// when the next one gets there; mu is held.
func (b *meshBalancer) stalled(children []endpointsharding.ChildState) map[string]bool {
	now := time.Now()
	since := make(map[string]time.Time, len(children))
	var stalled map[string]bool
	var next time.Duration
	for _, c := range children {
		if len(c.Endpoint.Addresses) == 0 {
			continue
		}
		if s := c.State.ConnectivityState; s != connectivity.Connecting && s != connectivity.Idle {
			continue
		}
		addr := c.Endpoint.Addresses[0].Addr
		first, ok := b.connecting[addr]
		if !ok {
			first = now
		}
		since[addr] = first
		switch left := stallAfter - now.Sub(first); {
		case left <= 0:
			if stalled == nil {
				stalled = map[string]bool{}
			}
			stalled[addr] = true
		case next == 0 || left < next:
			next = left
		}
	}
	b.connecting = since
	if next > 0 && b.stallTimer == nil {
		b.stallTimer = time.AfterFunc(next, func() {
			b.mu.Lock()
			b.stallTimer = nil
			b.mu.Unlock()
			b.republish()
		})
	}
	return stalled
}

// Close implements balancer.Balancer: it stops following the engine and
// closes the children.
func (b *meshBalancer) Close() {
	b.mu.Lock()
	b.closed = true
	if b.stallTimer != nil {
		b.stallTimer.Stop()
		b.stallTimer = nil
	}
	if b.unsubscribe != nil {
		b.unsubscribe()
		b.unsubscribe = nil
	}
	b.mu.Unlock()
	b.Balancer.Close()
}

// picker is an immutable snapshot of one ClientConn's connections; the
// routing decision itself reads the mesh's State of the call.
type picker struct {
	eng     *engine.Engine
	service string
	conns   map[string]conn // every instance the balancer has a child for, by address
	lastErr error           // why the last failed connection failed
}

// conn is the state of one instance's connection and, when it is ready,
// its pick_first picker: one map lookup answers both what the engine asks
// (ConnState) and what the pick then needs.
type conn struct {
	state  engine.ConnState
	picker balancer.Picker // of a ready connection
}

func newPicker(eng *engine.Engine, service string, children []endpointsharding.ChildState, stalled map[string]bool) *picker {
	p := &picker{eng: eng, service: service, conns: make(map[string]conn, len(children))}
	for _, c := range children {
		if len(c.Endpoint.Addresses) == 0 {
			continue
		}
		addr := c.Endpoint.Addresses[0].Addr
		switch c.State.ConnectivityState {
		case connectivity.Ready:
			p.conns[addr] = conn{state: engine.ConnReady, picker: c.State.Picker}
		case connectivity.Connecting, connectivity.Idle:
			if stalled[addr] {
				p.conns[addr] = conn{state: engine.ConnStalled}
			} else {
				p.conns[addr] = conn{state: engine.ConnPending}
			}
		default:
			p.conns[addr] = conn{state: engine.ConnDown}
			if c.State.ConnectivityState != connectivity.TransientFailure {
				continue
			}
			if _, err := c.State.Picker.Pick(balancer.PickInfo{}); err != nil {
				p.lastErr = err
			}
		}
	}
	return p
}

// callConns is a picker's engine.Conns for one pick: it remembers the
// last ready connection the engine asked about, which is usually the one
// it picks, so that the pick does not look the instance up again.
type callConns struct {
	p      *picker
	addr   string
	picker balancer.Picker
}

// ConnState implements engine.Conns. An instance the balancer has no
// child for yet (the resolver's update is on its way) is pending.
func (c *callConns) ConnState(in *discovery.Instance) engine.ConnState {
	cn, ok := c.p.conns[in.Address]
	if !ok {
		return engine.ConnPending
	}
	if cn.state == engine.ConnReady {
		c.addr, c.picker = in.Address, cn.picker
	}
	return cn.state
}

// Pick implements balancer.Picker. It never blocks: it picks with the
// call's routing decision (made by the interceptor), among the instances
// with a ready connection, and admits the pick through the instance's
// breaker. A call state of another mesh or service in the context (a
// stream's context reused for a call on another client) is not this
// call's. A unary call whose interceptor has returned picks no more: an
// interceptor chained after the mesh's that sends with the call's context
// then (a mirror, a hedge) gets codes.Internal.
func (p *picker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	sc, _ := info.Ctx.Value(callKey{}).(*callScratch)
	if sc == nil {
		return balancer.PickResult{}, p.noCall()
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	cc := sc.cc
	if cc == nil {
		return balancer.PickResult{}, status.Errorf(codes.Internal,
			"lightmesh: a call of service %q was sent again after its call has ended (an interceptor chained after meshgrpc's outlived the call): make such calls through the ClientConn", p.service)
	}
	if cc.eng != p.eng || cc.service != p.service || cc.t == nil {
		return balancer.PickResult{}, p.noCall()
	}
	res, err := p.pick(info, cc)
	if err == nil {
		sc.picks++
	}
	return res, err
}

// noCall is the error of a pick without a call of this balancer's.
func (p *picker) noCall() error {
	return status.Errorf(codes.Internal,
		"lightmesh: a call of service %q reached the balancer without meshgrpc's interceptors: dial with meshgrpc.DialOptions", p.service)
}

func (p *picker) pick(info balancer.PickInfo, cc *clientCall) (balancer.PickResult, error) {
	// A call that waited for a connection picks from the State in force
	// now: instances and rules may have changed since it was routed.
	if err := cc.c.Rebase(p.eng.Load(), &cc.req); err != nil {
		return balancer.PickResult{}, statusOf(err, "")
	}
	t := cc.t
	cc.conns = callConns{p: p}
	in, err := t.Pick(&cc.conns)
	if err != nil {
		return balancer.PickResult{}, p.pickError(err, cc)
	}
	child := cc.conns.picker
	if cc.conns.addr != in.Address {
		child = p.conns[in.Address].picker
	}
	res, err := child.Pick(info)
	if err != nil {
		t.AttemptDone(&engine.Outcome{}, false)
		return res, err
	}
	if span := spanOf(info.Ctx); span.IsRecording() && startedByGRPC(span, cc.scratch) {
		engine.Annotate(span, &cc.c) // otelgrpc's span
	}
	// Every attempt reports to the breaker of the instance it went to.
	if child := res.Done; child != nil {
		res.Done = func(di balancer.DoneInfo) { child(di); cc.done(di) }
	} else {
		res.Done = cc.done
	}
	cc.attempts++
	return res, nil
}

// startedByGRPC reports whether span, found in a pick's context, was
// started within grpc-go for the attempt (by a stats handler: otelgrpc's
// client span) rather than being the span of the call's own context: the
// caller's (an HTTP handler's server span), which must not take the
// routing attributes of one of its calls, or lightmesh's own in span mode,
// which the call annotates when it ends.
func startedByGRPC(span oteltrace.Span, sc *callScratch) bool {
	return span.SpanContext().SpanID() != spanOf(sc.first.Context).SpanContext().SpanID()
}

// pickError turns the engine's pick error into what the picker returns:
// balancer.ErrNoSubConnAvailable (wait, within the call's deadline) while
// connections are being set up; a plain error when they all failed
// (grpc-go makes it Unavailable, or waits for a wait-for-ready call); a
// status otherwise (codes.Unavailable for no instance or an open circuit)
// — never a code grpc-go rewrites (gRFC A54).
func (p *picker) pickError(err error, cc *clientCall) error {
	if errors.Is(err, engine.ErrNoConnection) {
		if cc.t.Waiting() {
			return balancer.ErrNoSubConnAvailable
		}
		// Every candidate's connection failed: defer to the children, as
		// round_robin does, with an error that is not a status, so that
		// grpc-go fails the call with Unavailable but keeps a
		// wait-for-ready call waiting for a connection (or a new picker).
		res := cc.c.Result()
		msg := fmt.Sprintf("lightmesh: no connection to any instance of service %q", p.service)
		if res.Subset != "" {
			msg += fmt.Sprintf(" subset %q", res.Subset)
		}
		if p.lastErr != nil {
			msg += ": " + status.Convert(p.lastErr).Message()
		}
		return errors.New(msg)
	}
	return statusOf(err, cc.c.Result().Route)
}
