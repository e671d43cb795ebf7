package identity

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Mode says whether a server also accepts callers without TLS.
type Mode int

const (
	// Strict accepts only mutual TLS with a certificate from the trust
	// domain; a caller without a certificate is refused at the handshake.
	Strict Mode = iota
	// Permissive accepts mutual TLS and plaintext on the same port (as
	// Istio's PERMISSIVE), for the migration of callers one at a time. A
	// plaintext caller has no SPIFFE ID; authorization rules decide
	// whether it may call.
	Permissive
)

// String returns "strict" or "permissive".
func (m Mode) String() string {
	if m == Permissive {
		return "permissive"
	}
	return "strict"
}

// ServerTLSConfig returns the tls.Config of a mutual-TLS server: it
// presents the source's current SVID and requires a client certificate
// that chains to a trust bundle of the source (a FileSource has its own
// trust domain's only; a Workload API source also the federated ones).
// Any SPIFFE ID of those trust domains is accepted at the handshake;
// who may call what is the business of an Authorizer. The config reads
// the source at every handshake, so it stays current through rotation;
// sessions are not resumed, so every connection is verified against the
// bundle in force.
func ServerTLSConfig(src Source) *tls.Config {
	c := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeAny())
	c.NextProtos = []string{"h2", "http/1.1"}
	// A resumed session carries the client certificate of its first
	// handshake without verifying it again (VerifyPeerCertificate does not
	// run), so a caller could outlive the CA the bundle dropped. Every
	// connection verifies against the bundle in force; keep-alive
	// amortises the handshakes.
	c.SessionTicketsDisabled = true
	return c
}

// MismatchError is the error of a client handshake whose server presented
// a SPIFFE ID other than the one expected. No request byte has been sent.
type MismatchError struct {
	Want, Got spiffeid.ID
}

// Error names both IDs.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("identity: server presented %s, expected %s", e.Got, e.Want)
}

// ClientTLSConfig returns the tls.Config of a mutual-TLS client that
// presents the source's current SVID and accepts only a server whose
// certificate chains to the trust bundle and carries the SPIFFE ID want.
// A server with another ID fails the handshake, before any request byte,
// with a *MismatchError naming both IDs.
func ClientTLSConfig(src Source, want spiffeid.ID) *tls.Config {
	return tlsconfig.MTLSClientConfig(src, src, func(got spiffeid.ID, _ [][]*x509.Certificate) error {
		if got != want {
			return &MismatchError{Want: want, Got: got}
		}
		return nil
	})
}

// Listen wraps ln so that connections speak mutual TLS with cfg (usually
// ServerTLSConfig). In Permissive mode a connection whose first byte is
// not a TLS handshake is passed on as plaintext. Serve an *http.Server
// with the result (not ServeTLS): net/http fills r.TLS for the TLS
// connections, and CallerID reads it.
func Listen(ln net.Listener, cfg *tls.Config, mode Mode) net.Listener {
	if mode == Strict {
		return tls.NewListener(ln, cfg)
	}
	l := &sniffListener{Listener: ln, cfg: cfg, conns: make(chan net.Conn), closed: make(chan struct{}), pending: map[net.Conn]struct{}{}}
	go l.accept()
	return l
}

// sniffTimeout bounds how long a new connection may stay silent before
// its first byte decides between TLS and plaintext.
const sniffTimeout = 10 * time.Second

type sniffListener struct {
	net.Listener
	cfg    *tls.Config
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	err    error

	mu      sync.Mutex
	pending map[net.Conn]struct{} // accepted, first byte not read yet; nil once closed
}

// track records c as being sniffed; false when the listener is closed.
func (l *sniffListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		return false
	}
	l.pending[c] = struct{}{}
	return true
}

func (l *sniffListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
}

func (l *sniffListener) accept() {
	var wait time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.closeWith(err)
				return
			}
			// Out of file descriptors and the like: wait and try again,
			// as net/http's Serve does.
			wait = min(max(2*wait, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(wait):
				continue
			case <-l.closed:
				return
			}
		}
		wait = 0
		// Sniff off the accept loop: a silent client must not hold up
		// the others. Close closes the connections still being sniffed.
		if !l.track(c) {
			c.Close()
			return
		}
		go func() {
			c.SetReadDeadline(time.Now().Add(sniffTimeout))
			br := bufio.NewReader(c)
			b, err := br.Peek(1)
			c.SetReadDeadline(time.Time{})
			l.untrack(c)
			if err != nil {
				c.Close()
				return
			}
			var out net.Conn = &peekedConn{Conn: c, r: br}
			if b[0] == 0x16 { // TLS record type handshake
				out = tls.Server(out, l.cfg)
			}
			select {
			case l.conns <- out:
			case <-l.closed:
				c.Close()
			}
		}()
	}
}

func (l *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

func (l *sniffListener) Close() error { return l.closeWith(nil) }

// closeWith closes the listener once; cause, if not nil, is what Accept
// returns from then on.
func (l *sniffListener) closeWith(cause error) error {
	var err error
	l.once.Do(func() {
		l.err = cause
		close(l.closed)
		err = l.Listener.Close()
		l.mu.Lock()
		for c := range l.pending {
			c.Close()
		}
		l.pending = nil
		l.mu.Unlock()
	})
	return err
}

// peekedConn is a connection whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// PeekedConn returns a connection that replays the bytes br has buffered
// from c before reading c again. The gRPC credentials use it after
// sniffing the first byte.
func PeekedConn(c net.Conn, br *bufio.Reader) net.Conn { return &peekedConn{Conn: c, r: br} }

type callerKey struct{}

// WithCallerID returns ctx carrying the caller's SPIFFE ID. Server
// adapters call it; handlers read it with CallerID.
func WithCallerID(ctx context.Context, id spiffeid.ID) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// CallerID returns the SPIFFE ID of the caller of the request whose
// context ctx is, as set by ConnContext, Guard.Handler or the
// grpcidentity interceptors; ok is false for a caller without a
// certificate (plaintext in Permissive mode).
func CallerID(ctx context.Context) (id spiffeid.ID, ok bool) {
	if id, ok = ctx.Value(callerKey{}).(spiffeid.ID); ok {
		return id, true
	}
	if ci, _ := ctx.Value(connKey{}).(*connIdentity); ci != nil {
		return ci.get()
	}
	return spiffeid.ID{}, false
}

type connKey struct{}

// connIdentity is the caller of one TLS connection, read from its
// verified certificate once, at the first request that asks.
type connIdentity struct {
	conn *tls.Conn
	once sync.Once
	id   spiffeid.ID
	ok   bool
}

func (ci *connIdentity) get() (spiffeid.ID, bool) {
	ci.once.Do(func() {
		// Requests are served after the handshake, so the state is final.
		st := ci.conn.ConnectionState()
		if id, err := IDFromChains(st.PeerCertificates); err == nil {
			ci.id, ci.ok = id, true
		}
	})
	return ci.id, ci.ok
}

// ConnContext is for http.Server.ConnContext: it lets CallerID and
// Guard.Handler read the caller's SPIFFE ID once per connection instead
// of parsing the certificate and copying the request at every request,
// so that an allowed request costs no allocation.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, connKey{}, &connIdentity{conn: tc})
}

// RequestCallerID returns the SPIFFE ID in the verified client
// certificate of r, if any.
func RequestCallerID(r *http.Request) (spiffeid.ID, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return spiffeid.ID{}, false
	}
	id, err := IDFromChains(r.TLS.PeerCertificates)
	return id, err == nil
}
