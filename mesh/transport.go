package mesh

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"

	"github.com/lightmesh/lightmesh/router"
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
	table := t.m.table.Load()
	service := req.URL.Hostname()
	if !table.Has(service) {
		return t.base.RoundTrip(req)
	}
	ctx := req.Context()
	out := req.Clone(ctx)
	if out.Host == "" {
		out.Host = req.URL.Host
	}
	t.m.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	res, err := table.Route(service, &router.Request{Method: out.Method, Path: out.URL.Path, Header: out.Header}, nil)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	out.URL.Host = res.Instance.Address
	return t.base.RoundTrip(out)
}

// closeBody honours the RoundTripper contract: the request body is closed
// even when the request is not sent.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}
