package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// Transport returns an http.RoundTripper that sends requests for mesh
// services through base (http.DefaultTransport when nil).
//
// A request whose URL host names a service the mesh knows (from rules,
// discovery or WithServices), such as http://user-api/v1/users, is cloned
// (the caller's request is never changed), given the context's lane and
// trace headers, matched against the service's routes and sent to the
// instance picked; its Host header stays the logical name unless the
// caller set req.Host, and for https the TLS server name is the logical
// name too (when base is an *http.Transport), so certificates are checked
// against it rather than the instance's IP. Requests for any other host
// pass through to base untouched. Routing failures are returned as errors
// (router.ErrNoInstance, router.ErrNoRoute) without sending anything, and
// the request body is closed.
//
// The service's rules add protection: a client-side rate limit
// (ErrRateLimited), the service breaker and per-instance breakers that
// eject failing instances (ErrCircuitOpen), a timeout over the whole call
// and retries with a per-try timeout and a retry budget. Only idempotent
// requests with a replayable body (GetBody) are retried unless the rule
// says otherwise; each retry goes to another instance when there is one.
// A 101 Switching Protocols response (WebSocket, h2c) is returned as base
// gave it, and no mesh timeout outlives the handshake.
func (m *Mesh) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &transport{m: m, base: base}
	t.calls.New = func() any { return new(httpCall) }
	return t
}

type transport struct {
	m     *Mesh
	base  http.RoundTripper
	tls   sync.Map  // TLS server name -> *http.Transport cloned from base
	mtls  sync.Map  // service -> *mtlsTransport (see mtlsFor)
	calls sync.Pool // of *httpCall: a call is done with it when send returns
}

// release returns h to the pool, cleared: nothing of the call outlives
// send (the response body keeps only the cancel functions it needs).
func (t *transport) release(h *httpCall) {
	*h = httpCall{}
	t.calls.Put(h)
}

var _ http.RoundTripper = (*transport)(nil)

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	st := t.m.eng.Load()
	service := req.URL.Hostname()
	if !st.Table().Has(service) || t.m.unsettled(st, service) {
		if !t.m.cfg.meshService(service) {
			return t.base.RoundTrip(req)
		}
		if !t.m.lookUp(req.Context(), service) {
			if t.m.cfg.strict {
				closeBody(req)
				if err := req.Context().Err(); err != nil {
					return nil, err // the caller gave up during the lookup
				}
				return nil, unknownServiceError(service)
			}
			return t.base.RoundTrip(req)
		}
		st = t.m.eng.Load()
	}
	return t.send(st, service, req)
}

// httpCall is one request through the engine: the HTTP adapter's side of
// an engine.Call.
type httpCall struct {
	c     engine.Call
	base  http.RoundTripper
	orig  *http.Request // the caller's request
	mr    *meshRequest  // the first try's storage; its header has the lane and trace
	req   *http.Request // the last try's request
	resp  *http.Response
	tries int
}

// send runs one call to a mesh service and records it: a client span (in
// span mode), the request metrics or the rejection.
func (t *transport) send(st *engine.State, service string, req *http.Request) (*http.Response, error) {
	m := t.m
	var start time.Time // the call's start: read here when the metrics measure its latency
	if m.metrics != nil {
		start = time.Now()
	}
	prop := m.eng.Propagator()
	ctx, span := prop.StartClient(req.Context(), req)
	h := t.calls.Get().(*httpCall)
	defer t.release(h)
	if h.base = t.mtlsFor(st, service); h.base == nil {
		h.base = t.baseFor(req) // not for mutual TLS: it would clone a transport for an https name in vain
	}
	h.orig, h.mr = req, newMeshRequest(req.Header)
	prop.Inject(ctx, &h.mr.header)
	rreq := router.Request{Method: req.Method, Path: req.URL.Path, Header: h.mr.header.Header}
	err := h.c.Begin(st, service, &rreq, m.metrics)
	if err == nil {
		if start.IsZero() && !h.c.Plain() {
			start = time.Now() // the limiter, breakers and timeouts count from it
		}
		err = h.c.Admit(start)
	}
	if err == nil {
		ok := replayable(req, h.c.NonIdempotentAllowed())
		h.c.SetReplayable(ok, ok) // only idempotent methods, or those the rule allows, are replayable

		err = h.c.Run(ctx, h)
	}
	resp := h.resp
	if err != nil {
		if resp != nil { // a response that a failed retry replaced was discarded; this one is the caller's
			resp.Body.Close()
			resp = nil
		}
		err = h.c.Failure(err)
		if !h.c.Sent() {
			closeBody(req)
		}
		h.c.Release()
	} else {
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			// The body is the upgraded connection: no timeout may cut it.
			h.c.Release()
		case h.c.HasTimeouts():
			// Timeout contexts live until the caller closes the body.
			h.mr.body = cancelBody{ReadCloser: resp.Body, cancel: h.c.Cancel()}
			resp.Body = &h.mr.body
		}
	}
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	if m.metrics != nil { // without metrics the call's end needs no clock read
		m.metrics.Finish(ctx, &h.c, engine.HTTP, engine.HTTPCode(code), h.c.Elapsed(start), err)
	}
	if span.IsRecording() {
		engine.Annotate(span, &h.c)
		engine.AnnotateReason(span, h.c.Reason(err, code >= 500))
	}
	trace.End(span, code, err)
	return resp, publicError(err)
}

// meshRequest holds, in one allocation, what the mesh adds to a caller's
// request: the header map of the requests it sends, with room for the
// values of the propagation headers, the first try's request and URL, and
// the response body wrapper that ends the call's timeouts.
type meshRequest struct {
	header trace.OutgoingHeader
	values [3]string // traceparent, baggage, one more
	req    http.Request
	url    url.URL
	body   cancelBody
}

// newMeshRequest returns the storage for a call with the caller's header
// h. The header is h itself until the lane and trace headers are added:
// the first of them makes it a new map (trace.OutgoingHeader.Shared)
// which, unlike Request.Clone, does not copy each header's values but
// shares their slices with the caller's header, capped so that an append
// to one never writes into the caller's backing array; headers are only
// ever replaced, never changed in place, and a base RoundTripper may not
// change a request's header at all (http.RoundTripper), so a call that
// adds nothing sends the caller's map as it is.
func newMeshRequest(h http.Header) *meshRequest {
	mr := new(meshRequest)
	mr.header = trace.OutgoingHeader{Header: h, Spare: mr.values[:0], Shared: true}
	if h == nil {
		mr.header.Header, mr.header.Shared = make(http.Header, 4), false
	}
	return mr
}

// firstTry returns the request of a call's first try: a shallow copy of
// req with ctx, the mesh's header and its own URL (the host becomes the
// instance's address), sharing everything else. Retries clone it fully.
func (mr *meshRequest) firstTry(ctx context.Context, req *http.Request) *http.Request {
	if ctx == req.Context() {
		mr.req = *req // a shallow copy, as Request.WithContext makes
	} else {
		mr.req = *req.WithContext(ctx)
	}
	mr.url = *req.URL
	out := &mr.req
	out.URL, out.Header = &mr.url, mr.header.Header
	if out.Host == "" {
		out.Host = req.URL.Host
	}
	return out
}

// Send implements engine.Sender: it picks an instance and sends try t.
func (h *httpCall) Send(ctx context.Context, t *engine.Try) engine.Outcome {
	in, err := t.Pick(nil)
	if err != nil {
		return engine.Outcome{Err: err}
	}
	var r *http.Request
	if h.tries == 0 {
		r = h.mr.firstTry(ctx, h.orig)
	} else {
		r = h.req.Clone(ctx)
		if h.req.GetBody != nil {
			body, err := h.req.GetBody()
			if err != nil {
				return engine.Outcome{Kind: engine.KindNotSent, Err: err}
			}
			r.Body = body
		}
	}
	h.req = r
	h.tries++
	r.URL.Host = in.Address
	resp, err := h.base.RoundTrip(r)
	if err != nil {
		return engine.Outcome{Kind: errorKind(err), Err: err}
	}
	h.resp = resp
	return engine.Outcome{Status: resp.StatusCode}
}

// Discard implements engine.Sender: the response will be retried. Its
// body is closed unread: reading it (to reuse an HTTP/1 connection) would
// hold the retry for as long as a slow server takes to send it, up to the
// try's timeout, and a stalled body would lose the retry altogether. An
// HTTP/1 connection whose body was left unread is closed; an HTTP/2
// stream is reset.
func (h *httpCall) Discard() {
	if h.resp != nil {
		h.resp.Body.Close()
		h.resp = nil
	}
}

// errorKind classifies a transport error for retries and breakers.
func errorKind(err error) engine.Kind {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return engine.KindConnectFailure
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		isStreamReset(err):
		return engine.KindReset
	}
	return engine.KindError
}

// isStreamReset reports whether err is an HTTP/2 stream the server reset
// (RST_STREAM), what a broken connection is for HTTP/1. net/http's HTTP/2
// error type is unexported (its bundled copy of x/net/http2), so it is
// told by its message, "stream error: stream ID N; CODE; received from
// peer".
func isStreamReset(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "stream error: stream ID") && strings.Contains(msg, "received from peer")
}

// replayable reports whether req may be sent again: an idempotent method
// (or a rule allowing others) and a body that can be re-read.
//
// Go's http.Transport also retries an idempotent request by itself, once,
// when a reused keep-alive connection turns out to be closed before any of
// the response arrived (https://pkg.go.dev/net/http#Transport); those
// resends come on top of retry.attempts and are not counted by the retry
// budget.
func replayable(req *http.Request, nonIdempotent bool) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		if !nonIdempotent {
			return false
		}
	}
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// baseFor returns the transport for req: base itself, or for https to a
// logical name a clone of base whose TLS server name is that name, since
// the URL host becomes the instance's address.
func (t *transport) baseFor(req *http.Request) http.RoundTripper {
	ht, ok := t.base.(*http.Transport)
	if !ok || req.URL.Scheme != "https" {
		return t.base
	}
	name := req.URL.Hostname()
	if cached, ok := t.tls.Load(name); ok {
		return cached.(*http.Transport)
	}
	clone := ht.Clone()
	if clone.TLSClientConfig == nil {
		clone.TLSClientConfig = &tls.Config{}
	}
	if clone.TLSClientConfig.ServerName == "" {
		clone.TLSClientConfig.ServerName = name
	}
	actual, _ := t.tls.LoadOrStore(name, clone)
	return actual.(*http.Transport)
}

// closeBody honours the RoundTripper contract: the request body is closed
// even when the request is not sent.
func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// cancelBody releases a call's timeout context when the caller closes the
// response body, not before: the body is still being read until then.
type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
