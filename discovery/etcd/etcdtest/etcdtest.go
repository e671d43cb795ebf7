// Package etcdtest runs a real etcd server embedded in the process, on
// free loopback ports with its data in a directory of its own, for tests
// of code that talks to etcd (as net/http/httptest does for HTTP). It is
// a one-member cluster tuned to start in well under a second: fast
// elections, no fsync, the cheapest password hashing.
//
// StartTLS starts one that serves clients over TLS only, with a CA and
// certificates generated for it; EnableAuth turns on etcd's
// authentication with a root user.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
)

// Server is an embedded etcd server. Stop and Start restart it on the same
// data and ports.
type Server struct {
	dir                string
	clientURL, peerURL url.URL
	name               string    // the member's name; "" is "lightmesh-test"
	cluster            string    // the initial cluster; "" for a one-member cluster
	tls                *TLSFiles // nil for a plain server
	tlsOpts            TLSOptions

	mu sync.Mutex
	e  *embed.Etcd
}

// Start starts a server with its data in a temporary directory of tb and
// stops it when tb ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := New(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// New prepares a server with its data in dir, on two free loopback ports;
// the caller starts and stops it.
func New(dir string) (*Server, error) {
	client, err := freeAddr()
	if err != nil {
		return nil, err
	}
	peer, err := freeAddr()
	if err != nil {
		return nil, err
	}
	return &Server{dir: dir, clientURL: url.URL{Scheme: "http", Host: client}, peerURL: url.URL{Scheme: "http", Host: peer}}, nil
}

// TLSOptions configures the TLS of a server from StartTLS or NewTLS.
type TLSOptions struct {
	// ClientCertAuth makes the server accept only clients presenting a
	// certificate signed by its CA (TLSFiles.ClientCertFile is one).
	ClientCertAuth bool
}

// StartTLS is Start for a server that serves clients over TLS only
// (https://, never plaintext), with a CA and certificates generated for
// it in a temporary directory of tb: see TLSFiles.
func StartTLS(tb testing.TB, opts TLSOptions) *Server {
	tb.Helper()
	s, err := NewTLS(tb.TempDir(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// NewTLS is New for a server that serves clients over TLS only. It
// generates a CA, a server certificate for 127.0.0.1 and localhost and a
// client certificate, all signed by the CA, as PEM files under dir/tls;
// the data goes to dir/data.
func NewTLS(dir string, opts TLSOptions) (*Server, error) {
	files, err := generateTLS(filepath.Join(dir, "tls"))
	if err != nil {
		return nil, fmt.Errorf("etcdtest: generate certificates: %w", err)
	}
	s, err := New(filepath.Join(dir, "data"))
	if err != nil {
		return nil, err
	}
	s.clientURL.Scheme = "https"
	s.tls, s.tlsOpts = files, opts
	return s, nil
}

// TLS returns the server's CA and certificate files, or nil for a server
// without TLS.
func (s *Server) TLS() *TLSFiles {
	if s.tls == nil {
		return nil
	}
	f := *s.tls
	return &f
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// Start starts (or restarts) the server and waits until it serves.
func (s *Server) Start() error {
	cfg := embed.NewConfig()
	cfg.Name = "lightmesh-test"
	if s.name != "" {
		cfg.Name = s.name
	}
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	if s.cluster != "" {
		cfg.InitialCluster = s.cluster
	}
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Fast elections and a short minimum lease TTL (1.5 election ticks):
	// a one-member cluster has no peers to wait for.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	if s.cluster != "" {
		// Members of a cluster hear each other's heartbeats through the
		// race detector's slowdown: longer, to spare needless elections.
		cfg.TickMs, cfg.ElectionMs = 50, 1000
	}
	cfg.UnsafeNoFsync = true
	// The cheapest password hashing: every login of EnableAuth's users
	// costs a bcrypt comparison, slow under the race detector.
	cfg.BcryptCost = 4
	cfg.EnableGRPCGateway = false
	if s.tls != nil {
		cfg.ClientTLSInfo.CertFile = s.tls.CertFile
		cfg.ClientTLSInfo.KeyFile = s.tls.KeyFile
		if s.tlsOpts.ClientCertAuth {
			cfg.ClientTLSInfo.TrustedCAFile = s.tls.CAFile
			cfg.ClientTLSInfo.ClientCertAuth = true
		}
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start embedded etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		e.Close()
		return errors.New("embedded etcd not ready after 20s")
	}
	s.mu.Lock()
	s.e = e
	s.mu.Unlock()
	return nil
}

// Stop stops the server; Start brings it back with the same data.
func (s *Server) Stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// StartCluster starts a cluster of n members, each with its data in a
// temporary directory of tb, and stops them when tb ends. Each member
// can be stopped and started again on its own; the cluster serves while
// a majority runs.
func StartCluster(tb testing.TB, n int) []*Server {
	tb.Helper()
	members := make([]*Server, n)
	var initial []string
	for i := range members {
		s, err := New(tb.TempDir())
		if err != nil {
			tb.Fatal(err)
		}
		s.name = fmt.Sprintf("member-%d", i)
		members[i] = s
		initial = append(initial, s.name+"="+s.peerURL.String())
	}
	// Each member waits for a quorum before it is ready: start them
	// together.
	errs := make(chan error, n)
	for _, s := range members {
		s.cluster = strings.Join(initial, ",")
		go func() { errs <- s.Start() }()
	}
	for range members {
		if err := <-errs; err != nil {
			tb.Fatal(err)
		}
	}
	for _, s := range members {
		tb.Cleanup(s.Stop)
	}
	return members
}

// Endpoints returns the client addresses of members.
func Endpoints(members []*Server) []string {
	out := make([]string, len(members))
	for i, s := range members {
		out[i] = s.Endpoint()
	}
	return out
}

// Endpoint returns the client address, host:port.
func (s *Server) Endpoint() string { return s.clientURL.Host }

// Client returns a client of the server (or of addr when given, such as a
// proxy in front of it), closed when tb ends. It reconnects within ~0.5 s.
// For a TLS server it trusts the server's CA and, when the server
// requires one, presents the client certificate. It carries no
// credentials: after EnableAuth its requests are refused.
func (s *Server) Client(tb testing.TB, addr ...string) *clientv3.Client {
	tb.Helper()
	cfg, err := s.ClientConfig(addr...)
	if err != nil {
		tb.Fatal(err)
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// ClientConfig returns the configuration Client uses for the server (or
// for addr when given), for callers that add credentials or change it
// before calling clientv3.New: NewClientConfig's, plus TLS for a TLS
// server.
func (s *Server) ClientConfig(addr ...string) (clientv3.Config, error) {
	ep := s.Endpoint()
	if len(addr) > 0 {
		ep = addr[0]
	}
	cfg := NewClientConfig(ep)
	if s.tls != nil {
		tc, err := s.tls.ClientTLS(s.tlsOpts.ClientCertAuth)
		if err != nil {
			return cfg, err
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

// NewClient returns a client of endpoint that reconnects within ~0.5 s and
// logs nothing.
func NewClient(endpoint string) (*clientv3.Client, error) {
	return clientv3.New(NewClientConfig(endpoint))
}

// NewClientConfig returns the configuration NewClient uses: endpoint
// only, a 5 s dial timeout, reconnection within ~0.5 s, no logging, no
// TLS and no credentials.
func NewClientConfig(endpoint string) clientv3.Config {
	bc := grpcbackoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	return clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: time.Second})},
	}
}

// RootUser is the user EnableAuth creates.
const RootUser = "root"

// EnableAuth creates the user RootUser with password and the root role,
// turns authentication on, and returns a client logged in as RootUser,
// closed when tb ends. From then on the server refuses requests without
// valid credentials, those of clients created before included; the
// setting is stored, so it survives Stop and Start.
func (s *Server) EnableAuth(tb testing.TB, password string) *clientv3.Client {
	tb.Helper()
	admin := s.Client(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := admin.UserAdd(ctx, RootUser, password); err != nil {
		tb.Fatalf("etcdtest: add user %s: %v", RootUser, err)
	}
	if _, err := admin.UserGrantRole(ctx, RootUser, "root"); err != nil {
		tb.Fatalf("etcdtest: grant the root role: %v", err)
	}
	if _, err := admin.AuthEnable(ctx); err != nil {
		tb.Fatalf("etcdtest: enable auth: %v", err)
	}
	cfg, err := s.ClientConfig()
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Username, cfg.Password = RootUser, password
	cli, err := clientv3.New(cfg)
	if err != nil {
		tb.Fatalf("etcdtest: log in as %s: %v", RootUser, err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}
