package nacos

// Tests of the diagnosis (diagnosis.go) with more than one node or what
// sits in front of a real cluster: the package's public API (Fetch,
// NewDiscovery, Watch) against the real Nacos of LIGHTMESH_NACOS_ADDR,
// behind small local stand-ins: a node whose HTTP port answers 503
// (starting, or a gateway with no backend), a gateway that quotes the
// request, a firewall that drops SYNs to the gRPC port. Their ports are
// picked in 21000-29999 (+1000).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
)

// portPair listens on 127.0.0.1:p and 127.0.0.1:p+1000 (a Nacos
// server's HTTP and gRPC ports) with listen, which returns the listener
// of one port; p is in 21000-29999.
func portPair(t *testing.T, listen func(port int) (io.Closer, error)) (int, [2]io.Closer) {
	t.Helper()
	for range 200 {
		p := 21000 + rand.IntN(9000)
		a, err := listen(p)
		if err != nil {
			continue
		}
		b, err := listen(p + 1000)
		if err != nil {
			a.Close()
			continue
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		return p, [2]io.Closer{a, b}
	}
	t.Fatal("no free port pair")
	return 0, [2]io.Closer{}
}

func tcpListen(port int) (io.Closer, error) {
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}

// blackhole is a listening socket whose accept queue is full: the kernel
// drops further SYNs, so a dial hangs until its timeout, as through a
// firewall that drops (cloud security groups do).
type blackhole struct {
	fd    int
	held  net.Conn
	close sync.Once
}

func (b *blackhole) Close() error {
	b.close.Do(func() {
		if b.held != nil {
			b.held.Close()
		}
		syscall.Close(b.fd)
	})
	return nil
}

func droppingListener(port int) (io.Closer, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	b := &blackhole{fd: fd}
	// One connection fills the queue of a backlog-0 listener.
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.held = c
	return b, nil
}

// forwardTo relays every connection accepted on l to target.
func forwardTo(t *testing.T, l net.Listener, target string) {
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.DialTimeout("tcp", target, 2*time.Second)
				if err != nil {
					return
				}
				defer out.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(out, in); done <- struct{}{} }()
				go func() { io.Copy(in, out); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}

// grpcOf returns the gRPC address (HTTP port + 1000) of a host:port.
func grpcOf(t *testing.T, addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+1000))
}

// httpNode is a Nacos node whose HTTP port answers every request with
// answer (status, body), and whose gRPC port relays to the real server's:
// a node still starting ("server is DOWN now"), or an HTTP gateway in
// front of the node with no healthy backend for the HTTP port.
func httpNode(t *testing.T, real string, answer func(r *http.Request, body string) (int, string)) string {
	p, ls := portPair(t, tcpListen)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		code, msg := answer(r, string(b))
		w.WriteHeader(code)
		io.WriteString(w, msg)
	})}
	go srv.Serve(ls[0].(net.Listener))
	t.Cleanup(func() { srv.Close() })
	forwardTo(t, ls[1].(net.Listener), grpcOf(t, real))
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// TestLoginCheckAsksTheServerThatAnswers: a cluster of two nodes,
// one of which answers its HTTP port 503 (starting; or a gateway in
// front of it with no backend), the other being fine but slow to answer
// the SDK's own login (held, as TestSlowLoginIsNotBlamedOnCredentials
// does). The client's requests are refused "user not found!". The
// credentials are right, and the second node says so when asked; the
// error must not send the operator to check them.
func TestLoginCheckAsksTheServerThatAnswers(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication")
	}
	starting := httpNode(t, cfg.Addresses[0], func(*http.Request, string) (int, string) {
		return http.StatusServiceUnavailable, "server is DOWN now, please try again later!"
	})
	r := startRelay(t, cfg.Addresses[0])
	r.holdLogins() // the SDK's own logins time out; the check's do not
	two := cfg
	two.Addresses = []string{starting, r.addr}
	two.TimeoutMs = 1000
	err := whileConnecting(func() error { _, err := Fetch(two, unique("lm-node-two"), ""); return err })
	t.Logf("fetch: %v", err)
	t.Logf("login checks that reached the healthy node: %d", r.checks.Load())
	if err == nil {
		t.Fatal("fetched: the SDK logged in although its logins are held")
	}
	if errors.Is(err, errLogin) || !errors.Is(err, errNotLoggedIn) {
		t.Errorf("got %v\nwant: the credentials are accepted (the second node accepts them) and the client has not logged in yet; not \"check Config.Username and Password\"", err)
	}
	r.release()
}

// TestLoginCheckServerErrorIsNotBlamedOnCredentials: a single
// node whose HTTP port answers 503 while its gRPC port works: the
// client cannot log in and is refused "user not found!". Nothing says
// the credentials are wrong; the error must not say the server refuses
// them and send the operator to check them.
func TestLoginCheckServerErrorIsNotBlamedOnCredentials(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication")
	}
	starting := httpNode(t, cfg.Addresses[0], func(*http.Request, string) (int, string) {
		return http.StatusServiceUnavailable, "server is DOWN now, please try again later!"
	})
	one := cfg
	one.Addresses = []string{starting}
	one.TimeoutMs = 1000
	err := whileConnecting(func() error { _, err := Fetch(one, unique("lm-node-503"), ""); return err })
	t.Logf("fetch: %v", err)
	if err == nil {
		t.Fatal("fetched without a login")
	}
	if errors.Is(err, errLogin) || strings.Contains(err.Error(), "refuses user") {
		t.Errorf("got %v\nwant: the login could not be checked (the server answered 503), not that the server refuses the user's credentials", err)
	}
}

// TestLoginCheckDoesNotEchoThePassword: whatever sits at the
// server's HTTP port (a gateway, a WAF, a wrong port) may quote the
// request in its answer; the login check quotes the answer. The password
// must not reach the error (nor the logs it goes to).
func TestLoginCheckDoesNotEchoThePassword(t *testing.T) {
	cfg := testConfig(t)
	if cfg.Password == "" {
		t.Skip("the server has no authentication")
	}
	echo := httpNode(t, cfg.Addresses[0], func(r *http.Request, body string) (int, string) {
		return http.StatusBadRequest, fmt.Sprintf("request rejected by policy: %s %s body=%s", r.Method, r.URL.Path, body)
	})
	one := cfg
	one.Addresses = []string{echo}
	one.TimeoutMs = 1000
	err := whileConnecting(func() error { _, err := Fetch(one, unique("lm-node-echo"), ""); return err })
	t.Logf("fetch: %v", err)
	if err == nil {
		t.Fatal("fetched without a login")
	}
	if strings.Contains(err.Error(), cfg.Password) {
		t.Errorf("the error shows the password %q: %v", cfg.Password, err)
	}
}

// TestOutageWatchEndsWithItsContextWhenTheGRPCPortDropsSYNs: the
// diagnosis's own case, a firewall that opens only the HTTP port of
// each node, but one that drops (a cloud security group) rather than
// refuses: the port check dials each gRPC port for up to 2 s, holding
// the verdict's lock. A Watch whose context ends meanwhile must return
// then (TestOutageWatchEndsWithItsContextWhileTheServerCheckIsSlow's promise),
// and so must the other watches of the Discovery.
func TestOutageWatchEndsWithItsContextWhenTheGRPCPortDropsSYNs(t *testing.T) {
	skipUnderRace(t) // a client that never connects: the SDK races with itself (its status)
	cfg := testConfig(t)
	var nodes []string
	// Built by hand: HTTP port relayed, gRPC port a blackhole.
	for len(nodes) < 3 {
		p := 21000 + rand.IntN(9000)
		hl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		bh, err := droppingListener(p + 1000)
		if err != nil {
			hl.Close()
			continue
		}
		t.Cleanup(func() { hl.Close(); bh.Close() })
		forwardTo(t, hl, cfg.Addresses[0])
		nodes = append(nodes, hl.Addr().String())
	}
	fw := cfg
	fw.Addresses = nodes
	fw.TimeoutMs = 1000
	start := time.Now()
	d, err := NewDiscovery(fw, "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	t.Logf("NewDiscovery took %v", time.Since(start))

	var wg sync.WaitGroup
	type result struct {
		took time.Duration
		err  error
	}
	results := make([]result, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			s := time.Now()
			err := d.Watch(ctx, unique("lm-node-fw"), func([]discovery.Instance) {})
			results[i] = result{time.Since(s), err}
		}()
	}
	wg.Wait()
	for i, r := range results {
		t.Logf("watch %d: after %v: %v", i, r.took.Round(time.Millisecond), r.err)
		if r.took > 2*time.Second {
			t.Errorf("watch %d with a 300ms context returned after %v; want about 300ms", i, r.took.Round(time.Millisecond))
		}
	}
}

// TestOutageTLSMismatchIsNotStillConnecting: a client with TLS on
// (Config.TLS) against a server whose gRPC port talks plaintext (or the
// reverse, or a CA that does not match) never connects: every handshake
// fails. The port accepts TCP connections, so the port check says the
// client "is still connecting (it keeps trying)", which sends the
// operator to wait rather than to the TLS settings.
func TestOutageTLSMismatchIsNotStillConnecting(t *testing.T) {
	skipUnderRace(t) // a client that never connects: the SDK races with itself (its status)
	cfg := testConfig(t)
	ca, _ := selfSigned(t, t.TempDir(), "ca")
	tlsCfg := cfg
	tlsCfg.TLS = &TLSConfig{CAFile: ca}
	tlsCfg.TimeoutMs = 1000
	_, err := Fetch(tlsCfg, unique("lm-node-tls"), "") // not whileConnecting: it never connects
	t.Logf("fetch: %v", err)
	if err == nil {
		t.Fatal("fetched over TLS from a plaintext server")
	}
	if strings.Contains(err.Error(), "still connecting") || !strings.Contains(err.Error(), "TLS does not match") {
		t.Errorf("got %v\nwant: no claim that the client is still connecting and will get there; its TLS handshakes fail", err)
	}
}
