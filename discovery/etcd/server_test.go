package etcd

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

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
// a client and a server that keeps running. blackhole is the nastier
// partition: connections stay open but nothing crosses them any more, in
// either direction, and new ones are accepted and go nowhere; after heal
// new connections work again while the blackholed ones stay dead until
// a side closes them (as after a NAT or firewall dropped their state).
type tcpProxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	cutOff   bool
	dropNew  bool                      // blackholed: new connections forward nothing
	conns    map[net.Conn]*atomic.Bool // each connection's "forward nothing" flag
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func startProxy(tb testing.TB, target string) *tcpProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]*atomic.Bool{}}
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
		p.accepted.Add(1)
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
		dead := new(atomic.Bool)
		dead.Store(p.dropNew)
		p.conns[c], p.conns[up] = dead, dead
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up, dead)
		go p.pipe(up, c, dead)
	}
}

// pipe copies src to dst, dropping what it reads once dead is set.
func (p *tcpProxy) pipe(dst, src net.Conn, dead *atomic.Bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
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

// blackhole makes every connection, open or new, forward nothing until
// heal; the open ones stay dead after it.
func (p *tcpProxy) blackhole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropNew = true
	for _, dead := range p.conns {
		dead.Store(true)
	}
}

func (p *tcpProxy) heal() {
	p.mu.Lock()
	p.cutOff, p.dropNew = false, false
	p.mu.Unlock()
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.cut()
	p.wg.Wait()
}
