package engine

import (
	"context"
	"errors"
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
}

// Attempt is the adapter's side of one call: Run calls Try once per try and
// Discard for each try's result that a retry replaces.
type Attempt interface {
	// Try sends one try bounded by ctx. The HTTP adapter picks the
	// instance with Call.Pick first; the gRPC picker calls Call.Pick
	// itself.
	Try(ctx context.Context) Outcome
	// Discard releases the last try's result (drains and closes a
	// response body) because it will be retried.
	Discard()
}

// Call carries one logical call through the engine: Begin, Admit, Run
// (which calls back into Pick for each try) and then Release. The zero
// value is ready for Begin. A Call is used by one goroutine at a time.
type Call struct {
	state    *State
	svc      *Service // nil: the rules do not name the service
	route    *Route   // the matched route's protection; nil when svc is nil
	metrics  *Metrics
	decision router.Decision
	result   router.Result // of the last pick

	replayable bool
	plain      bool // nothing to apply around the tries
	sent       bool // at least one try went out
	tries      int  // tries sent
	timedOut   bool // a mesh timeout ended the last try or the call
	callerDone bool // the caller's context ended the call
	pickErr    error

	tried      [maxTried]*discovery.Instance
	ntried     int
	refused    [maxRefused]*discovery.Instance
	nrefused   int
	conns      Conns
	sawOpen    bool // a candidate was skipped because its breaker is open
	sawPending bool // ... because its connection is being set up
	sawDown    bool // ... because its connection failed

	picked                bool             // the current try picked an instance
	svcBreaker            *breaker.Breaker // that admitted svcTicket
	svcTicket, instTicket breaker.Ticket
	instBreaker           *breaker.Breaker
	instPolicy            *router.BreakerPolicy // instBreaker's
	cancelTry             context.CancelFunc    // of the last try's timeout context
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
	c.result = router.Result{Service: service, Route: c.decision.Route, RouteIndex: c.decision.RouteIndex, Subset: c.decision.Subset()}
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

// Policy returns the policy of the matched route, nil for a service the
// rules do not name.
func (c *Call) Policy() *router.CallPolicy {
	if c.route == nil {
		return nil
	}
	return c.route.policy
}

// SetReplayable says whether the request can be sent again (an idempotent
// HTTP method with a replayable body, a unary gRPC call); only then does
// Run retry.
func (c *Call) SetReplayable(ok bool) { c.replayable = ok }

// NonIdempotentAllowed reports whether the route's retry policy allows
// retrying non-idempotent requests.
func (c *Call) NonIdempotentAllowed() bool {
	p := c.Policy()
	return p != nil && p.Retry != nil && p.Retry.NonIdempotent
}

// Admit applies the route's rate limit at now, the time the call started
// (the adapters read the clock once per call; a clock read costs as much
// as the rest of the limiter): a *RateLimitError when the call must not
// be sent.
func (c *Call) Admit(now time.Time) error {
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

// Waiting reports whether the last pick failed only for connections still
// being set up (ConnPending): worth waiting for rather than failing.
func (c *Call) Waiting() bool { return c.sawPending }

// PickErr returns the error of the last failed pick, nil when the last
// pick succeeded.
func (c *Call) PickErr() error { return c.pickErr }

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
)

// Conns reports the connection state of instances; the gRPC picker passes
// one to Pick. It must not block.
type Conns interface {
	ConnState(in *discovery.Instance) ConnState
}

// Pick picks the instance for the next try: one of the chosen subset that
// this call has not tried yet when there is one, whose breaker is closed or
// has a free probe slot, and (with conns; nil for HTTP) whose connection is
// ready; its breaker then admits the try. An instance whose breaker
// refuses is left for another at once, without spending a retry. The
// route's fallback subset is used when the chosen one has no such
// instance — but not while the chosen one's connections are still being
// set up: a subset that is only connecting is waited for, not skipped.
//
// The errors, also kept for Run: ErrNoConnection when candidates exist but
// none has a ready connection (conns decides whether that is worth waiting
// for), a *CircuitOpenError when every candidate's breaker is open (naming
// the instance when there was only one), and a *router.NoInstanceError
// when there are none.
func (c *Call) Pick(conns Conns) (*discovery.Instance, error) {
	if c.instBreaker != nil {
		// A pick that replaces one never reported (gRPC retries an attempt
		// that failed before it was sent) gives that one's slot back.
		c.instBreaker.Done(c.instTicket, breaker.Ignored)
		c.instBreaker = nil
	}
	c.conns = conns
	c.sawOpen, c.sawPending, c.sawDown = false, false, false
	for {
		in, fallback := c.pickOnce()
		if in == nil {
			c.pickErr = c.pickError()
			return nil, c.pickErr
		}
		if b := c.svc.instanceBreaker(in); b != nil {
			t, err := b.Allow()
			if err != nil {
				if c.nrefused == maxRefused {
					c.pickErr = &CircuitOpenError{Service: c.decision.Service, Subset: c.decision.Subset(), Instances: maxRefused}
					return nil, c.pickErr
				}
				c.refused[c.nrefused] = in
				c.nrefused++
				continue
			}
			c.instTicket, c.instBreaker, c.instPolicy = t, b, c.svc.policy.Outlier
		}
		c.picked = true
		c.result.Instance, c.result.Subset, c.result.Fallback, c.pickErr = in, c.decision.Subset(), fallback, nil
		if fallback {
			c.result.Subset = c.decision.Fallback()
		}
		if c.ntried < maxTried {
			c.tried[c.ntried] = in
			c.ntried++
		}
		return in, nil
	}
}

// pickOnce picks from the chosen subset, preferring instances not tried
// yet, then from the fallback unless the chosen subset is still
// connecting; fallback reports which one it came from.
func (c *Call) pickOnce() (in *discovery.Instance, fallback bool) {
	t := c.state.table
	if in = t.PickChosen(&c.decision, c.acceptFresh); in != nil {
		return in, false
	}
	if c.ntried > 0 {
		if in = t.PickChosen(&c.decision, c.acceptAgain); in != nil {
			return in, false
		}
	}
	if c.sawPending {
		return nil, false
	}
	if in = t.PickFallback(&c.decision, c.acceptFresh); in != nil {
		return in, true
	}
	if c.ntried > 0 {
		if in = t.PickFallback(&c.decision, c.acceptAgain); in != nil {
			return in, true
		}
	}
	return nil, false
}

// instanceBreaker returns the outlier breaker of in, or nil.
func (s *Service) instanceBreaker(in *discovery.Instance) *breaker.Breaker {
	if s == nil || s.outlier == nil {
		return nil
	}
	return s.outlier[in.Address]
}

// Instances are told apart by address, not by pointer: a call that waits
// for a connection may pick again from a newer State (Rebase).
func (c *Call) acceptFresh(in *discovery.Instance) bool {
	for _, t := range c.tried[:c.ntried] {
		if t.Address == in.Address {
			return false
		}
	}
	return c.acceptAgain(in)
}

func (c *Call) acceptAgain(in *discovery.Instance) bool {
	if c.isRefused(in) {
		return false
	}
	if b := c.svc.instanceBreaker(in); b != nil && !b.Ready() {
		c.sawOpen = true
		return false
	}
	if c.conns != nil {
		switch c.conns.ConnState(in) {
		case ConnPending:
			c.sawPending = true
			return false
		case ConnDown:
			c.sawDown = true
			return false
		}
	}
	return true
}

// pickError says why no instance could be picked.
func (c *Call) pickError() error {
	d := &c.decision
	switch {
	case c.sawPending || c.sawDown:
		return ErrNoConnection
	case c.sawOpen || c.nrefused > 0:
		// Instances exist but their breakers are open or refused: an open
		// circuit, not a missing instance. Name the instance when it was
		// the only one.
		e := &CircuitOpenError{Service: d.Service, Subset: d.Subset()}
		chosen, fallback := c.state.table.Candidates(d)
		for _, list := range [2][]discovery.Instance{chosen, fallback} {
			for i := range list {
				in := &list[i]
				if b := c.svc.instanceBreaker(in); c.isRefused(in) || b != nil && !b.Ready() {
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

// Run makes the tries of an admitted call until one succeeds, the policy
// stops retrying or the budget runs dry, and returns the error of the last
// try (nil when it succeeded). The call's timeout bounds all tries and the
// per-try timeout each; a retry waits a jittered backoff and goes to
// another instance when there is one. When the service breaker refuses, Run
// returns a *CircuitOpenError at once, without retrying; a pick error ends
// the call with that error. After Run the adapter owns the result of the
// last try; it calls Release once it is done with it (the HTTP adapter when
// the response body is closed), which ends the timeout contexts.
func (c *Call) Run(ctx context.Context, a Attempt) error {
	if c.plain {
		// Nothing around the try: no breaker, timeout, retry or limit.
		c.pickErr, c.picked = nil, false
		o := a.Try(ctx)
		switch {
		case c.pickErr != nil && c.pickErr != ErrNoConnection:
			return c.pickErr
		case c.pickErr == nil && !c.picked, o.Kind == KindNotSent:
			return o.Err // nothing was sent
		}
		c.sent, c.tries, c.callerDone = true, 1, ctx.Err() != nil
		return o.Err
	}
	pol := c.route.policy
	// One context per try, whose deadline is the earlier of the call's
	// and the try's: the call's own deadline is kept as a time.
	var callDeadline time.Time
	if pol.Timeout > 0 {
		callDeadline = time.Now().Add(pol.Timeout)
	}
	var retry *router.RetryPolicy
	if pol.Retry != nil {
		c.route.budget.OnCall()
		if c.replayable {
			retry = pol.Retry
		}
	}
	for {
		if err := c.BeginTry(); err != nil {
			return err
		}
		if c.cancelTry != nil {
			c.cancelTry()
			c.cancelTry = nil
		}
		tryCtx := ctx
		deadline := callDeadline
		if pol.Retry != nil && pol.Retry.PerTryTimeout > 0 {
			if d := time.Now().Add(pol.Retry.PerTryTimeout); deadline.IsZero() || d.Before(deadline) {
				deadline = d
			}
		}
		if !deadline.IsZero() {
			tryCtx, c.cancelTry = context.WithDeadline(ctx, deadline)
		}
		o := a.Try(tryCtx)
		callerDone, callTimedOut, tryTimedOut := whoseDeadline(ctx, tryCtx, callDeadline, &o)
		c.timedOut, c.callerDone = callTimedOut || tryTimedOut, callerDone
		if err := c.EndTry(&o, callerDone, callTimedOut || tryTimedOut); err != nil {
			return err
		}
		if retry == nil || c.tries > retry.Attempts || callerDone || callTimedOut ||
			!retryable(&retry.On, &o, tryTimedOut) || !c.route.budget.Take() {
			return o.Err
		}
		a.Discard()
		wait := retryBackoff(retry.Backoff, c.tries-1)
		if !callDeadline.IsZero() && time.Until(callDeadline) < wait {
			// The call's time runs out during the backoff.
			sleep(ctx, time.Until(callDeadline))
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

// whoseDeadline tells what ended a try: the caller's own context, the
// call's timeout (callDeadline, zero for none) or the per-try timeout, or
// none. A gRPC server that gives up at the deadline the call sent it may
// answer DEADLINE_EXCEEDED a moment before the client's own timer fires;
// that answer is put down to the earliest deadline.
func whoseDeadline(parent, try context.Context, callDeadline time.Time, o *Outcome) (callerDone, callTimedOut, tryTimedOut bool) {
	if parent.Err() != nil {
		return true, false, false
	}
	timedOut := try.Err() != nil
	if !timedOut && !(o.GRPC && o.Code == codeDeadlineExceeded) {
		return false, false, false
	}
	earliest, ok := try.Deadline()
	if !ok {
		return false, false, false
	}
	if d, ok := parent.Deadline(); ok && !earliest.Before(d) {
		return true, false, false // the caller's deadline is the one that ran out
	}
	if !callDeadline.IsZero() && !earliest.Before(callDeadline) {
		return false, true, false
	}
	return false, false, try != parent
}

// Judge tells what ended a try bounded by the context try, derived from
// parent: the caller's own context (callerDone) or a mesh timeout
// (timedOut), or neither; for adapters that report a try's outcome
// themselves (the gRPC picker's Done callback).
func Judge(parent, try context.Context, o *Outcome) (callerDone, timedOut bool) {
	callerDone, _, timedOut = whoseDeadline(parent, try, time.Time{}, o)
	return callerDone, timedOut
}

// CallerEnded reports whether the caller's own context ended a try that
// no mesh timeout bounded (a gRPC stream): its context is done, or a
// server gave up at the deadline the context sent it.
func CallerEnded(ctx context.Context, o *Outcome) bool {
	if ctx.Err() != nil {
		return true
	}
	_, hasDeadline := ctx.Deadline()
	return hasDeadline && o.GRPC && o.Code == codeDeadlineExceeded
}

// codeDeadlineExceeded is gRPC's DEADLINE_EXCEEDED.
const codeDeadlineExceeded = 4

// BeginTry admits the next try through the service breaker: a
// *CircuitOpenError when it refuses, and then no retry can help. Run calls
// it for every try; an adapter making a single try itself (a gRPC stream)
// calls BeginTry, lets the try pick, and reports with EndTry.
func (c *Call) BeginTry() error {
	c.pickErr, c.instBreaker, c.picked, c.svcBreaker = nil, nil, false, nil
	if c.svc == nil || c.svc.breaker == nil {
		return nil
	}
	t, err := c.svc.breaker.Allow()
	if err != nil {
		return &CircuitOpenError{Service: c.decision.Service}
	}
	c.svcBreaker, c.svcTicket = c.svc.breaker, t
	return nil
}

// AbandonTry ends the try begun last without an outcome: nothing was
// sent, so it counts for no breaker.
func (c *Call) AbandonTry() {
	c.done(c.svcBreaker, c.svcTicket, breaker.Ignored)
	c.svcBreaker = nil
	if c.instBreaker != nil {
		c.instBreaker.Done(c.instTicket, breaker.Ignored)
		c.instBreaker = nil
	}
}

// EndTry reports the outcome o of the try begun last to the service
// breaker and to the breaker of the instance picked (unless an adapter
// took that one with TakeInstance), each judging it by its own failure
// set. callerDone says the caller's own context ended (the outcome then
// counts for neither), timedOut that a mesh timeout cut the try (a
// failure). When nothing was sent — the pick failed, the adapter failed
// before sending (KindNotSent), or no pick happened at all — EndTry counts
// it for no breaker and returns the error that ends the call; when no
// candidate could be connected to, o becomes a connect failure.
func (c *Call) EndTry(o *Outcome, callerDone, timedOut bool) error {
	switch {
	case c.pickErr == ErrNoConnection:
		// Candidates exist but none could be connected to (the gRPC
		// picker found every connection failing): a connect failure, for
		// the service breaker and for retrying elsewhere.
		o.Kind = KindConnectFailure
	case c.pickErr != nil:
		c.AbandonTry()
		return c.pickErr
	case !c.picked || o.Kind == KindNotSent:
		c.AbandonTry()
		if o.Err == nil {
			return errors.New("mesh: the call ended before it was sent")
		}
		return o.Err
	default:
		c.sent = true
	}
	c.tries++
	if c.svc != nil {
		c.done(c.svcBreaker, c.svcTicket, verdict(c.svc.policy.Breaker, o, callerDone, timedOut))
		c.svcBreaker = nil
	}
	if c.instBreaker != nil {
		c.instBreaker.Done(c.instTicket, verdict(c.instPolicy, o, callerDone, timedOut))
		c.instBreaker = nil
	}
	return nil
}

// InstanceTicket is the instance breaker's admission of one pick, for an
// adapter that learns each pick's outcome separately (gRPC reports every
// attempt of a call in the picker's Done callback). The zero value reports
// nothing.
type InstanceTicket struct {
	b      *breaker.Breaker
	t      breaker.Ticket
	policy *router.BreakerPolicy
}

// TakeInstance hands the last pick's instance ticket to the caller, who
// must report it with Done; EndTry then leaves the instance breaker alone.
func (c *Call) TakeInstance() InstanceTicket {
	it := InstanceTicket{b: c.instBreaker, t: c.instTicket, policy: c.instPolicy}
	c.instBreaker = nil
	return it
}

// Done reports the outcome of the pick: sent says whether anything reached
// the instance (nothing sent counts for nothing).
func (it InstanceTicket) Done(o *Outcome, sent, callerDone, timedOut bool) {
	if it.b == nil {
		return
	}
	if !sent {
		it.b.Done(it.t, breaker.Ignored)
		return
	}
	it.b.Done(it.t, verdict(it.policy, o, callerDone, timedOut))
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

// State returns the State the call routes on.
func (c *Call) State() *State { return c.state }

// done reports o for ticket t to b, when there is a breaker.
func (c *Call) done(b *breaker.Breaker, t breaker.Ticket, o breaker.Outcome) {
	if b != nil {
		b.Done(t, o)
	}
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
// under the conditions on.
func retryable(on *router.RetryOn, o *Outcome, tryTimedOut bool) bool {
	switch {
	case tryTimedOut:
		return on.PerTryTimeout
	case o.Kind == KindConnectFailure:
		return on.ConnectFailure
	case o.Kind == KindReset:
		return on.Reset
	case o.Kind == KindError:
		return false
	case o.GRPC:
		return on.Codes.Has(o.Code)
	}
	return on.Status.Has(o.Status)
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
