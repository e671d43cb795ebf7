package engine

import (
	"errors"
	"fmt"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/router"
)

var (
	// ErrCircuitOpen reports a call refused because a breaker is open: the
	// service's, or that of every instance the call could go to. The error
	// returned is a *CircuitOpenError; it also matches breaker.ErrOpen.
	ErrCircuitOpen = errors.New("mesh: circuit open")
	// ErrRateLimited reports a call refused by a client-side rate limit
	// without being sent. The error returned is a *RateLimitError; it also
	// matches breaker.ErrRateLimited.
	ErrRateLimited = errors.New("mesh: rate limited")
	// ErrNoConnection reports that instances were available but none had
	// a usable connection (gRPC: no sub-connection is ready yet). Adapters
	// turn it into their own wait-or-fail decision.
	ErrNoConnection = errors.New("mesh: no ready connection")
)

// CircuitOpenError names what refused a call: the service's breaker
// (Instances 0), or the breakers of the instances the call could go to.
type CircuitOpenError struct {
	Service string
	Subset  string
	// Instances counts the instances whose breakers are open or refused
	// the call; 0 when the service breaker refused it.
	Instances int
	// Instance is the address of that instance when there was only one.
	Instance string
}

func (e *CircuitOpenError) Error() string {
	in := ""
	if e.Subset != "" {
		in = fmt.Sprintf(" subset %q", e.Subset)
	}
	switch {
	case e.Instances == 0:
		return fmt.Sprintf("mesh: circuit open: the breaker of service %q refused the call", e.Service)
	case e.Instance != "":
		return fmt.Sprintf("mesh: circuit open: the instance breaker of %s (service %q%s) refused the call and no other instance is available", e.Instance, e.Service, in)
	}
	return fmt.Sprintf("mesh: circuit open for every instance of service %q%s (%d instance breakers open)", e.Service, in, e.Instances)
}

// Is reports whether target is ErrCircuitOpen or breaker.ErrOpen.
func (e *CircuitOpenError) Is(target error) bool {
	return target == ErrCircuitOpen || target == breaker.ErrOpen
}

// ServiceLevel reports whether the service's own breaker refused the call
// (rather than instance breakers).
func (e *CircuitOpenError) ServiceLevel() bool { return e.Instances == 0 }

// RateLimitError names the limit that refused a call.
type RateLimitError struct {
	Service string
	Route   string
}

func (e *RateLimitError) Error() string {
	if e.Route == "" {
		return fmt.Sprintf("mesh: rate limited: service %q", e.Service)
	}
	return fmt.Sprintf("mesh: rate limited: service %q route %q", e.Service, e.Route)
}

// Is reports whether target is ErrRateLimited or breaker.ErrRateLimited.
func (e *RateLimitError) Is(target error) bool {
	return target == ErrRateLimited || target == breaker.ErrRateLimited
}

// Reasons a call was refused before it reached an instance, as the
// "reason" label of lightmesh_rejections_total.
const (
	ReasonRateLimited = "rate_limited"
	ReasonCircuitOpen = "circuit_open"
	ReasonNoInstance  = "no_instance"
	ReasonNoRoute     = "no_route"
)

// Reasons a call the mesh sent failed, beside the rejection reasons: the
// lightmesh.reason span attribute and the text of a *CallError.
const (
	// ReasonTimeout: the call's or a try's timeout ran out.
	ReasonTimeout = "timeout"
	// ReasonRetriesExhausted: every try failed, the last one too.
	ReasonRetriesExhausted = "retries_exhausted"
	// ReasonUpstreamFailure: the one try sent failed (an error, or a
	// failure status for a call that was not retried).
	ReasonUpstreamFailure = "upstream_failure"
)

// CallError is the error of a call the mesh sent that failed without a
// response: Reason is ReasonTimeout, ReasonRetriesExhausted or
// ReasonUpstreamFailure, and Err the last try's error (errors.Is and
// errors.As see through to it).
type CallError struct {
	Service string
	Reason  string
	Tries   int
	Err     error
}

func (e *CallError) Error() string {
	tries := "1 try"
	if e.Tries != 1 {
		tries = fmt.Sprintf("%d tries", e.Tries)
	}
	return fmt.Sprintf("mesh: call to %q failed (%s, %s): %v", e.Service, e.Reason, tries, e.Err)
}

// Unwrap returns the last try's error.
func (e *CallError) Unwrap() error { return e.Err }

// RejectionReason returns the reason label of an error that refused a call
// before anything was sent, or "" for any other error.
func RejectionReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRateLimited):
		return ReasonRateLimited
	case errors.Is(err, ErrShed):
		return ReasonShed
	case errors.Is(err, ErrCircuitOpen):
		return ReasonCircuitOpen
	case errors.Is(err, router.ErrNoInstance), errors.Is(err, ErrNoConnection):
		return ReasonNoInstance
	case errors.Is(err, router.ErrNoRoute):
		return ReasonNoRoute
	}
	return ""
}
