package meshgrpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/internal/meshlink"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
)

// meshError is an error the mesh returns to a gRPC caller: a status error
// (its code for status.Code and the wire) that also unwraps to the mesh's
// own error, so errors.Is(err, mesh.ErrCircuitOpen) and errors.As with
// *mesh.CircuitOpenError work as they do over HTTP.
type meshError struct {
	st    *status.Status
	cause error
}

func (e *meshError) Error() string { return e.st.Message() }

// GRPCStatus makes meshError a status error for status.FromError.
func (e *meshError) GRPCStatus() *status.Status { return e.st }

// Unwrap returns the mesh's own error.
func (e *meshError) Unwrap() error { return e.cause }

// statusOf returns err as the caller sees it: an error of the mesh's own
// (a refusal or a routing failure) as a meshError with its gRPC code and a
// message naming service, subset and route; a bare context error (the
// call's timeout or the caller's cancellation ended a retry's backoff) as
// DeadlineExceeded or Canceled, as grpc-go reports it; any other error
// unchanged.
func statusOf(err error, route string) error {
	var code codes.Code
	switch {
	case err == nil:
		return nil
	case err == context.DeadlineExceeded, err == context.Canceled:
		return status.FromContextError(err).Err()
	case errors.Is(err, engine.ErrRateLimited):
		code = codes.ResourceExhausted
	case errors.Is(err, engine.ErrCircuitOpen), errors.Is(err, router.ErrNoInstance),
		errors.Is(err, router.ErrNoRoute), errors.Is(err, engine.ErrNoConnection), errors.Is(err, router.ErrUnknownService):
		code = codes.Unavailable
	default:
		return err
	}
	msg := err.Error()
	if route != "" && errors.Is(err, router.ErrNoInstance) {
		msg += fmt.Sprintf(" (route %q)", route)
	}
	return &meshError{st: status.New(code, msg), cause: mesh.EngineError(meshlink.Key{}, err)}
}
