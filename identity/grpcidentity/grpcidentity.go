// Package grpcidentity is the gRPC side of package identity: transport
// credentials for mutual TLS with SPIFFE IDs (strict or permissive on the
// server, verifying the server's ID on the client) and server
// interceptors that put the caller's SPIFFE ID in the context and enforce
// an identity.Guard with PermissionDenied.
package grpcidentity

import (
	"bufio"
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/identity"
)

// ServerCredentials returns the transport credentials of a gRPC server
// presenting src's current SVID. In identity.Strict mode every caller
// must present a certificate of the trust domain; in identity.Permissive
// mode a connection that does not start with a TLS handshake is served in
// plaintext on the same port. The certificate is read from src at every
// handshake, so rotation needs no restart.
func ServerCredentials(src identity.Source, mode identity.Mode) credentials.TransportCredentials {
	tc := credentials.NewTLS(identity.ServerTLSConfig(src))
	if mode == identity.Strict {
		return tc
	}
	return &permissive{TransportCredentials: tc}
}

// ClientCredentials returns the transport credentials of a gRPC client
// presenting src's current SVID and accepting only a server with the
// SPIFFE ID want; another ID fails the handshake with an error naming
// both IDs (*identity.MismatchError), before any request is sent.
func ClientCredentials(src identity.Source, want spiffeid.ID) credentials.TransportCredentials {
	return credentials.NewTLS(identity.ClientTLSConfig(src, want))
}

// ServerIDs give the SPIFFE ID the servers of a service must present, and
// false when calls to it need no mutual TLS. *mesh.Mesh is one: the
// serverID of the service in the rules in force. When they also have an
// AwaitingRules(service string) bool method (*mesh.Mesh does) that
// reports true, no connection is made: whether it needs mutual TLS is not
// known yet.
type ServerIDs interface {
	ServerID(service string) (spiffeid.ID, bool)
}

// RulesCredentials returns client transport credentials that decide at
// each handshake, by the service the connection is for (the authority:
// "user-api" for the target lightmesh:///user-api): when ids gives the
// service a server ID, mutual TLS presenting src's current SVID and
// accepting only that ID (another fails the handshake, naming both);
// otherwise plaintext. A nil src fails the handshakes that need mutual
// TLS with an error saying so, as m.Transport fails with
// mesh.ErrNoIdentity. Pass them beside meshgrpc.DialOptions.
func RulesCredentials(src identity.Source, ids ServerIDs) credentials.TransportCredentials {
	return newByRules(src, ids)
}

// RulesDialOptions are the dial options meshgrpc.DialOptions adds for a
// mesh with an identity: RulesCredentials(src, ids) as the client's
// transport credentials, and a per-call check that refuses, with
// Unauthenticated and before any request byte, a call to a service whose
// rules set serverID on a connection those credentials did not make and
// that is not mutual TLS with that ID: the connection of other transport
// credentials given after them (grpc-go keeps the last given). The check
// names the ID the rules require and what the connection is.
func RulesDialOptions(src identity.Source, ids ServerIDs) []grpc.DialOption {
	b := newByRules(src, ids)
	return []grpc.DialOption{grpc.WithTransportCredentials(b), grpc.WithPerRPCCredentials(rulesCheck{b})}
}

func newByRules(src identity.Source, ids ServerIDs) *byRules {
	return &byRules{src: src, ids: ids, conns: new(sync.Map)}
}

// awaitingRules is implemented by ServerIDs that wait for their rules
// (*mesh.Mesh before its first document): while they do, no connection
// is made, since no one knows whether it needs mutual TLS.
type awaitingRules interface{ AwaitingRules(service string) bool }

type byRules struct {
	src identity.Source
	ids ServerIDs
	// conns holds the mutual-TLS connections these credentials (and
	// their clones) made and have not closed, by the server's leaf
	// certificate: how rulesCheck knows a TLS connection for ruledConn
	// to judge after a rule change.
	conns *sync.Map // *x509.Certificate → *ruledConn
}

// serviceKey is the resolver.Address attribute that names the service an
// address is an instance of (WithService).
type serviceKey struct{}

// WithService returns addr marked as an instance of service: for a
// connection to it, RulesCredentials check the serverID of service,
// whatever :authority the client sets (grpc.WithAuthority). The lightmesh
// resolver of meshgrpc marks every address it gives.
func WithService(addr resolver.Address, service string) resolver.Address {
	addr.Attributes = addr.Attributes.WithValue(serviceKey{}, service)
	return addr
}

func (b *byRules) ClientHandshake(ctx context.Context, authority string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	service := authority
	if host, _, err := net.SplitHostPort(authority); err == nil {
		service = host
	}
	if a := credentials.ClientHandshakeInfoFromContext(ctx).Attributes; a != nil {
		if s, ok := a.Value(serviceKey{}).(string); ok && s != "" {
			service = s // the service dialled, not a :authority the caller chose
		}
	}
	if k, ok := b.ids.(awaitingRules); ok && k.AwaitingRules(service) {
		return nil, nil, fmt.Errorf("grpcidentity: the rules of %s have not arrived yet, so whether it requires mutual TLS (serverID) is unknown; nothing is sent until they do", service)
	}
	want, ok := b.ids.ServerID(service)
	if !ok {
		return &ruledConn{Conn: c, ids: b.ids, service: service}, plaintextInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
	}
	if b.src == nil {
		return nil, nil, fmt.Errorf("grpcidentity: the rules require mutual TLS with %s for %s but there is no identity (RulesCredentials got a nil source)", want, service)
	}
	tc, info, err := credentials.NewTLS(identity.ClientTLSConfig(b.src, want)).ClientHandshake(ctx, authority, c)
	if err != nil {
		return nil, nil, err
	}
	rc := &ruledConn{Conn: tc, ids: b.ids, service: service, want: want}
	if ti, ok := info.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
		rc.conns, rc.leaf = b.conns, ti.State.PeerCertificates[0]
		b.conns.Store(rc.leaf, rc)
	}
	return rc, info, nil
}

// ruledConn is a client connection made under the serverID the rules
// gave its service (want; zero for plaintext). gRPC keeps connections
// across rule changes, so before each write it checks the rules still
// give that ID: when they now require another (or mutual TLS where it
// was plaintext), it closes itself and writes nothing, and gRPC dials
// again under the rules in force.
type ruledConn struct {
	net.Conn
	ids     ServerIDs
	service string
	want    spiffeid.ID
	// conns and leaf: where the connection is registered (mutual TLS
	// only), until Close.
	conns *sync.Map
	leaf  *x509.Certificate
}

func (c *ruledConn) Close() error {
	if c.conns != nil {
		c.conns.Delete(c.leaf)
	}
	return c.Conn.Close()
}

func (c *ruledConn) Write(p []byte) (int, error) {
	if want, ok := c.ids.ServerID(c.service); ok && want != c.want {
		c.Close()
		was := "plaintext"
		if !c.want.IsZero() {
			was = "server ID " + c.want.String()
		}
		return 0, fmt.Errorf("grpcidentity: the rules now require server ID %s for %s; closed the connection made for %s", want, c.service, was)
	}
	return c.Conn.Write(p)
}

func (b *byRules) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, fmt.Errorf("grpcidentity: RulesCredentials are for clients; serve with ServerCredentials")
}

func (b *byRules) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (b *byRules) Clone() credentials.TransportCredentials {
	return &byRules{src: b.src, ids: b.ids, conns: b.conns}
}

// rulesCheck is the per-call check of RulesDialOptions. grpc-go asks it
// for the call's metadata after picking the connection and before
// writing anything of the call.
type rulesCheck struct{ b *byRules }

func (r rulesCheck) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	switch ai := ri.AuthInfo.(type) {
	case plaintextInfo:
		// Made by RulesCredentials: ruledConn judges it against the rules in force.
		return nil, nil
	case credentials.TLSInfo:
		if len(ai.State.PeerCertificates) > 0 {
			if _, ours := r.b.conns.Load(ai.State.PeerCertificates[0]); ours {
				return nil, nil
			}
		}
	}
	if len(uri) == 0 {
		return nil, nil
	}
	// The audience is "https://" + authority + "/" + service of the
	// method; the authority is the mesh service (lightmesh:///user-api).
	service, _, _ := strings.Cut(strings.TrimPrefix(uri[0], "https://"), "/")
	if host, _, err := net.SplitHostPort(service); err == nil {
		service = host
	}
	want, ok := r.b.ids.ServerID(service)
	if !ok {
		return nil, nil
	}
	got := "a plaintext connection"
	if ti, ok := ri.AuthInfo.(credentials.TLSInfo); ok {
		if id, err := identity.IDFromChains(ti.State.PeerCertificates); err == nil {
			if id == want {
				return nil, nil
			}
			got = "a TLS connection to " + id.String()
		} else {
			got = "a TLS connection without a SPIFFE ID"
		}
	}
	return nil, status.Errorf(codes.Unauthenticated,
		"grpcidentity: the rules require mutual TLS with server ID %s for %s, but the call was to go over %s made by other transport credentials (grpc.WithTransportCredentials given after meshgrpc.DialOptions replaces the mesh's: drop it)",
		want, service, got)
}

// RequireTransportSecurity is false: calls to services without serverID
// go in plaintext; the check above refuses the others.
func (rulesCheck) RequireTransportSecurity() bool { return false }

// OverrideServerName is deprecated in grpc-go and has no effect here.
func (b *byRules) OverrideServerName(string) error { return nil }

type permissive struct {
	credentials.TransportCredentials
}

// plaintextInfo is the AuthInfo of a plaintext connection accepted in
// permissive mode.
type plaintextInfo struct {
	credentials.CommonAuthInfo
}

func (plaintextInfo) AuthType() string { return "insecure" }

// ServerHandshake sniffs the first byte under the deadline grpc-go has
// set on c for the whole handshake (grpc.ConnectionTimeout) and leaves
// that deadline alone: lifting it would let a client that sends one byte
// and goes silent hold the connection forever.
func (p *permissive) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	br := bufio.NewReader(c)
	b, err := br.Peek(1)
	if err != nil {
		return nil, nil, fmt.Errorf("grpcidentity: reading the first byte: %w", err)
	}
	pc := identity.PeekedConn(c, br)
	if b[0] == 0x16 {
		return p.TransportCredentials.ServerHandshake(pc)
	}
	return pc, plaintextInfo{credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}, nil
}

func (p *permissive) Clone() credentials.TransportCredentials {
	return &permissive{TransportCredentials: p.TransportCredentials.Clone()}
}

// callerID reads the verified peer certificate of the call in ctx.
func callerID(ctx context.Context) (spiffeid.ID, bool) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, false
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, false
	}
	id, err := identity.IDFromChains(ti.State.PeerCertificates)
	return id, err == nil
}

func check(ctx context.Context, g *identity.Guard, method string) (context.Context, error) {
	id, ok := callerID(ctx)
	caller := ""
	if ok {
		caller = id.String()
		ctx = identity.WithCallerID(ctx, id)
	}
	if g == nil {
		return ctx, nil
	}
	if d := g.Decide(caller, "POST", method); !d.Allowed {
		code := codes.PermissionDenied
		if d.Unknown {
			code = codes.Unavailable
		}
		return ctx, status.Error(code, g.RefusalMessage(d, caller, "", method))
	}
	return ctx, nil
}

// UnaryServerInterceptor puts the caller's SPIFFE ID in the context
// (identity.CallerID) and refuses calls g denies with PermissionDenied
// and the reason, or Unavailable when the policy of g's service is not
// known (router.Verdict.Unknown). A nil g only sets the ID.
func UnaryServerInterceptor(g *identity.Guard) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		ctx, err := check(ctx, g, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor(g *identity.Guard) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		ctx, err := check(ss.Context(), g, info.FullMethod)
		if err != nil {
			return err
		}
		return h(srv, &stream{ServerStream: ss, ctx: ctx})
	}
}

type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }
