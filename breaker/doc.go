// Package breaker holds lightmesh's circuit breakers and rate limiters.
//
// A [Breaker] wraps a github.com/sony/gobreaker/v2 circuit breaker and adds
// what the mesh needs on top of it without forking it:
//
//   - a rolling, bucketed window ([Settings.Window], [Settings.Buckets]) that
//     trips on a failure ratio once [Settings.MinRequests] calls completed;
//   - slow-call tripping: a call lasting at least [Settings.SlowCallThreshold]
//     is slow, and the breaker trips when the slow ratio reaches
//     [Settings.SlowCallRatio];
//   - a bounded number of concurrent half-open probes;
//   - an open period that grows exponentially with consecutive trips
//     (OpenBase × Multiplier^(trips−1), capped at OpenMax, optionally
//     jittered) and returns to OpenBase after a clean recovery.
//
// The request path is [Breaker.Do]: it refuses with [ErrOpen] or runs the
// call, times it and records the [Outcome] the call reports. Callers whose
// call does not fit in a closure (a gRPC picker admits a call and learns its
// outcome in a Done callback) use its two halves, [Breaker.Allow] and
// [Breaker.Done]. None of them allocates, and [Breaker.Ready] is a lock-free
// check a load balancer uses to skip ejected instances and half-open ones
// whose probe slots are all taken.
//
// # How admission sits in front of gobreaker
//
// gobreaker's open period (Timeout) is fixed and its two-step API allocates
// per call, so admission is decided in front of it. The Breaker keeps its
// own "open until" deadline and a count of half-open probes in flight in
// atomic integers: while the deadline holds, Allow, Ready and State answer
// "open" without touching gobreaker's mutex; after it passes, Allow admits
// at most [Settings.HalfOpenProbes] probes at once. gobreaker still owns
// the state machine: its ReadyToTrip hook (ours) decides the trip, and its
// half-open logic closes the breaker after enough good probes or reopens it
// after a bad one. gobreaker reports each transition through its
// OnStateChange hook; the Breaker counts the trip there, stores the
// deadline for this trip (OpenBase × Multiplier^(trips−1), capped,
// jittered) and bumps a generation number. An outcome of a call admitted
// in an older generation is dropped, as gobreaker drops its own.
//
// # Counting while closed
//
// gobreaker's Execute takes its mutex twice and reads the clock twice per
// outcome, which cost more than the rest of a call's decision. So while
// closed the Breaker counts outcomes in its own rolling window (same bucket
// geometry, cleared on every state change, rolled by the Breaker's clock):
// a success takes one clock read ([Breaker.DoneAt] takes a time the caller
// has read already) and one atomic add on its bucket, no lock unless slow
// calls are timed or its bucket must be rolled, and never reaches
// gobreaker (on two cores every success queued on the window's lock). A
// failure, or a call that takes the slow ratio over its threshold, is
// handed to gobreaker as a failure, and the ReadyToTrip hook reads the
// window. In half-open every outcome goes through gobreaker. An ignored
// outcome changes no count and touches neither.
//
// The states the Breaker reports — [Breaker.State] and the
// [WithOnStateChange] hook — follow the deadline, not gobreaker's internal
// view: while the deadline holds the breaker is open even if gobreaker would
// already admit probes, and the hook sees open → half-open only once the
// deadline has passed. Hooks run after every lock is released, in
// transition order, so a hook may call any method of the Breaker.
//
// # Adaptive mode
//
// With [Settings.Mode] [ModeAdaptive] the Breaker does not use gobreaker:
// it is client-side adaptive throttling as Google's SRE book describes it.
// A ring of buckets over [Settings.Window] counts the calls admitted and
// completed (requests) and those that succeeded in time (accepts); Allow
// refuses with probability max(0, (requests − K·accepts) / (requests + 1)),
// [Settings.K] defaulting to [DefaultK]. Refused calls are counted as
// neither, so refusing never feeds itself, and the refusals stop as soon
// as successes come back. It reports [StateHalfOpen] while it refuses a
// share of calls and [StateClosed] otherwise; [Breaker.DropRatio] gives
// the share. Allow and Done take one short mutex and do not allocate.
//
// Time is an argument in tests: [WithClock] replaces the clock of the
// deadline and of call timing, so a test steps a breaker through its states
// without sleeping.
//
// # Slow calls
//
// The Breaker times each call itself (Allow to Done) and counts slow calls
// in the same window. When the window crosses the slow ratio, the call is
// reported to gobreaker as a failure and the ReadyToTrip hook trips it. In
// half-open, a slow probe counts as a failed probe.
//
// # Rate limits
//
// [Limiter] is a token bucket that answers exactly as golang.org/x/time/rate's
// Limiter.AllowN would (its refill arithmetic, kept under one short lock
// instead of rate's general reservation). A rule update that changes its
// rate or burst gets a new Limiter from [Limiter.Carry], which starts with
// the tokens the old one holds, so the update neither refills nor drains
// the bucket; the old limiter is left as it was until the new one, in
// force, takes its bucket over ([Limiter.TakeOver]): calls still holding
// the old limiter then spend the one bucket, not a copy of it.
// [Limiter.RetryAfter] tells a server what to put in a Retry-After header
// without consuming a token.
//
// Nothing in this package starts goroutines or keeps global mutable state.
package breaker
