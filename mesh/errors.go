package mesh

import (
	"errors"
	"fmt"

	"github.com/lightmesh/lightmesh/breaker"
)

var (
	// ErrCircuitOpen reports a call refused because the breaker of its
	// service, or of every instance of the chosen subset, is open. The
	// error returned is a *CircuitOpenError; it also matches
	// breaker.ErrOpen.
	ErrCircuitOpen = errors.New("mesh: circuit open")
	// ErrRateLimited reports a call refused by a client-side rate limit
	// without being sent. The error returned is a *RateLimitError; it also
	// matches breaker.ErrRateLimited.
	ErrRateLimited = errors.New("mesh: rate limited")
)

// CircuitOpenError names what refused a call: the service's breaker
// (Subset empty) or the breakers of every instance in Subset.
type CircuitOpenError struct {
	Service string
	Subset  string
}

func (e *CircuitOpenError) Error() string {
	if e.Subset == "" {
		return fmt.Sprintf("mesh: circuit open for service %q", e.Service)
	}
	return fmt.Sprintf("mesh: circuit open for every instance of service %q subset %q", e.Service, e.Subset)
}

// Is reports whether target is ErrCircuitOpen or breaker.ErrOpen.
func (e *CircuitOpenError) Is(target error) bool {
	return target == ErrCircuitOpen || target == breaker.ErrOpen
}

// RateLimitError names the limit that refused a call.
type RateLimitError struct {
	Service string
	Route   string
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("mesh: rate limited: service %q route %q", e.Service, e.Route)
}

// Is reports whether target is ErrRateLimited or breaker.ErrRateLimited.
func (e *RateLimitError) Is(target error) bool {
	return target == ErrRateLimited || target == breaker.ErrRateLimited
}
