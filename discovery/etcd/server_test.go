package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
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

// testEtcd is a real etcd server embedded in the test process, listening
// on free loopback ports with its data in a temporary directory. stop and
// start restart it on the same directory and ports.
type testEtcd struct {
	tb                 testing.TB
	dir                string
	clientURL, peerURL url.URL

	mu sync.Mutex
	e  *embed.Etcd
}

// startEtcd starts a server for the test and stops it at cleanup.
func startEtcd(tb testing.TB) *testEtcd {
	tb.Helper()
	s := newEtcd(tb, tb.TempDir())
	if err := s.start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.stop)
	return s
}

// newEtcd prepares a server with its data in dir; the caller starts and
// stops it.
func newEtcd(tb testing.TB, dir string) *testEtcd {
	tb.Helper()
	return &testEtcd{
		tb:        tb,
		dir:       dir,
		clientURL: url.URL{Scheme: "http", Host: freeAddr(tb)},
		peerURL:   url.URL{Scheme: "http", Host: freeAddr(tb)},
	}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start starts (or restarts) the server and waits until it serves.
func (s *testEtcd) start() error {
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

// stop stops the server; start brings it back with the same data.
func (s *testEtcd) stop() {
	s.mu.Lock()
	e := s.e
	s.e = nil
	s.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

func (s *testEtcd) endpoint() string { return s.clientURL.Host }

// client returns a client of the server (or of addr when given, such as a
// proxy in front of it), closed at cleanup. It reconnects within ~0.5 s.
func (s *testEtcd) client(tb testing.TB, addr ...string) *clientv3.Client {
	tb.Helper()
	ep := s.endpoint()
	if len(addr) > 0 {
		ep = addr[0]
	}
	cli, err := newClient(ep)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}

func newClient(endpoint string) (*clientv3.Client, error) {
	bc := grpcbackoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = 50*time.Millisecond, 500*time.Millisecond
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: time.Second})},
	})
}

// put writes key=value and returns the revision it made.
func put(tb testing.TB, cli *clientv3.Client, key, value string, opts ...clientv3.OpOption) int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Put(ctx, key, value, opts...)
	if err != nil {
		tb.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

func del(tb testing.TB, cli *clientv3.Client, key string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, key); err != nil {
		tb.Fatalf("delete %s: %v", key, err)
	}
}

// tcpProxy forwards loopback TCP connections to target. cut drops every
// connection and refuses new ones until heal: a network partition between
// a client and a server that keeps running.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cutOff bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(tb testing.TB, target string) *tcpProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	tb.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cutOff {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.cutOff {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *tcpProxy) heal() {
	p.mu.Lock()
	p.cutOff = false
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}
