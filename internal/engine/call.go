package engine

import (
	"context"
	"math/rand/v2"
	"time"

	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/backoff"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// maxTried bounds the instances one call remembers having tried, and
// maxRefused those whose breaker refused it; beyond them it stops
// steering away from more.
const (
	maxTried   = router.MaxRetryAttempts + 1
	maxRefused = 8
)

// Kind classifies how a try failed, as the adapter saw it.
type Kind uint8

// The kinds of try failure. Timeouts are not among them: the engine tells
// its own deadlines from the caller's by their contexts.
const (
	// KindNone: an answer came back (an HTTP response, a gRPC status).
	KindNone Kind = iota
	// KindConnectFailure: no connection could be made; nothing was sent.
	KindConnectFailure
	// KindReset: the connection broke during the try.
	KindReset
	// KindError: any other transport error.
	KindError
	// KindNotSent: the try failed in the adapter before anything was sent
	// (a request body that could not be read again): no breaker counts it.
	KindNotSent
	// KindCallerEnded: the caller's side ended the try (a gRPC ClientConn
	// closed under it): like the caller's cancellation, it counts for no
	// breaker and is not retried.
	KindCallerEnded
)

// Outcome is what one try came back with.
type Outcome struct {
	Kind Kind
	// Status is the HTTP status code of the response; 0 for gRPC or when
	// there is none.
	Status int
	// GRPC marks a gRPC outcome; Code is then its status code (0 is OK).
	GRPC bool
	Code uint32
	// Err is the try's error, what the call returns when no retry follows.
	Err error
	// RetryAfter is the server's pushback (gRPC's grpc-retry-pushback-ms):
	// when positive, a retry waits this long instead of the backoff, and
	// none follows when that does not fit before the call's deadline;
	// negative, the server asks for no retry. Zero: no pushback.
	RetryAfter time.Duration
}

// Sender is the adapter's side of one call: Run calls Send once per try
// and Discard for each try's result that a retry replaces.
type Sender interface {
	// Send sends try t bounded by ctx. The HTTP adapter picks the
	// instance with t.Pick first; the gRPC picker calls t.Pick itself.
	Send(ctx context.Context, t *Try) Outcome
	// Discard releases the last try's result (drains and closes a
	// response body) because it will be retried.
	Discard()
}

// Call carries one logical call through the engine: Begin, Admit, Run
// (which makes each try a Try: NewTry, Pick, Done) and then Release. The
// zero value is ready for Begin. A Call is used by one goroutine at a
// time; its Try may be reported from another (a gRPC stream's end) when
// the adapter orders the two itself.
type Call struct {
	state    *State
	svc      *Service // nil: the rules do not name the service
	route    *Route   // the matched route's protection; nil when svc is nil
	metrics  *Metrics
	decision router.Decision
	result   router.Result // of the last pick

	replayable bool
	idempotent bool // may be resent after the server may have acted on it
	plain      bool // nothing to apply around the tries
	sent       bool // at least one try went out
	tries      int  // tries sent
	timedOut   bool // a mesh timeout ended the last try or the call
	callerDone bool // the caller's context ended the call

	tried    [maxTried]*discovery.Instance
	ntried   int
	refused  [maxRefused]*discovery.Instance
	nrefused int

	try       Try                // the try in progress, or the last one
	cancelTry context.CancelFunc // of the last try's timeout context

	start time.Time // the call's start, as Admit was given it; zero before
	end   time.Time // when the last try that reported to a breaker ended
}

// Begin starts c as a call to service on state s: it matches req against
// the service's routes and chooses the subset. It returns
// router.ErrUnknownService (unwrapped) for a service s does not know and a
// *router.NoRouteError when no route matches. metrics may be nil.
func (c *Call) Begin(s *State, service string, req *router.Request, metrics *Metrics) error {
	c.state, c.metrics = s, metrics
	if err := s.table.Match(service, req, &c.decision); err != nil {
		c.result = router.Result{Service: service, RouteIndex: -1}
		return err
	}
	c.result = router.Result{Service: service, Route: c.decision.Route, RouteIndex: c.decision.RouteIndex, Subset: c.decision.Subset(), Lane: c.decision.Lane()}
	c.svc = s.Service(service)
	c.plain = true
	if c.svc != nil {
		c.route = &c.svc.def
		if i := c.decision.RouteIndex; i >= 0 && i < len(c.svc.routes) {
			c.route = &c.svc.routes[i]
		}
		c.plain = c.route.policy.Plain() && c.svc.breaker == nil && c.svc.outlier == nil
	}
	return nil
}

// Plain reports whether nothing applies around the call's tries: no
// timeout, retry, rate limit or breaker. Such a call needs no start time
// (Admit may be given the zero time) unless its latency is measured.
func (c *Call) Plain() bool { return c.plain }

// Policy returns the policy of the matched route, nil for a service the
// rules do not name.
func (c *Call) Policy() *router.CallPolicy {
	if c.route == nil {
		return nil
	}
	return c.route.policy
}

// SetReplayable says whether the request can be sent again at all
// (replayable: an idempotent HTTP method or one the rule allows, with a
// replayable body; a unary gRPC call), and whether also after the server
// may have acted on it (idempotent). Only then does Run retry; and only
// an idempotent request is retried after a per-try timeout or a reset
// connection (the server may have received it). A connect failure and the
// listed status codes are retried either way.
func (c *Call) SetReplayable(replayable, idempotent bool) {
	c.replayable, c.idempotent = replayable, replayable && idempotent
}

// NonIdempotentAllowed reports whether the route's retry policy allows
// retrying non-idempotent requests.
func (c *Call) NonIdempotentAllowed() bool {
	p := c.Policy()
	return p != nil && p.Retry != nil && p.Retry.NonIdempotent
}

// Admit applies the route's rate limit at now, the time the call started
// (the adapters read the clock once per call; a clock read costs as much
// as the rest of the limiter): a *RateLimitError when the call must not
// be sent. Run counts the call's timeout, and its first try's, from now.
func (c *Call) Admit(now time.Time) error {
	c.start = now
	if c.route == nil || c.route.limiter == nil || c.route.limiter.AllowAt(now) {
		return nil
	}
	return &RateLimitError{Service: c.decision.Service, Route: c.decision.Route}
}

// RetryAfter returns how long until the route's rate limit admits a call.
func (c *Call) RetryAfter() time.Duration {
	if c.route == nil || c.route.limiter == nil {
		return 0
	}
	return c.route.limiter.RetryAfter()
}

// Result returns where the last try went (service, route, subset and
// instance); before any pick, the route and subset chosen.
func (c *Call) Result() router.Result { return c.result }

// Elapsed returns the time from start to the end of the call's last try
// when Done read the clock for a breaker's slow-call timing (a clock read
// costs about as much as a breaker), else to now.
func (c *Call) Elapsed(start time.Time) time.Duration {
	if c.end.IsZero() {
		return time.Since(start)
	}
	return c.end.Sub(start)
}

// Sent reports whether any try was sent: false when the call was refused
// (rate limited, circuit open, no instance) before reaching an instance.
func (c *Call) Sent() bool { return c.sent }

// Tries returns the number of tries sent.
func (c *Call) Tries() int { return c.tries }

// ConnState is what a gRPC client's connections say of an instance.
type ConnState uint8

// The connection states Pick tells apart.
const (
	// ConnReady: a call can be sent to the instance now.
	ConnReady ConnState = iota
	// ConnPending: its connection is being set up; worth waiting for.
	ConnPending
	// ConnDown: its connection failed; as good as unhealthy.
	ConnDown
	// ConnStalled: its connection has been connecting for longer than a
	// call should wait for it while another instance can serve: a call of
	// a lane goes on to base, and one whose chosen subset has only such
	// instances (or none ready) goes on to the route's fallback, rather
	// than wait for an instance that may never connect; it waits for it
	// only when there is nothing else to pick.
	ConnStalled
)

// Conns reports the connection state of instances; the gRPC picker passes
// one to Pick. It must not block.
type Conns interface {
	ConnState(in *discovery.Instance) ConnState
}

// admission is a breaker's admission of a try or a pick, until reported.
type admission struct {
	b      *breaker.Breaker
	t      breaker.Ticket
	policy *router.BreakerPolicy
}

// report reports o for the admission, once.
func (a *admission) report(o breaker.Outcome) {
	if a.b != nil {
		a.b.Done(a.t, o)
		a.b = nil
	}
}

// reportAt is report with the try's end time, read once for both
// breakers (a clock read costs about as much as the rest of Done).
func (a *admission) reportAt(o breaker.Outcome, now time.Time) {
	if a.b != nil {
		a.b.DoneAt(a.t, o, now)
		a.b = nil
	}
}

// Try is one try of a Call, one value from start to end: the service
// breaker admits it (Call.NewTry, or Run), Pick routes it to an instance
// whose breaker admits the pick, and Done reports its outcome, once, to
// both breakers. The gRPC picker may pick more than once for one try
// (grpc-go retries an attempt that failed before it was sent, or one its
// retry policy retries): each pick's attempt reports to its instance's
// breaker with AttemptDone. One function, judge, decides whose deadline
// ended the try.
type Try struct {
	c *Call
	// parent is the call's context, ctx the try's (bounded by the mesh's
	// timeouts; parent itself when none applies) and callDeadline the
	// call's timeout (zero for none).
	parent, ctx  context.Context
	callDeadline time.Time

	svc, inst admission // the service breaker's, and the last pick's instance breaker's
	picked    bool      // an instance was picked
	reported  bool      // Done ran
	pickErr   error

	conns                        Conns
	sawOpen, sawPending, sawDown bool // why candidates were skipped
	// sawWarm: a candidate gave its turn away to ramp up (slow start);
	// sawCap: one whose outlier breaker refuses was left as it is over
	// the ejection cap; lastResort: take those anyway, as none else
	// would do.
	sawWarm, sawCap, lastResort bool
	// ld is the load tracker of the picked instance (load-aware
	// balancers), counting from ldStart (Unix ns) until untrack.
	ld         *instLoad
	ldStart    int64
	sawStalled bool // an instance was skipped as ConnStalled

	// lastIn and lastB are the instance accept looked at last and its
	// breaker: the one Pick takes, whose breaker it then needs again.
	lastIn *discovery.Instance
	lastB  *breaker.Breaker

	callTimedOut, tryTimedOut bool // judged by Done

	// untimed: the try is a stream's (NewTry), which is never slow: when
	// it first answers depends on its caller and on events, not only on
	// the server.
	untimed bool
}

// NewTry admits one try of an admitted call, bounded by ctx and by no
// timeout of the mesh, through the service breaker: a *CircuitOpenError
// when it refuses. It is for an adapter that makes a single try itself (a
// gRPC stream); Run makes its own. The try is the Call's until the next
// NewTry. Its breakers judge it by its outcome alone, never as a slow
// call: a stream answers when its caller or an event gives the server
// something to say.
func (c *Call) NewTry(ctx context.Context) (*Try, error) {
	t, err := c.newTry()
	if err == nil {
		t.parent, t.ctx, t.untimed = ctx, ctx, true
	}
	return t, err
}

// newTry resets the call's try and admits it through the service breaker.
func (c *Call) newTry() (*Try, error) {
	t := &c.try
	if t.c != nil {
		// A try before this one: clear it. The first try of a zero Call
		// finds it zero already (clearing its 240 bytes costs write
		// barriers while the GC marks).
		t.untrack(false, false)
		*t = Try{}
	}
	t.c = c
	c.end = time.Time{} // only the last try's end measures the call
	if c.svc == nil || c.svc.breaker == nil {
		return t, nil
	}
	tk, err := c.svc.breaker.Allow()
	if err != nil {
		t.reported = true
		return t, &CircuitOpenError{Service: c.decision.Service}
	}
	t.svc = admission{b: c.svc.breaker, t: tk, policy: c.svc.policy.Breaker}
	return t, nil
}

// Waiting reports whether the last pick failed only for connections still
// being set up (ConnPending): worth waiting for rather than failing.
// A lane instance skipped as stalled is waited for too when nothing else
// could be picked.
func (t *Try) Waiting() bool { return t.sawPending || t.sawStalled }

// PickErr returns the error of the last failed pick, nil when the last
// pick succeeded.
func (t *Try) PickErr() error { return t.pickErr }

// Pick picks the instance for the try: one of the chosen subset that this
// call has not tried yet when there is one, whose breaker is closed or has
// a free probe slot, and (with conns; nil for HTTP) whose connection is
// ready; its breaker then admits the pick. An instance whose breaker
// refuses is left for another at once, without spending a retry. The
// route's fallback subset is used when the chosen one has no such
// instance — but not while the chosen one's connections are still being
// set up: a subset that is only connecting is waited for, not skipped.
//
// The errors, also kept for Done: ErrNoConnection when candidates exist
// but none has a ready connection (conns decides whether that is worth
// waiting for), a *CircuitOpenError when every candidate's breaker is open
// (naming the instance when there was only one), and a
// *router.NoInstanceError when there are none.
func (t *Try) Pick(conns Conns) (*discovery.Instance, error) {
	c := t.c
	// A pick that replaces one never reported (gRPC picks again for an
	// attempt that failed before it was sent) gives that one's slot back.
	t.inst.report(breaker.Ignored)
	t.conns = conns
	t.sawOpen, t.sawPending, t.sawDown, t.sawWarm, t.sawCap, t.sawStalled = false, false, false, false, false, false
	t.lastIn = nil // the call may have been rebased onto other breakers
	for {
		in, lane, fallback := t.pickOnce()
		if in == nil {
			t.pickErr = t.pickError()
			return nil, t.pickErr
		}
		if b := t.instanceBreaker(in); b != nil {
			tk, err := b.Allow()
			if err != nil && c.svc.overCap(in, b) {
				// Over the ejection cap: the instance takes the call
				// past its breaker.
				tk, err = breaker.Ticket{}, nil
			}
			if err != nil {
				if c.nrefused == maxRefused {
					t.pickErr = &CircuitOpenError{Service: c.decision.Service, Subset: c.decision.Subset(), Instances: maxRefused}
					return nil, t.pickErr
				}
				c.refused[c.nrefused] = in
				c.nrefused++
				continue
			}
			t.inst = admission{b: b, t: tk, policy: c.svc.policy.Outlier}
		}
		t.picked, t.pickErr = true, nil
		t.track(in)
		c.result.Instance, c.result.Subset, c.result.Fallback = in, c.decision.Subset(), fallback
		switch {
		case lane:
			c.result.Subset = router.LaneSubset
		case fallback:
			c.result.Subset = c.decision.Fallback()
		}
		if c.ntried < maxTried {
			c.tried[c.ntried] = in
			c.ntried++
		}
		return in, nil
	}
}

// pickOnce picks from the call's lane, then from the chosen subset, then
// from the fallback, each preferring instances not tried yet, and moving
// on only when the one before is not still connecting; lane and fallback
// report which one it came from.
func (t *Try) pickOnce() (in *discovery.Instance, lane, fallback bool) {
	c := t.c
	tb := c.state.table
	if c.decision.HasLaneInstances() {
		// A lane instance whose connection has been set up for too long
		// (ConnStalled) is not waited for: the call goes on to base,
		// keeping its lane, as when the lane has no instance here; it is
		// waited for only when base has nothing either (Waiting).
		in = tb.PickLane(&c.decision, t.acceptFresh)
		if in == nil && c.ntried > 0 {
			in = tb.PickLane(&c.decision, t.acceptAgain)
		}
		if in != nil {
			return in, true, false
		}
		// A lane instance ramping up still takes its lane's calls: the
		// ramp shares calls within the lane, never with base.
		if in = t.pickLast(tb.LaneCandidates(&c.decision)); in != nil {
			return in, true, false
		}
		if t.sawPending {
			return nil, false, false
		}
	}
	if c.svc != nil && c.svc.load != nil {
		if in = t.balance(tb.ChosenPicker(&c.decision), t.acceptFresh); in != nil {
			return in, false, false
		}
	}
	if in = tb.PickChosen(&c.decision, t.acceptFresh); in != nil {
		return in, false, false
	}
	if c.ntried > 0 {
		if in = tb.PickChosen(&c.decision, t.acceptAgain); in != nil {
			return in, false, false
		}
	}
	// The lists only for the last resort: the picks above did not need them.
	chosen, fbList := tb.Candidates(&c.decision)
	if in = t.pickLast(chosen); in != nil {
		return in, false, false
	}
	if t.sawPending {
		return nil, false, false
	}
	if in = tb.PickFallback(&c.decision, t.acceptFresh); in != nil {
		return in, false, true
	}
	if c.ntried > 0 {
		if in = tb.PickFallback(&c.decision, t.acceptAgain); in != nil {
			return in, false, true
		}
	}
	if in = t.pickLast(fbList); in != nil {
		return in, false, true
	}
	return nil, false, false
}

// pickLast picks again from list when the last picks skipped instances
// ramping up or over the ejection cap, taking those now: slow start
// shares the calls within a subset, it never sends them to the fallback
// or fails them; an instance whose outlier breaker refuses but that the
// cap keeps takes calls only when no healthy one of its subset would.
// The pick is at random by weight: the round-robin cursor, moved by the
// picks that skipped them all, would land on the same one every time.
func (t *Try) pickLast(list []discovery.Instance) *discovery.Instance {
	if !t.sawWarm && !t.sawCap {
		return nil
	}
	t.lastResort = true
	defer func() { t.lastResort = false }()
	if in := pickRandom(list, t.acceptFresh); in != nil || t.c.ntried == 0 {
		return in
	}
	return pickRandom(list, t.acceptAgain)
}

// pickRandom returns an instance of list that accept takes, at random by
// discovery weight (a weight below 1 counts as 1), or nil.
func pickRandom(list []discovery.Instance, accept func(*discovery.Instance) bool) *discovery.Instance {
	var in *discovery.Instance
	total := 0
	for i := range list {
		if !accept(&list[i]) {
			continue
		}
		w := max(1, list[i].Weight)
		if total += w; rand.IntN(total) < w {
			in = &list[i]
		}
	}
	return in
}

// instanceBreaker returns the outlier breaker of in, or nil.
func (s *Service) instanceBreaker(in *discovery.Instance) *breaker.Breaker {
	if s == nil || s.outlier == nil {
		return nil
	}
	return s.outlier[in.Address]
}

// instanceBreaker returns the outlier breaker of in, or nil, looking it
// up once for the instance accept and then Pick see in turn.
func (t *Try) instanceBreaker(in *discovery.Instance) *breaker.Breaker {
	if t.c.svc == nil || t.c.svc.outlier == nil {
		return nil
	}
	if in != t.lastIn {
		t.lastIn, t.lastB = in, t.c.svc.outlier[in.Address]
	}
	return t.lastB
}

// Instances are told apart by address, not by pointer: a call that waits
// for a connection may pick again from a newer State (Rebase).
func (t *Try) acceptFresh(in *discovery.Instance) bool {
	for _, p := range t.c.tried[:t.c.ntried] {
		if p.Address == in.Address {
			return false
		}
	}
	return t.acceptAgain(in)
}

func (t *Try) acceptAgain(in *discovery.Instance) bool {
	if t.c.isRefused(in) {
		return false
	}
	// One breaker lookup and one Ready for both questions: ejected, or
	// refusing but kept by the ejection cap (taken only as a last resort).
	if b := t.instanceBreaker(in); b != nil && !b.Ready() {
		if !t.c.svc.overCap(in, b) {
			t.sawOpen = true
			return false
		}
		if !t.lastResort {
			t.sawCap = true
			return false
		}
	}
	if t.conns != nil {
		switch t.conns.ConnState(in) {
		case ConnPending:
			t.sawPending = true
			return false
		case ConnDown:
			t.sawDown = true
			return false
		case ConnStalled:
			t.sawStalled = true
			return false
		}
	}
	if !t.lastResort && t.c.svc.warming(in) {
		t.sawWarm = true
		return false
	}
	return true
}

// pickError says why no instance could be picked.
func (t *Try) pickError() error {
	c := t.c
	d := &c.decision
	switch {
	case t.sawPending || t.sawDown || t.sawStalled:
		return ErrNoConnection
	case t.sawOpen || c.nrefused > 0:
		// Instances exist but their breakers are open or refused: an open
		// circuit, not a missing instance. Name the instance when it was
		// the only one.
		e := &CircuitOpenError{Service: d.Service, Subset: d.Subset()}
		chosen, fallback := c.state.table.Candidates(d)
		for _, list := range [3][]discovery.Instance{c.state.table.LaneCandidates(d), chosen, fallback} {
			for i := range list {
				in := &list[i]
				if c.isRefused(in) || c.svc.ejected(in) {
					e.Instances++
					e.Instance = in.Address
				}
			}
		}
		if e.Instances != 1 {
			e.Instances, e.Instance = max(e.Instances, 1), ""
		}
		return e
	}
	return &router.NoInstanceError{Service: d.Service, Subset: d.Subset(), Fallback: d.Fallback()}
}

func (c *Call) isRefused(in *discovery.Instance) bool {
	for _, r := range c.refused[:c.nrefused] {
		if r.Address == in.Address {
			return true
		}
	}
	return false
}

// Done reports the try's outcome o, once: to the service breaker and to
// the breaker of the instance picked (unless AttemptDone reported that
// one), each judging it by its own failure set, after judge decided whose
// deadline, if any, ended it (the caller's own end counts for neither; a
// mesh timeout is a failure). When nothing was sent — the pick failed,
// the adapter failed before sending (KindNotSent), or no pick happened at
// all — Done counts it for no breaker and returns the try's error, which
// ends the call (none: the adapter's chain answered it without sending
// it, and the call ends with that answer); when no candidate could be
// connected to, o becomes a connect failure. Calls after the first do nothing.
func (t *Try) Done(o *Outcome) error {
	if t.reported {
		return nil
	}
	t.reported = true
	c := t.c
	switch {
	case t.pickErr == ErrNoConnection:
		// Candidates exist but none could be connected to (the gRPC
		// picker found every connection failing): a connect failure, for
		// the service breaker and for retrying elsewhere — unless the
		// caller's side ended the wait.
		if o.Kind != KindCallerEnded {
			o.Kind = KindConnectFailure
		}
	case t.pickErr != nil:
		t.abandon()
		return t.pickErr
	case !t.picked || o.Kind == KindNotSent:
		// Nothing reached an instance. Without an error, something in
		// the adapter's chain answered the call itself (a gRPC client
		// interceptor after the mesh's, a cache): the caller gets that
		// answer, and no retry follows.
		t.abandon()
		return o.Err
	}
	c.sent = true
	c.tries++
	callerDone, callTimedOut, tryTimedOut := t.judge(o)
	t.callTimedOut, t.tryTimedOut = callTimedOut, tryTimedOut
	c.callerDone, c.timedOut = callerDone, callTimedOut || tryTimedOut
	if t.svc.b != nil || t.inst.b != nil {
		// A first try counts in the breakers' windows at the call's start,
		// read once already (Admit), unless slow-call timing needs its end;
		// a retry counts when it ends, so that a call's tries (a server's
		// pushback between them) are not packed into one bucket.
		now := c.start
		if now.IsZero() || c.tries > 1 || !t.untimed && (timesCalls(t.svc.policy) || timesCalls(t.inst.policy)) {
			c.end = time.Now()
			now = c.end
		}
		t.svc.reportAt(verdict(t.svc.policy, o, callerDone, c.timedOut), now)
		t.inst.reportAt(verdict(t.inst.policy, o, callerDone, c.timedOut), now)
	}
	t.untrack(o.Kind != KindConnectFailure && !overloadRefusal(o), t.failed(o, callerDone, c.timedOut))
	return nil
}

// failed reports whether o is a failure of the picked instance for the
// load-aware balancers: an overload refusal (HTTP 429, gRPC
// resource-exhausted: a server shedding or over its rate limit) always
// is, whatever the breakers count, since it comes back at once and as a
// fast success it made the refusing instance the cheapest and drew most
// calls to it; else as its outlier breaker judges it, else as the
// service breaker does, else by the breakers' default failure set
// (timeouts, connection errors, 5xx and gRPC unknown, deadline-exceeded,
// internal, unavailable). The caller's own end is
// none.
func (t *Try) failed(o *Outcome, callerDone, timedOut bool) bool {
	if t.ld == nil || callerDone {
		return false
	}
	if overloadRefusal(o) {
		return true
	}
	for _, bp := range [2]*router.BreakerPolicy{t.inst.policy, t.svc.policy} {
		if bp != nil {
			return verdict(bp, o, false, timedOut) == breaker.Failure
		}
	}
	switch {
	case timedOut || o.Kind != KindNone:
		return true
	case o.GRPC:
		return o.Code < 32 && defaultFailureCodes&(1<<o.Code) != 0
	}
	return o.Status >= 500
}

// defaultFailureCodes are the gRPC codes a breaker counts as failures by
// default: unknown, deadline-exceeded, internal and unavailable, as
// router's default failureCodes.
const defaultFailureCodes = 1<<2 | 1<<4 | 1<<13 | 1<<14

// overloadRefusal reports whether o is an instance refusing a call for
// its load: HTTP 429 Too Many Requests or gRPC resource-exhausted. For
// the load-aware balancers it is a failure (failed) and no latency
// sample: it took no service time, and its few microseconds would pull
// the refusing instance's average below every instance serving calls.
func overloadRefusal(o *Outcome) bool {
	return o.Kind == KindNone && (o.GRPC && o.Code == codeResourceExhausted || !o.GRPC && o.Status == statusTooManyRequests)
}

// The codes of the overload refusals.
const (
	statusTooManyRequests = 429
	codeResourceExhausted = 8
)

// timesCalls reports whether a breaker of policy bp times its calls
// (slow-call detection), so that its outcomes need their end time.
func timesCalls(bp *router.BreakerPolicy) bool {
	return bp != nil && bp.Settings.SlowCallThreshold > 0
}

// AttemptDone reports one attempt of the try — what the last Pick sent —
// to its instance's breaker: sent says whether anything reached the
// instance (nothing sent counts for nothing). Done then leaves the
// instance breaker alone. The gRPC picker's Done callback calls it.
func (t *Try) AttemptDone(o *Outcome, sent bool) {
	if t.inst.b == nil {
		return
	}
	if !sent {
		t.untrack(false, false)
		t.inst.report(breaker.Ignored)
		return
	}
	callerDone, callTimedOut, tryTimedOut := t.judge(o)
	t.untrack(!overloadRefusal(o), t.failed(o, callerDone, callTimedOut || tryTimedOut))
	v := verdict(t.inst.policy, o, callerDone, callTimedOut || tryTimedOut)
	if t.untimed && !t.c.start.IsZero() {
		t.inst.reportAt(v, t.c.start) // never slow
		return
	}
	// The attempt's end, read here: a call's attempts (retries, a
	// server's pushback between them) each count when they end, not all
	// at the call's start, which would pack them into one bucket of the
	// instance's window.
	t.inst.report(v)
}

// Probing reports whether the try holds a half-open probe slot of the
// service breaker or of its instance's.
func (t *Try) Probing() bool {
	return t.svc.b != nil && t.svc.t.Probe() || t.inst.b != nil && t.inst.t.Probe()
}

// GiveUpProbes gives back the half-open probe slots the try holds, with no
// verdict: for a stream whose first response is overdue, so that other
// calls probe meanwhile. Done and AttemptDone then leave those breakers
// alone; an admission that is no probe keeps waiting for its verdict.
func (t *Try) GiveUpProbes() {
	if t.svc.b != nil && t.svc.t.Probe() {
		t.svc.report(breaker.Ignored)
	}
	if t.inst.b != nil && t.inst.t.Probe() {
		t.inst.report(breaker.Ignored)
	}
}

// abandon ends the try without an outcome: nothing was sent, so it counts
// for no breaker.
func (t *Try) abandon() {
	t.untrack(false, false)
	t.svc.report(breaker.Ignored)
	t.inst.report(breaker.Ignored)
}

// nearDeadline is how close to a deadline a gRPC DEADLINE_EXCEEDED must
// come back for it to be put down to that deadline rather than to the
// server itself (a server whose own dependency timed out).
const nearDeadline = 50 * time.Millisecond

// codeDeadlineExceeded is gRPC's DEADLINE_EXCEEDED.
const codeDeadlineExceeded = 4

// judge tells what ended the try: the caller's own context or side
// (callerDone: its context ended, or o is KindCallerEnded),
// the call's timeout, the per-try timeout, or none. It is the one place
// that decides whose deadline ran out. A gRPC server that gives up at the
// deadline the call sent it may answer DEADLINE_EXCEEDED a moment before
// the client's own timer fires: that answer is put down to the earliest
// deadline when it is at most nearDeadline away; further away, it is the
// server's own answer, judged by its code like any other.
func (t *Try) judge(o *Outcome) (callerDone, callTimedOut, tryTimedOut bool) {
	if t.ctx == nil {
		return false, false, false
	}
	if t.parent.Err() != nil || o.Kind == KindCallerEnded {
		return true, false, false
	}
	if t.ctx.Err() == nil {
		if !o.GRPC || o.Code != codeDeadlineExceeded {
			return false, false, false
		}
		if d, ok := t.ctx.Deadline(); !ok || time.Until(d) > nearDeadline {
			return false, false, false // the server's own deadline
		}
	}
	earliest, ok := t.ctx.Deadline()
	if !ok {
		return false, false, false
	}
	if d, ok := t.parent.Deadline(); ok && !earliest.Before(d) {
		return true, false, false // the caller's deadline is the one that ran out
	}
	if !t.callDeadline.IsZero() && !earliest.Before(t.callDeadline) {
		return false, true, false
	}
	return false, false, t.ctx != t.parent
}

// Run makes the tries of an admitted call until one succeeds, the policy
// stops retrying or the budget runs dry, and returns the error of the last
// try (nil when it succeeded). The call's timeout bounds all tries and the
// per-try timeout each; a retry waits a jittered backoff and goes to
// another instance when there is one. When the service breaker refuses, Run
// returns a *CircuitOpenError at once, without retrying; a pick error ends
// the call with that error. A backoff that the call's timeout or the
// caller's context ends returns context.DeadlineExceeded or the context's
// error. After Run the adapter owns the result of the last try; it calls
// Release once it is done with it (the HTTP adapter when the response body
// is closed), which ends the timeout contexts.
func (c *Call) Run(ctx context.Context, s Sender) error {
	if c.plain {
		// Nothing around the try: no breaker, timeout, retry or limit.
		t, _ := c.newTry()
		t.parent, t.ctx = ctx, ctx
		o := s.Send(ctx, t)
		if err := t.Done(&o); err != nil {
			return err
		}
		return o.Err
	}
	pol := c.route.policy
	// One context per try, whose deadline is the earlier of the call's
	// and the try's: the call's own deadline is kept as a time. The first
	// try starts when the call did (Admit's time: no clock read of its
	// own); a retry reads the clock after its backoff.
	now := c.start // zero without Admit: read below when needed
	var callDeadline time.Time
	if pol.Timeout > 0 {
		if now.IsZero() {
			now = time.Now()
		}
		callDeadline = now.Add(pol.Timeout)
	}
	var retry *router.RetryPolicy
	if pol.Retry != nil {
		c.route.budget.OnCall()
		if c.replayable {
			retry = pol.Retry
		}
	}
	for {
		t, err := c.newTry()
		if err != nil {
			return err
		}
		if c.cancelTry != nil {
			c.cancelTry()
			c.cancelTry = nil
		}
		tryCtx := ctx
		deadline := callDeadline
		if pol.Retry != nil && pol.Retry.PerTryTimeout > 0 {
			if now.IsZero() {
				now = time.Now()
			}
			if d := now.Add(pol.Retry.PerTryTimeout); deadline.IsZero() || d.Before(deadline) {
				deadline = d
			}
		}
		now = time.Time{} // a retry's try starts after the backoff
		if !deadline.IsZero() {
			// A caller's deadline that comes first ends the try anyway:
			// no context (and timer) of the mesh's own then.
			if d, ok := ctx.Deadline(); !ok || d.After(deadline) {
				tryCtx, c.cancelTry = context.WithDeadline(ctx, deadline)
			}
		}
		t.parent, t.ctx, t.callDeadline = ctx, tryCtx, callDeadline
		o := s.Send(tryCtx, t)
		if err := t.Done(&o); err != nil {
			return err
		}
		if retry == nil || c.tries > retry.Attempts || c.callerDone || t.callTimedOut ||
			!retryable(&retry.On, &o, t.tryTimedOut, c.idempotent) || !pushbackFits(ctx, callDeadline, o.RetryAfter) ||
			!c.route.budget.Take() {
			return o.Err
		}
		s.Discard()
		// The call now lasts at least until the backoff ends (or the
		// call's time or the caller's context does): the last try's end
		// no longer measures it.
		c.end = time.Time{}
		wait := retryBackoff(retry.Backoff, c.tries-1)
		if o.RetryAfter > 0 {
			wait = o.RetryAfter // the server's pushback replaces the backoff (gRFC A6)
		}
		if !callDeadline.IsZero() && time.Until(callDeadline) < wait {
			// The call's time runs out during the backoff.
			if !sleep(ctx, time.Until(callDeadline)) {
				c.callerDone = true
				return ctx.Err()
			}
			c.timedOut = true
			return context.DeadlineExceeded
		}
		if !sleep(ctx, wait) {
			c.callerDone = true
			return ctx.Err()
		}
		c.metrics.retry(c.decision.Service)
	}
}

// Rebase routes the call again on st, a newer State than the one Begin
// used, keeping what the call has tried: a gRPC call that waited for a
// connection picks from the instances and rules in force now. The policy
// Run applies (timeouts, retries) stays the one Begin found.
func (c *Call) Rebase(st *State, req *router.Request) error {
	if st == c.state {
		return nil
	}
	service := c.decision.Service
	if err := st.table.Match(service, req, &c.decision); err != nil {
		return err
	}
	c.state = st
	if svc := st.Service(service); svc != nil {
		c.svc = svc
	}
	return nil
}

// Release ends the call's timeout context. It is safe to call more than
// once.
func (c *Call) Release() {
	if c.cancelTry != nil {
		c.cancelTry()
		c.cancelTry = nil
	}
}

// Cancel returns the cancel function of the last try's timeout context
// and leaves it to the caller, for an adapter that releases it after the
// Call is gone (when a response body is closed); nil when there is none.
func (c *Call) Cancel() context.CancelFunc {
	cancel := c.cancelTry
	c.cancelTry = nil
	return cancel
}

// HasTimeouts reports whether Run left a timeout context to release.
func (c *Call) HasTimeouts() bool { return c.cancelTry != nil }

// verdict classifies a try for a breaker of policy bp: the caller's own
// cancellation says nothing about the destination; transport errors and
// the mesh's own timeouts are failures; otherwise the status or code is
// looked up in the policy's failure sets.
func verdict(bp *router.BreakerPolicy, o *Outcome, callerDone, timedOut bool) breaker.Outcome {
	switch {
	case bp == nil:
		return breaker.Ignored
	case callerDone:
		return breaker.Ignored
	case timedOut, o.Kind != KindNone:
		return breaker.Failure
	case o.GRPC && bp.FailureCodes.Has(o.Code):
		return breaker.Failure
	case !o.GRPC && bp.FailureStatus.Has(o.Status):
		return breaker.Failure
	}
	return breaker.Success
}

// retryable reports whether a try that came back with o may be retried
// under the conditions on; idempotent says whether the request may be
// sent again after the server may have acted on it (a per-try timeout or
// a reset connection).
func retryable(on *router.RetryOn, o *Outcome, tryTimedOut, idempotent bool) bool {
	switch {
	case tryTimedOut:
		return on.PerTryTimeout && idempotent
	case o.Kind == KindConnectFailure:
		return on.ConnectFailure
	case o.Kind == KindReset:
		return on.Reset && idempotent
	case o.Kind == KindError:
		return false
	case o.GRPC:
		return on.Codes.Has(o.Code)
	}
	return on.Status.Has(o.Status)
}

// pushbackFits reports whether a retry may follow a server's pushback d
// (see Outcome.RetryAfter): none, or one that ends before the caller's
// deadline and the call's (zero: none). A retry that could only start
// after them would turn the server's answer into a timeout.
func pushbackFits(ctx context.Context, callDeadline time.Time, d time.Duration) bool {
	switch {
	case d == 0:
		return true
	case d < 0:
		return false
	}
	at := time.Now().Add(d)
	if dl, ok := ctx.Deadline(); ok && !at.Before(dl) {
		return false
	}
	return callDeadline.IsZero() || at.Before(callDeadline)
}

// retryBackoff is the wait before retry n (0 for the first): base doubling
// each time, jittered by ±50%, never above 10 times base.
func retryBackoff(base time.Duration, n int) time.Duration {
	return backoff.Policy{Base: base, Max: 10 * base, Multiplier: 2, Jitter: 0.5}.Delay(n)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Reason returns why the call was refused or failed, for the
// lightmesh.reason span attribute: a rejection reason for a refusal, else
// ReasonTimeout, ReasonRetriesExhausted or ReasonUpstreamFailure when err
// is not nil or failed says the final response is a failure; "" when the
// call succeeded or the caller's own context ended it.
func (c *Call) Reason(err error, failed bool) string {
	if r := RejectionReason(err); r != "" {
		return r
	}
	switch {
	case err == nil && !failed, c.callerDone, !c.sent:
		return ""
	case c.timedOut:
		return ReasonTimeout
	case c.tries > 1:
		return ReasonRetriesExhausted
	}
	return ReasonUpstreamFailure
}

// Failure wraps err, the error a sent call ended with, in a *CallError
// naming the reason; it returns err itself when it is nil, a refusal, or
// the caller's own cancellation.
func (c *Call) Failure(err error) error {
	if err == nil || RejectionReason(err) != "" || c.callerDone || !c.sent {
		return err
	}
	return &CallError{Service: c.decision.Service, Reason: c.Reason(err, true), Tries: c.tries, Err: err}
}

// Annotate sets the mesh's attributes on a recording span: the service,
// and where the call went (subset, route, instance).
func Annotate(span oteltrace.Span, c *Call) {
	res := c.result
	span.SetAttributes(trace.AttrService.String(res.Service), trace.AttrSubset.String(res.Subset), trace.AttrRoute.String(res.Route))
	if res.Instance != nil {
		span.SetAttributes(trace.AttrInstance.String(res.Instance.Address))
	}
}

// AnnotateReason sets lightmesh.reason on a recording span when reason
// is not "" (see Call.Reason).
func AnnotateReason(span oteltrace.Span, reason string) {
	if reason != "" {
		span.SetAttributes(trace.AttrReason.String(reason))
	}
}
