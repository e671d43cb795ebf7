package mesh

import (
	"time"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/internal/meshlink"
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
// (Instances 0; Subset and Instance empty), the breaker of the one
// instance left (Instance set), or the breakers of every instance of
// Subset. errors.Is matches it with ErrCircuitOpen and breaker.ErrOpen.
type CircuitOpenError struct {
	Service string
	Subset  string
	// Instances counts the instances whose breakers are open or refused
	// the call; 0 when the service breaker refused it.
	Instances int
	// Instance is the address of that instance when there was only one.
	Instance string
}

// Error says which breaker refused the call.
func (e *CircuitOpenError) Error() string { return (*engine.CircuitOpenError)(e).Error() }

// Is reports whether target is ErrCircuitOpen or breaker.ErrOpen.
func (e *CircuitOpenError) Is(target error) bool { return (*engine.CircuitOpenError)(e).Is(target) }

// ServiceLevel reports whether the service's own breaker refused the call
// (rather than instance breakers).
func (e *CircuitOpenError) ServiceLevel() bool { return e.Instances == 0 }

// RateLimitError names the limit that refused a call: the service's, and
// the route's name when the route has a limit of its own. errors.Is
// matches it with ErrRateLimited and breaker.ErrRateLimited.
type RateLimitError struct {
	Service string
	Route   string
}

// Error names the service and route whose limit refused the call.
func (e *RateLimitError) Error() string { return (*engine.RateLimitError)(e).Error() }

// Is reports whether target is ErrRateLimited or breaker.ErrRateLimited.
func (e *RateLimitError) Is(target error) bool { return (*engine.RateLimitError)(e).Is(target) }

// CallError is the error of a call the mesh sent that failed without a
// response. Refusals keep their own types (ErrCircuitOpen,
// ErrRateLimited, router.ErrNoInstance, router.ErrNoRoute); the caller's
// own cancellation is returned as it is.
type CallError struct {
	// Service is the logical name called.
	Service string
	// Reason is "timeout" (the rule's timeout or a per-try timeout ran
	// out), "retries_exhausted" (every try failed) or "upstream_failure"
	// (the one try sent failed).
	Reason string
	// Tries counts the tries sent.
	Tries int
	// Err is the last try's error, which errors.Is and errors.As see
	// through to.
	Err error
}

// Error names the service, the reason and the tries, then the last
// try's error.
func (e *CallError) Error() string { return (*engine.CallError)(e).Error() }

// Unwrap returns the last try's error.
func (e *CallError) Unwrap() error { return e.Err }

// publicError returns err, an error the engine returned for a call, with
// the engine's error types given as this package's: the same value, seen
// through the public type.
func publicError(err error) error {
	switch e := err.(type) {
	case *engine.CallError:
		return (*CallError)(e)
	case *engine.CircuitOpenError:
		return (*CircuitOpenError)(e)
	case *engine.RateLimitError:
		return (*RateLimitError)(e)
	}
	return err
}

// EngineError is for lightmesh's own gRPC adapter (package meshgrpc): it
// returns err, an error of the mesh's call engine, as publicError does.
// Code outside lightmesh cannot call it, because it cannot make a
// meshlink.Key.
func EngineError(_ meshlink.Key, err error) error { return publicError(err) }

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
