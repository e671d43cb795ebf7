package mesh

import (
	"time"

	"github.com/lightmesh/lightmesh/internal/engine"
)

var (
	// ErrCircuitOpen reports a call refused because a breaker is open: the
	// service's breaker, or that of every instance the call could go to.
	// The error returned is a *CircuitOpenError; it also matches
	// breaker.ErrOpen. A service breaker's refusal returns at once, without
	// retrying; an instance breaker's refusal sends the call to another
	// instance first.
	ErrCircuitOpen = engine.ErrCircuitOpen
	// ErrRateLimited reports a call refused by a client-side rate limit
	// without being sent. The error returned is a *RateLimitError; it also
	// matches breaker.ErrRateLimited.
	ErrRateLimited = engine.ErrRateLimited
)

// CircuitOpenError names what refused a call: the service's breaker
// (Subset and Instance empty), the breaker of the one instance left
// (Instance set), or the breakers of every instance of Subset.
type CircuitOpenError = engine.CircuitOpenError

// RateLimitError names the limit that refused a call.
type RateLimitError = engine.RateLimitError

// CallError is the error of a call the mesh sent that failed without a
// response: Reason is "timeout" (the rule's timeout or a per-try timeout
// ran out), "retries_exhausted" or "upstream_failure" (the one try
// failed), and Err the last try's error, which errors.Is and errors.As
// see through to. Refusals keep their own types (ErrCircuitOpen,
// ErrRateLimited, router.ErrNoInstance, router.ErrNoRoute); the caller's
// own cancellation is returned as it is.
type CallError = engine.CallError

// RejectionError is a rule document the mesh rejected, as
// Mesh.LastRejection returns it. errors.As reaches the validator's error
// through it: a *router.ValidationError with every problem and its place.
type RejectionError struct {
	// Document names the document in a per-service layout
	// (WithRuleCatalog): the service, or rules.DefaultsName; empty with
	// WithRules.
	Document string
	// Source names the document where it is kept (credentials redacted),
	// and Version the version rejected.
	Source, Version string
	// At is when it was rejected.
	At time.Time
	// Err is why.
	Err error
	msg string // Err's text, credentials redacted
}

// Error returns "<document>: <why>" (just why with WithRules), with
// credentials redacted.
func (e *RejectionError) Error() string {
	if e.Document != "" {
		return e.Document + ": " + e.msg
	}
	return e.msg
}

// Unwrap returns Err.
func (e *RejectionError) Unwrap() error { return e.Err }
