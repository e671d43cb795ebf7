package engine

import (
	"errors"
	"net/http"
	"time"
)

// Refusal describes a request the mesh answered itself instead of passing
// it to the service's handler: an inbound rate limit (WithLocalService's
// inbound routes) or the local service's adaptive inbound limit
// (inboundShedding). A service that answers errors in
// an envelope of its own gives mesh.WithRefusalWriter (HTTP) and
// meshgrpc.WithRefusalStatus (gRPC) a function that turns a Refusal into
// that envelope.
type Refusal struct {
	// Reason is why, as the mesh's metrics name it: "rate_limited" or
	// "shed".
	Reason string
	// Service is the local service whose rule refused the request, and
	// Route the name of the inbound route whose limit did ("inbound[i]"
	// for an unnamed route, "" for a request no route could place; see
	// router.InboundUndecided).
	Service, Route string
	// RetryAfter is how long the caller should wait before trying again.
	RetryAfter time.Duration
	// Err is the mesh's error: a *RateLimitError for "rate_limited", a
	// *ShedError for "shed".
	Err error
}

// NewRefusal describes err, an error Enter returned, with the wait Enter
// reported.
func NewRefusal(err error, wait time.Duration) Refusal {
	rf := Refusal{Reason: RejectionReason(err), RetryAfter: wait, Err: err}
	var rl *RateLimitError
	var se *ShedError
	switch {
	case errors.As(err, &rl):
		rf.Service, rf.Route = rl.Service, rl.Route
	case errors.As(err, &se):
		rf.Service = se.Service
	}
	return rf
}

// HTTPStatus returns the status the mesh answers the refusal with by
// default: 429 Too Many Requests for a rate limit or a request shed,
// 503 Service Unavailable for any other reason.
func (r Refusal) HTTPStatus() int {
	if r.Reason == ReasonRateLimited || r.Reason == ReasonShed {
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}
