package mesh

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/trace"
)

// maxTries bounds the instances one call remembers having tried.
const maxTries = MaxRetryAttempts + 1

// call carries one logical request through routing, limits, breakers and
// retries. It lives on the stack of RoundTrip.
type call struct {
	m       *Mesh
	snap    *state
	pol     *servicePolicy
	cp      *callPolicy
	base    http.RoundTripper
	service string
	req     *http.Request // the clone being sent, lane and trace injected
	rreq    router.Request
	tried   [maxTries]*discovery.Instance
	ntried  int
}

// accept admits an instance whose breaker is not open and that this call
// has not tried yet.
func (c *call) accept(in *discovery.Instance) bool {
	for _, t := range c.tried[:c.ntried] {
		if t == in {
			return false
		}
	}
	return c.ready(in)
}

func (c *call) ready(in *discovery.Instance) bool {
	if c.pol == nil || c.pol.instances == nil {
		return true
	}
	b := c.pol.instances[in.Address]
	return b == nil || b.Ready()
}

// route picks the instance for the next try, preferring one not tried yet.
func (c *call) route() (router.Result, error) {
	res, err := c.snap.table.Route(c.service, &c.rreq, c.accept)
	if err != nil && c.ntried > 0 && errors.Is(err, router.ErrNoInstance) {
		res, err = c.snap.table.Route(c.service, &c.rreq, c.ready)
	}
	if err != nil {
		var noInst *router.NoInstanceError
		if errors.As(err, &noInst) && len(c.snap.table.Instances(c.service, noInst.Subset)) > 0 {
			// Instances exist but every breaker is open: that is an open
			// circuit, not a missing instance.
			return res, &CircuitOpenError{Service: c.service, Subset: noInst.Subset}
		}
	}
	return res, err
}

// send runs one call to a mesh service and records it: a client span (in
// span mode), the request and latency metrics and any rejection.
func (m *Mesh) send(snap *state, service string, req *http.Request, base http.RoundTripper) (*http.Response, error) {
	start := time.Now()
	ctx, span := m.prop.StartClient(req.Context(), req)
	c := call{m: m, snap: snap, pol: snap.policies[service], base: base, service: service}
	resp, res, err := c.send(ctx, req)
	code := 0
	if resp != nil {
		code = resp.StatusCode
	}
	if span.IsRecording() {
		span.SetAttributes(trace.AttrService.String(service), trace.AttrSubset.String(res.Subset), trace.AttrRoute.String(res.Route))
		if res.Instance != nil {
			span.SetAttributes(trace.AttrInstance.String(res.Instance.Address))
		}
	}
	trace.End(span, code, err)
	if m.metrics != nil {
		m.metrics.observe(ctx, outbound, service, res.Subset, code, time.Since(start))
		if reason := rejectionReason(err); reason != "" {
			m.metrics.reject(outbound, service, reason)
		}
	}
	return resp, err
}

func rejectionReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrRateLimited):
		return reasonRateLimited
	case errors.Is(err, ErrCircuitOpen):
		return reasonCircuitOpen
	case errors.Is(err, router.ErrNoInstance):
		return reasonNoInstance
	case errors.Is(err, router.ErrNoRoute):
		return reasonNoRoute
	}
	return ""
}

// send routes the call, applies the rate limit, then tries until one try
// succeeds, the policy stops retrying or the budget runs dry. It returns
// the routing result of the last try.
func (c *call) send(ctx context.Context, req *http.Request) (*http.Response, router.Result, error) {
	out := req.Clone(ctx)
	if out.Host == "" {
		out.Host = req.URL.Host
	}
	c.m.prop.Inject(ctx, propagation.HeaderCarrier(out.Header))
	c.req = out
	c.rreq = router.Request{Method: out.Method, Path: out.URL.Path, Header: out.Header}

	res, err := c.route()
	if err != nil {
		closeBody(req)
		return nil, res, err
	}
	if c.pol != nil {
		if res.RouteIndex >= 0 {
			c.cp = &c.pol.routes[res.RouteIndex]
		} else {
			c.cp = &c.pol.fallback
		}
		if c.cp.limiter != nil && !c.cp.limiter.Allow() {
			closeBody(req)
			return nil, res, &RateLimitError{Service: c.service, Route: res.Route}
		}
	}
	if c.cp == nil || (c.cp.timeout == 0 && c.cp.retry == nil && c.pol.breaker == nil && c.pol.instances == nil) {
		out.URL.Host = res.Instance.Address
		resp, err := c.base.RoundTrip(out)
		return resp, res, err
	}
	return c.run(ctx, res)
}

func (c *call) run(ctx context.Context, res router.Result) (*http.Response, router.Result, error) {
	cp := c.cp
	callCtx, cancel := ctx, context.CancelFunc(func() {})
	if cp.timeout > 0 {
		callCtx, cancel = context.WithTimeout(ctx, cp.timeout)
	}
	retry := cp.retry
	if retry != nil {
		retry.budget.onCall()
		if !c.replayable() {
			retry = nil
		}
	}
	for attempt := 0; ; attempt++ {
		c.tried[c.ntried] = res.Instance
		c.ntried++
		resp, err, tryCancel := c.try(callCtx, ctx, res.Instance, attempt > 0)
		if !c.shouldRetry(retry, attempt, ctx, callCtx, resp, err) {
			if err != nil {
				tryCancel()
				cancel()
				return nil, res, err
			}
			if cp.timeout > 0 || (cp.retry != nil && cp.retry.perTry > 0) {
				// Timeout contexts live until the caller closes the body.
				resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: func() { tryCancel(); cancel() }}
			} else {
				tryCancel() // no-ops: there is no timeout context
				cancel()
			}
			return resp, res, nil
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		tryCancel()
		if !sleepCtx(callCtx, jittered(retry.backoff, attempt)) {
			cancel()
			return nil, res, callCtx.Err()
		}
		c.m.metrics.retry(c.service)
		next, rerr := c.route()
		if rerr != nil {
			cancel()
			return nil, res, rerr
		}
		res = next
	}
}

// try sends one try to in through the service and instance breakers.
func (c *call) try(callCtx, parent context.Context, in *discovery.Instance, again bool) (*http.Response, error, context.CancelFunc) {
	tryCtx, tryCancel := callCtx, context.CancelFunc(func() {})
	if c.cp.retry != nil && c.cp.retry.perTry > 0 {
		tryCtx, tryCancel = context.WithTimeout(callCtx, c.cp.retry.perTry)
	}
	r := c.req
	switch {
	case !again && tryCtx != parent:
		// c.req is already this call's private clone: the first try only
		// needs its own context, not another copy of the headers.
		r = c.req.WithContext(tryCtx)
	case again:
		r = c.req.Clone(tryCtx)
		if c.req.GetBody != nil {
			body, err := c.req.GetBody()
			if err != nil {
				return nil, err, tryCancel
			}
			r.Body = body
		}
	}
	r.URL.Host = in.Address

	var resp *http.Response
	var err error
	if gerr := c.guard(in, func() breaker.Outcome {
		resp, err = c.base.RoundTrip(r)
		return c.outcome(parent, resp, err)
	}); gerr != nil {
		return nil, gerr, tryCancel
	}
	return resp, err, tryCancel
}

// guard runs send through the service breaker and the breaker of instance
// in, whichever exist. It returns a *CircuitOpenError when either refuses;
// an instance refusal counts for neither the service nor the instance.
func (c *call) guard(in *discovery.Instance, send func() breaker.Outcome) error {
	var refused bool
	attempt := send
	if ib := c.pol.instances[in.Address]; ib != nil {
		attempt = func() breaker.Outcome {
			var o breaker.Outcome
			if ib.Do(func() breaker.Outcome { o = send(); return o }) != nil {
				refused = true
				return breaker.Ignored
			}
			return o
		}
	}
	if sb := c.pol.breaker; sb != nil {
		if sb.Do(attempt) != nil {
			return &CircuitOpenError{Service: c.service}
		}
	} else {
		attempt()
	}
	if refused {
		return &CircuitOpenError{Service: c.service}
	}
	return nil
}

// outcome classifies a try for the breakers: the caller's own
// cancellation says nothing about the destination.
func (c *call) outcome(parent context.Context, resp *http.Response, err error) breaker.Outcome {
	switch {
	case err != nil && parent.Err() != nil:
		return breaker.Ignored
	case err != nil:
		return breaker.Failure
	case c.pol.failure.has(resp.StatusCode):
		return breaker.Failure
	}
	return breaker.Success
}

func (c *call) shouldRetry(rp *retryPolicy, attempt int, parent, callCtx context.Context, resp *http.Response, err error) bool {
	if rp == nil || attempt >= rp.attempts || parent.Err() != nil || callCtx.Err() != nil {
		return false
	}
	if !retryable(rp, resp, err) {
		return false
	}
	return rp.budget.take()
}

func retryable(rp *retryPolicy, resp *http.Response, err error) bool {
	if err == nil {
		return rp.on.status.has(resp.StatusCode)
	}
	var op *net.OpError
	switch {
	case errors.Is(err, ErrCircuitOpen):
		return true // another instance may be closed
	case errors.As(err, &op) && op.Op == "dial":
		return rp.on.connectFailure
	case errors.Is(err, context.DeadlineExceeded):
		return rp.on.perTryTimeout
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return rp.on.reset
	}
	return false
}

// replayable reports whether the request may be sent again: an idempotent
// method (or a rule allowing others) and a body that can be re-read.
func (c *call) replayable() bool {
	switch c.req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		if !c.cp.retry.nonIdempotent {
			return false
		}
	}
	return c.req.Body == nil || c.req.Body == http.NoBody || c.req.GetBody != nil
}

func jittered(base time.Duration, attempt int) time.Duration {
	d := base << min(attempt, 3) // at most 8x, under the documented 10x cap
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// cancelBody releases a call's timeout contexts when the caller closes the
// response body, not before: the body is still being read until then.
type cancelBody struct {
	io.ReadCloser
	cancel func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
