package mesh

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
)

// Authorizer returns the authorization of the calls service receives in
// the rules in force (its authorization section, composed as explain
// shows it), or nil, meaning every caller may call, when the service has
// none. It fails closed (router.Rules.Authorizer): before the first rule
// document is in force (WithStartEmpty), and while the rules in force do
// not name service, it refuses every call with router.Verdict.Unknown.
// identity.NewGuard enforces it: a rejected document never changes it,
// and an applied one decides the next request.
func (m *Mesh) Authorizer(service string) *router.Authorizer {
	var rs *router.Rules
	if st := m.eng.Load(); st != nil && st.Table() != nil {
		rs = st.Table().Rules()
	}
	return rs.Authorizer(service)
}

// WithIdentity gives the mesh a workload identity (identity.NewFileSource
// or workload.NewSource of package identity/workload): calls from Transport to a service whose
// rules set serverID use mutual TLS, presenting src's current SVID and
// accepting only a server with that SPIFFE ID. Those calls go through a
// clone of Transport's base with its own dialer and no proxy; when base
// is not an *http.Transport (a wrapper such as otelhttp's), through a
// clone of http.DefaultTransport, without the wrapper. While a service's
// rules have not arrived (AwaitingRules) calls to it fail with
// ErrNoRules: whether they need mutual TLS is not known yet. A nil src
// is ignored.
func WithIdentity(src identity.Source) Option {
	return optionFunc(func(c *config) {
		if src != nil {
			c.identity = src
		}
	})
}

// Identity returns the workload identity given by WithIdentity, or nil
// when the mesh has none. meshgrpc.DialOptions reads it.
func (m *Mesh) Identity() identity.Source { return m.cfg.identity }

// ErrNoRules is the error of a call to a mesh service from a mesh with
// an identity while the rules of that service have not arrived
// (AwaitingRules): the mesh cannot know whether the service requires
// mutual TLS (serverID), so it sends nothing rather than send it in
// plaintext.
var ErrNoRules = errors.New("mesh: the service's rules have not arrived yet, so whether it requires mutual TLS (serverID) is unknown")

// AwaitingRules reports whether the rules of service have not arrived
// yet: the mesh has a rule source (WithRules, WithRuleCatalog) and no
// document is in force (WithStartEmpty), or, with a catalog, the
// service's own document is watched and its source has not answered for
// it. grpcidentity.RulesCredentials read it, as m.Transport does, to
// refuse a connection whose need for mutual TLS they cannot judge yet.
func (m *Mesh) AwaitingRules(service string) bool {
	if m.cfg.rules == nil && m.cfg.catalog == nil {
		return false
	}
	st := m.eng.Load()
	if st == nil || st.Table() == nil || st.Table().Rules().None() {
		return true
	}
	_, waiting := m.waitingDocs.Load(service)
	return waiting
}

// ErrNoIdentity is the error of a call to a service whose rules require
// mutual TLS (serverID) from a mesh without WithIdentity.
var ErrNoIdentity = errors.New("mesh: the rules require mutual TLS (serverID) but the mesh has no identity (WithIdentity)")

// mtlsFor returns the transport of calls to service when its rules
// require mutual TLS, or nil when they do not. The transport is a clone
// of base whose connections complete the mutual-TLS handshake, verifying
// the server's SPIFFE ID, before the first request byte is written.
func (t *transport) mtlsFor(st *engine.State, service string) http.RoundTripper {
	want, ok := st.Table().Rules().ServerID(service)
	if !ok {
		if t.m.cfg.identity != nil && t.m.AwaitingRules(service) {
			return failing{fmt.Errorf("%w: calling %s", ErrNoRules, service)}
		}
		return nil
	}
	src := t.m.cfg.identity
	if src == nil {
		return failing{fmt.Errorf("%w: calling %s", ErrNoIdentity, service)}
	}
	if cached, ok := t.mtls.Load(service); ok {
		if c := cached.(*mtlsTransport); c.id == want {
			return c.rt
		}
	}
	ht, ok := t.base.(*http.Transport)
	if !ok {
		ht = http.DefaultTransport.(*http.Transport)
	}
	clone := ht.Clone()
	cfg := identity.ClientTLSConfig(src, want)
	dial := clone.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	handshake := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		// net/http applies TLSHandshakeTimeout only to handshakes it
		// makes itself; this one it does not see.
		if d := clone.TLSHandshakeTimeout; d > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("mesh: mutual TLS with %s at %s: %w", service, addr, err)
		}
		return tc, nil
	}
	// http:// and https:// URLs alike: the connection is TLS either way.
	clone.DialContext, clone.DialTLSContext = handshake, handshake
	clone.ForceAttemptHTTP2 = false
	// The handshake is with the instance picked, end to end: through a
	// proxy (base's, or HTTP_PROXY via http.DefaultTransport) the dial
	// would reach the proxy and the handshake fail with it.
	clone.Proxy = nil
	next := &mtlsTransport{id: want, rt: clone}
	for {
		old, loaded := t.mtls.LoadOrStore(service, next)
		if !loaded {
			return clone
		}
		prev := old.(*mtlsTransport)
		if prev.id == want { // made meanwhile by another call
			return prev.rt
		}
		if t.mtls.CompareAndSwap(service, old, next) {
			// The service's serverID changed: the connections verified
			// for the earlier one will not be used again.
			prev.rt.CloseIdleConnections()
			return clone
		}
	}
}

// mtlsTransport is the mutual-TLS transport of one service, made for the
// server ID its rules required then; a call finds it by service alone and
// compares the ID, so it builds no key and formats no ID.
type mtlsTransport struct {
	id spiffeid.ID
	rt *http.Transport
}

// CloseIdleConnections closes the idle connections of base and of the
// transports cloned from it (logical-name TLS and mutual TLS), for
// http.Client.CloseIdleConnections.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	t.tls.Range(func(_, v any) bool {
		v.(*http.Transport).CloseIdleConnections()
		return true
	})
	t.mtls.Range(func(_, v any) bool {
		v.(*mtlsTransport).rt.CloseIdleConnections()
		return true
	})
}

// failing is a RoundTripper that fails every request with err.
type failing struct{ err error }

func (f failing) RoundTrip(req *http.Request) (*http.Response, error) {
	closeBody(req)
	return nil, f.err
}

// ServerID returns the SPIFFE ID the servers of service must present
// under the rules in force (its serverID), and false when calls to it
// need no mutual TLS. grpcidentity.RulesCredentials reads it at every
// handshake.
func (m *Mesh) ServerID(service string) (spiffeid.ID, bool) {
	st := m.eng.Load()
	if st == nil || st.Table() == nil {
		return spiffeid.ID{}, false
	}
	return st.Table().Rules().ServerID(service)
}
