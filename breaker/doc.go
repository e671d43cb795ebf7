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
// The request path is [Breaker.Do]: it refuses with [ErrOpen] or runs the call,
// times it and records the [Outcome] the call reports. Do does not allocate
// when its argument is a closure that does not escape, and [Breaker.Ready] is
// a lock-free check a load balancer can use to skip ejected instances.
//
// # How the growing open period sits on gobreaker
//
// gobreaker's open period (Timeout) is fixed. The Breaker sets it to the
// shortest period it can ever choose (OpenBase, less the largest jitter) and
// keeps its own "open until" deadline in an atomic integer in front of
// gobreaker. When gobreaker trips it reports the transition through its
// OnStateChange hook; the Breaker counts the trip there and stores the
// deadline for this trip. Until that deadline passes, Do, Ready and State
// answer "open" from the atomic alone, without touching gobreaker's mutex.
// After it passes, calls reach gobreaker, which by then has moved to
// half-open and admits at most [Settings.HalfOpenProbes] probes. A failed
// probe trips again (a longer deadline); all probes succeeding closes the
// breaker and resets the trip count.
//
// The states the Breaker reports — [Breaker.State] and the
// [WithOnStateChange] hook — follow the deadline, not gobreaker's internal
// view: while the deadline holds the breaker is open even if gobreaker would
// already admit probes, and the hook sees open → half-open only once the
// deadline has passed. Hooks run after every lock is released, in
// transition order, so a hook may call any method of the Breaker.
//
// # Slow calls
//
// gobreaker counts successes and failures only. The Breaker times each call
// itself and passes the verdict to gobreaker as one of four private sentinel
// errors (fast or slow, success or failure). gobreaker hands that error to
// the Breaker's IsSuccessful hook while holding its own mutex, after it has
// dropped outcomes from an older generation, so the Breaker keeps a second
// small rolling window of completed and slow calls (same bucket geometry,
// cleared on every state change) under gobreaker's lock — no extra lock on
// the request path; the window rolls by the end time of recent calls, so it
// adds no clock read inside gobreaker's lock. When that window crosses the slow ratio, the call is
// reported to gobreaker as a failure and the Breaker's ReadyToTrip hook
// trips it. In half-open, a slow probe counts as a failed probe.
//
// # Rate limits
//
// [Limiter] is a golang.org/x/time/rate token bucket whose rate and burst can
// be changed in place by a rule update, keeping the tokens already in the
// bucket. [Limiter.RetryAfter] tells a server what to put in a Retry-After
// header without consuming a token.
//
// Nothing in this package starts goroutines or keeps global mutable state.
package breaker
