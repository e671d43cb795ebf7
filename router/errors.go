package router

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNoInstance reports that no available instance could serve a call.
	// The error returned is a *NoInstanceError naming service and subset.
	ErrNoInstance = errors.New("router: no available instance")
	// ErrNoRoute reports that none of a service's routes matched a request.
	ErrNoRoute = errors.New("router: no route matches the request")
	// ErrUnknownService reports a service that neither the rules nor
	// discovery know; callers treat such a host as outside the mesh.
	ErrUnknownService = errors.New("router: unknown service")
)

// NoInstanceError is returned when the chosen subset, and its fallback if
// any, have no available instance. It matches ErrNoInstance with errors.Is.
type NoInstanceError struct {
	Service string
	// Subset is the subset the route chose ("" when the service has no
	// subsets); Fallback is the fallback subset that was also empty, if any.
	Subset   string
	Fallback string
}

func (e *NoInstanceError) Error() string {
	msg := fmt.Sprintf("router: no available instance for service %q", e.Service)
	if e.Subset != "" {
		msg += fmt.Sprintf(" in subset %q", e.Subset)
	}
	if e.Fallback != "" {
		msg += fmt.Sprintf(" (fallback %q is empty too)", e.Fallback)
	}
	return msg
}

// Is reports whether target is ErrNoInstance.
func (e *NoInstanceError) Is(target error) bool { return target == ErrNoInstance }

// NoRouteError is returned when no route of Service matched. It matches
// ErrNoRoute with errors.Is.
type NoRouteError struct{ Service string }

func (e *NoRouteError) Error() string {
	return fmt.Sprintf("router: no route of service %q matches the request", e.Service)
}

// Is reports whether target is ErrNoRoute.
func (e *NoRouteError) Is(target error) bool { return target == ErrNoRoute }

// FieldError is one problem found in a document: Path names the place
// (services.user-api.routes[1].destinations[0].weight) and Line and Column
// where it is written, when known (0 otherwise).
type FieldError struct {
	Path   string
	Reason string
	Line   int
	Column int
}

// Error returns "path: reason (line L, column C)".
func (e *FieldError) Error() string {
	msg := e.Reason
	if e.Path != "" {
		msg = e.Path + ": " + e.Reason
	}
	if e.Line > 0 {
		msg += fmt.Sprintf(" (line %d, column %d)", e.Line, e.Column)
	}
	return msg
}

// MaxProblems caps the problems one ValidationError lists; the rest are
// only counted.
const MaxProblems = 50

// ValidationError is a rejected document: every problem found in one pass,
// in document order, up to MaxProblems. errors.As reaches each *FieldError.
type ValidationError struct {
	Problems []*FieldError
	// More counts the problems found beyond MaxProblems.
	More int
}

// Error lists the problems, one per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("router: invalid document: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Error())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n... and %d more problems", e.More)
	}
	return b.String()
}

// Unwrap returns the problems, for errors.As.
func (e *ValidationError) Unwrap() []error {
	out := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		out[i] = p
	}
	return out
}
