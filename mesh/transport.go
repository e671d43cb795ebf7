package mesh

import (
	"net/http"
)

// Transport returns an http.RoundTripper that sends requests for mesh
// services through base (http.DefaultTransport when nil).
//
// A request whose URL host names a service the mesh knows (from rules or
// discovery), such as http://user-api/v1/users, is cloned, given the
// context's lane and trace headers, matched against the service's routes
// and sent to the instance picked; its Host header stays the logical name
// unless the caller set req.Host. Requests for any other host pass
// through to base untouched. Routing failures are returned as errors
// (router.ErrNoInstance, router.ErrNoRoute) without sending anything.
//
// The service's rules add protection: a client-side rate limit
// (ErrRateLimited), the service breaker and per-instance breakers that
// eject failing instances (ErrCircuitOpen), a timeout over the whole call
// and retries with a per-try timeout and a retry budget. Only idempotent
// requests with a replayable body (GetBody) are retried unless the rule
// says otherwise; each retry goes to another instance when there is one.
func (m *Mesh) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{m: m, base: base}
}

type transport struct {
	m    *Mesh
	base http.RoundTripper
}

var _ http.RoundTripper = (*transport)(nil)

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	snap := t.m.snap.Load()
	service := req.URL.Hostname()
	if !snap.table.Has(service) {
		return t.base.RoundTrip(req)
	}
	return t.m.send(snap, service, req, t.base)
}

// closeBody honours the RoundTripper contract: the request body is closed
// even when the request is not sent.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
