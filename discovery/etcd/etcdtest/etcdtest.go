// Package etcdtest runs a real etcd server embedded in the process, on
// free loopback ports with its data in a directory of its own, for tests
// of code that talks to etcd (as net/http/httptest does for HTTP). It is
// a one-member cluster tuned to start in well under a second: fast
// elections, no fsync.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
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
	cfg.Dir = s.dir
	cfg.ListenClientUrls = []url.URL{s.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{s.clientURL}
	cfg.ListenPeerUrls = []url.URL{s.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{s.peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.Logger = "zap"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// Fast elections and a short minimum lease TTL (1.5 election ticks):
	// a one-member cluster has no peers to wait for.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	cfg.UnsafeNoFsync = true
	cfg.EnableGRPCGateway = false
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

// Endpoint returns the client address, host:port.
func (s *Server) Endpoint() string { return s.clientURL.Host }

// Client returns a client of the server (or of addr when given, such as a
// proxy in front of it), closed when tb ends. It reconnects within ~0.5 s.
func (s *Server) Client(tb testing.TB, addr ...string) *clientv3.Client {
	tb.Helper()
	ep := s.Endpoint()
	if len(addr) > 0 {
		ep = addr[0]
	}
	cli, err := NewClient(ep)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

// NewClient returns a client of endpoint that reconnects within ~0.5 s and
// logs nothing.
func NewClient(endpoint string) (*clientv3.Client, error) {
	bc := grpcbackoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: time.Second})},
	})
}
