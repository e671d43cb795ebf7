package nacos

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// relay forwards a local port pair (HTTP and HTTP + 1000, the gRPC
// port) to a Nacos server's. It can cut every connection and refuse new
// ones until restored (the server gone), and hold back what the server
// sends while the connections stay open and the client's requests still
// reach the server (a server slow to answer: a GC pause, a loaded node),
// until released; what the server sends can also be delayed throughout
// (a remote server).
type relay struct {
	addr  string
	delay time.Duration // added to what the server sends; set before the first connection

	mu   sync.Mutex
	cond *sync.Cond // signalled when held or down changes
	down bool       // cut: connections closed, new ones refused
	held bool       // what the server sends waits
	// heldLogins holds back what the server sends on the HTTP port to
	// the SDK (its logins), but not on the gRPC port, nor to the
	// adapter's own login check (its User-Agent names lightmesh).
	heldLogins bool
	checks     atomic.Int32 // HTTP connections of the adapter's login check
	grpcPort   net.Listener // the gRPC port's listener (closeGRPCPort)
	conn       map[net.Conn]struct{}
}

func startRelay(tb testing.TB, target string) *relay {
	tb.Helper()
	host, p, err := net.SplitHostPort(target)
	if err != nil {
		host, p = target, strconv.Itoa(DefaultPort)
	}
	tport, _ := strconv.Atoi(p)
	r := &relay{conn: map[net.Conn]struct{}{}}
	r.cond = sync.NewCond(&r.mu)
	var lns []net.Listener
	for try := 0; try < 50 && lns == nil; try++ {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		port := l1.Addr().(*net.TCPAddr).Port
		if port+1000 > 65535 {
			l1.Close()
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1000))
		if err != nil {
			l1.Close()
			continue
		}
		lns = []net.Listener{l1, l2}
		r.grpcPort = l2
		r.addr = fmt.Sprintf("127.0.0.1:%d", port)
	}
	if lns == nil {
		tb.Fatal("no free port pair for the relay")
	}
	var wg sync.WaitGroup
	for i, l := range lns {
		to := net.JoinHostPort(host, strconv.Itoa(tport+1000*i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				in, err := l.Accept()
				if err != nil {
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					r.pipe(in, to, i == 0)
				}()
			}
		}()
	}
	tb.Cleanup(func() {
		for _, l := range lns {
			l.Close()
		}
		r.cut()
		wg.Wait()
	})
	return r
}

func (r *relay) pipe(in net.Conn, to string, http bool) { // http: the HTTP port, not gRPC
	defer in.Close()
	if !r.track(in) {
		return
	}
	defer r.untrack(in)
	out, err := net.DialTimeout("tcp", to, time.Second)
	if err != nil {
		return
	}
	defer out.Close()
	if !r.track(out) {
		return
	}
	defer r.untrack(out)
	sdkLogin := false // an HTTP connection of the SDK's (heldLogins)
	if http {
		first := make([]byte, 32<<10)
		n, err := in.Read(first)
		if err != nil {
			return
		}
		if _, err := out.Write(first[:n]); err != nil {
			return
		}
		sdkLogin = !bytes.Contains(first[:n], []byte("User-Agent: lightmesh"))
		if !sdkLogin {
			r.checks.Add(1)
		}
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(out, in); done <- struct{}{} }() // the client's side: never held
	type chunk struct {
		at time.Time
		b  []byte
	}
	q := make(chan chunk, 4096)
	go func() { // the server's side, read as it comes
		for {
			buf := make([]byte, 32<<10)
			n, err := out.Read(buf)
			if n > 0 {
				q <- chunk{time.Now(), buf[:n]}
			}
			if err != nil {
				break
			}
		}
		close(q)
	}()
	go func() { // and written when its delay is over and it is not held
		for c := range q {
			time.Sleep(time.Until(c.at.Add(r.delay)))
			if !r.pass(sdkLogin) {
				break
			}
			if _, err := in.Write(c.b); err != nil {
				break
			}
		}
		for range q { // until the reader ends
		}
		done <- struct{}{}
	}()
	<-done
	in.Close()
	out.Close()
	<-done
}

// pass waits while what the server sends is held (sdkLogin: on an HTTP
// connection of the SDK's), and reports whether the relay is still up.
func (r *relay) pass(sdkLogin bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for (r.held || sdkLogin && r.heldLogins) && !r.down {
		r.cond.Wait()
	}
	return !r.down
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return false
	}
	r.conn[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conn, c)
}

// cut closes every relayed connection and refuses new ones.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = true
	r.cond.Broadcast()
	for c := range r.conn {
		c.Close()
	}
}

// closeGRPCPort stops listening on the gRPC port for good, as a firewall
// or a Kubernetes Service that opens only the HTTP port does: connections
// to it are refused, those to the HTTP port still relayed.
func (r *relay) closeGRPCPort() {
	r.grpcPort.Close()
}

// restore accepts connections again.
func (r *relay) restore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = false
}

// hold holds back what the server sends, on every connection, until
// release.
func (r *relay) hold() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held = true
}

// release sends what was held back, and what follows.
func (r *relay) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.held, r.heldLogins = false, false
	r.cond.Broadcast()
}

// holdLogins holds back what the server sends to the SDK on its HTTP
// port, where the SDK logs in, until release: the SDK's logins time out
// while its gRPC requests and the adapter's login check are answered.
func (r *relay) holdLogins() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.heldLogins = true
}
