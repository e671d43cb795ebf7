//go:build fault

// The fault suite: the mesh's data path under killed, silent and churning
// backends and under rule churn, with real HTTP over loopback. Run it with
//
//	go test -race -tags fault -run Fault ./mesh/
//
// Every load is bounded: a fixed number of requests at a fixed rate,
// stopping by itself. Each test logs what it measured and asserts bounds.

package mesh_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// faultTryLog is a base RoundTripper that records when each try went to each
// instance address before handing it to an http.Transport of its own.
type faultTryLog struct {
	base *http.Transport
	mu   sync.Mutex
	at   map[string][]time.Time
}

func newFaultTryLog(t *testing.T) *faultTryLog {
	tl := &faultTryLog{base: &http.Transport{MaxIdleConnsPerHost: 8}, at: map[string][]time.Time{}}
	t.Cleanup(tl.base.CloseIdleConnections)
	return tl
}

func (tl *faultTryLog) RoundTrip(r *http.Request) (*http.Response, error) {
	tl.mu.Lock()
	tl.at[r.URL.Host] = append(tl.at[r.URL.Host], time.Now())
	tl.mu.Unlock()
	return tl.base.RoundTrip(r)
}

// count returns the tries sent to addr, and those of them sent after t.
func (tl *faultTryLog) count(addr string, t time.Time) (all, after int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, at := range tl.at[addr] {
		if at.After(t) {
			after++
		}
	}
	return len(tl.at[addr]), after
}

// faultBackend is a real HTTP backend that answers with its name and, once
// held, blocks each new request (before any byte of the response) until
// released or the request ends.
type faultBackend struct {
	name    string
	srv     *httptest.Server
	hits    atomic.Int64
	holding atomic.Bool
	held    atomic.Int64
	release chan struct{}
}

func newFaultBackend(t *testing.T, name string) *faultBackend {
	t.Helper()
	b := &faultBackend{name: name, release: make(chan struct{})}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if b.holding.Load() {
			b.held.Add(1)
			select {
			case <-b.release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(func() {
		b.unhold()
		b.srv.Close()
	})
	return b
}

func (b *faultBackend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// unhold releases the held requests; it may be called more than once.
func (b *faultBackend) unhold() {
	if b.holding.CompareAndSwap(true, false) {
		close(b.release)
	}
}

// kill makes b a dead instance while requests are in flight on it: its
// listener is closed (new connections are refused) and every client
// connection, those of the held requests included, is closed before any
// byte of their response was written.
func (b *faultBackend) kill() {
	b.srv.Listener.Close()
	b.srv.CloseClientConnections()
	b.unhold()
}

// faultBlackHole is an instance that accepts TCP connections and then never
// reads or writes a byte.
type faultBlackHole struct {
	ln   net.Listener
	done chan struct{}

	mu      sync.Mutex
	accepts []time.Time
	conns   []net.Conn
}

func newFaultBlackHole(t *testing.T) *faultBlackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bh := &faultBlackHole{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(bh.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bh.mu.Lock()
			bh.accepts = append(bh.accepts, time.Now())
			bh.conns = append(bh.conns, c)
			bh.mu.Unlock()
		}
	}()
	t.Cleanup(bh.close)
	return bh
}

func (bh *faultBlackHole) addr() string { return bh.ln.Addr().String() }

// count returns the connections accepted, and those accepted after t.
func (bh *faultBlackHole) count(t time.Time) (all, after int) {
	bh.mu.Lock()
	defer bh.mu.Unlock()
	for _, at := range bh.accepts {
		if at.After(t) {
			after++
		}
	}
	return len(bh.accepts), after
}

func (bh *faultBlackHole) close() {
	bh.ln.Close()
	<-bh.done
	bh.mu.Lock()
	defer bh.mu.Unlock()
	for _, c := range bh.conns {
		c.Close()
	}
	bh.conns = nil
}

// faultGoroutineSlack is how many goroutines more than before a test may
// be left once everything it started is closed: the runtime and the
// testing package start a few of their own at times.
const faultGoroutineSlack = 2

// faultCheckGoroutines records the goroutine count now and, when the test
// ends and everything registered with t.Cleanup after this call has been
// closed (meshes, servers, transports' idle connections), fails t unless
// the count is back to it within faultGoroutineSlack, waiting up to 10 s.
// Call it first in a test.
func faultCheckGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		after, took := faultSettleGoroutines(before, 10*time.Second)
		t.Logf("goroutines: %d before the test, %d after it closed everything (settled in %v)", before, after, took.Round(time.Millisecond))
		if after > before+faultGoroutineSlack {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d after the test, %d before (slack %d); stacks:\n%s",
				after, before, faultGoroutineSlack, buf[:runtime.Stack(buf, true)])
		}
	})
}

// faultSettleGoroutines waits up to d for the goroutine count to come down to
// want+faultGoroutineSlack and returns the count and the time it took.
func faultSettleGoroutines(want int, d time.Duration) (int, time.Duration) {
	start := time.Now()
	n := runtime.NumGoroutine()
	for n > want+faultGoroutineSlack && time.Since(start) < d {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n, time.Since(start)
}

// faultInstanceBreaker returns the status of the outlier breaker of addr.
func faultInstanceBreaker(m *mesh.Mesh, service, addr string) (mesh.BreakerStatus, bool) {
	for _, b := range m.Status().Breakers {
		if b.Service == service && b.Instance == addr {
			return b, true
		}
	}
	return mesh.BreakerStatus{}, false
}

// faultEjectedAt waits up to d for the outlier breaker of addr to open and
// returns when it opened: its open-until time less openPeriod (the rules
// set no jitter and a single trip, so the period is exactly openBase).
func faultEjectedAt(t *testing.T, m *mesh.Mesh, service, addr string, openPeriod, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if b, ok := faultInstanceBreaker(m, service, addr); ok && b.State == "open" {
			return b.OpenUntil.Add(-openPeriod)
		}
		if time.Now().After(deadline) {
			b, _ := faultInstanceBreaker(m, service, addr)
			t.Fatalf("instance %s not ejected within %v; its breaker: %+v", addr, d, b)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// faultLog logs what a load saw: its count, failures, slowest request
// and answers by backend.
func faultLog(t *testing.T, what string, s meshtest.LoadResult) {
	t.Helper()
	names := make([]string, 0, len(s.ByBody))
	for n := range s.ByBody {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", n, s.ByBody[n]))
	}
	t.Logf("%s: %d requests, %d failed, max latency %v, answers %s; first errors %q",
		what, s.Sent, s.Failed, s.MaxLatency.Round(time.Millisecond), strings.Join(parts, " "), s.Errors)
}

// The rules of the kill and black-hole faults.
const (
	faultPerTry   = 300 * time.Millisecond
	faultAttempts = 2
	faultOpenBase = 30 * time.Second // longer than any test: no probe comes back
)

var faultProtection = fmt.Sprintf(`    timeout: 3s
    retry: {attempts: %d, perTryTimeout: %v, backoff: 5ms, budget: 0.5}
    outlierDetection: {window: 1s, buckets: 10, minRequests: 3, failureRatio: 0.5,
                       openBase: %v, openMax: %v, halfOpenProbes: 1}
`, faultAttempts, faultPerTry, faultOpenBase, faultOpenBase)

// TestFaultInstanceKilledMidRequest kills one of three instances while a
// steady load flows and some of its requests are in flight on it: those
// fail on a broken connection, later ones on a refused connection, and
// every one is retried on another instance until the outlier breaker
// ejects the dead one, which then gets no try at all.
func TestFaultInstanceKilledMidRequest(t *testing.T) {
	faultCheckGoroutines(t)
	const (
		n         = 400
		rate      = 100 // requests per second
		maxFailed = 0
		// grace covers a try picked just before the breaker opened whose
		// RoundTrip starts just after.
		grace = 20 * time.Millisecond
	)
	a, b, victim := newFaultBackend(t, "a"), newFaultBackend(t, "b"), newFaultBackend(t, "victim")
	list := []discovery.Instance{{Address: a.addr()}, {Address: b.addr()}, {Address: victim.addr()}}
	tries := newFaultTryLog(t)
	m := newMesh(t, rules.NewMemory([]byte(svcDoc(faultProtection))), discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))
	client := &http.Client{Transport: m.Transport(tries)}

	load := meshtest.StartLoad(t, client, "http://svc/", n, rate, nil)
	// Let the victim serve real traffic first, then hold its new requests
	// and kill it with some of them in flight.
	meshtest.WaitFor(t, 5*time.Second, "the victim to serve 30 requests", func() bool { return victim.hits.Load() >= 30 })
	victim.holding.Store(true)
	meshtest.WaitFor(t, 5*time.Second, "2 requests held on the victim", func() bool { return victim.held.Load() >= 2 })
	held := victim.held.Load()
	sentAtKill := load.Sent()
	aAtKill, bAtKill := a.hits.Load(), b.hits.Load()
	killedAt := time.Now()
	victim.kill()
	ejected := faultEjectedAt(t, m, "svc", victim.addr(), faultOpenBase, 5*time.Second)
	detect := ejected.Sub(killedAt)

	s := load.Wait(t, 30*time.Second)
	faultLog(t, "kill one of three", s)
	triesAll, triesAfterKill := tries.count(victim.addr(), killedAt)
	_, triesAfterEject := tries.count(victim.addr(), ejected.Add(grace))
	t.Logf("killed after %d of %d requests with %d held on the victim; ejected %v after the kill; tries to the victim: %d in all, %d after the kill, %d after ejection (+%v)",
		sentAtKill, n, held, detect.Round(time.Millisecond), triesAll, triesAfterKill, triesAfterEject, grace)
	t.Logf("after the kill: a got %d, b got %d", a.hits.Load()-aAtKill, b.hits.Load()-bAtKill)

	if s.Failed > maxFailed {
		t.Errorf("%d of %d requests failed, want at most %d: each try on the dead instance must be retried elsewhere; first errors %q", s.Failed, n, maxFailed, s.Errors)
	}
	if held < 1 {
		t.Errorf("no request was in flight on the victim when it was killed")
	}
	if detect > 3*time.Second {
		t.Errorf("the dead instance was ejected %v after the kill, want within 3s", detect)
	}
	if triesAfterEject != 0 {
		t.Errorf("%d tries went to the dead instance after it was ejected", triesAfterEject)
	}
	if s.ByBody["victim"] == 0 || s.ByBody["a"]+s.ByBody["b"]+s.ByBody["victim"] != n-s.Failed {
		t.Errorf("answers %v: want the victim's before the kill and the rest from a and b", s.ByBody)
	}
}

// TestFaultBlackHoleInstance puts an instance that accepts connections
// and never answers beside two good ones: the per-try timeout cuts each
// try on it, the retry goes to a good instance, and the outlier breaker
// ejects the black hole, which then gets no new connection.
func TestFaultBlackHoleInstance(t *testing.T) {
	faultCheckGoroutines(t)
	const (
		n         = 300
		rate      = 100
		maxFailed = 0
		// slack covers backoff, scheduling and the good try on a loaded
		// 2-core machine under -race.
		slack = 400 * time.Millisecond
		grace = 20 * time.Millisecond
	)
	a, b, hole := newFaultBackend(t, "a"), newFaultBackend(t, "b"), newFaultBlackHole(t)
	list := []discovery.Instance{{Address: a.addr()}, {Address: b.addr()}, {Address: hole.addr()}}
	tries := newFaultTryLog(t)
	m := newMesh(t, rules.NewMemory([]byte(svcDoc(faultProtection))), discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))
	client := &http.Client{Transport: m.Transport(tries)}

	start := time.Now()
	load := meshtest.StartLoad(t, client, "http://svc/", n, rate, nil)
	ejected := faultEjectedAt(t, m, "svc", hole.addr(), faultOpenBase, 5*time.Second)
	s := load.Wait(t, 30*time.Second)
	faultLog(t, "black hole beside two", s)
	accepts, acceptsAfter := hole.count(ejected.Add(grace))
	triesAll, triesAfter := tries.count(hole.addr(), ejected.Add(grace))
	var slow int
	for _, c := range load.Calls() {
		if c.Latency > faultPerTry {
			slow++
		}
	}
	bound := faultPerTry*(faultAttempts+1) + slack
	t.Logf("ejected %v after the load started; black hole: %d connections accepted, %d after ejection (+%v); %d tries, %d after ejection; %d requests slower than the per-try timeout %v; max latency %v (bound %v)",
		ejected.Sub(start).Round(time.Millisecond), accepts, acceptsAfter, grace, triesAll, triesAfter, slow, faultPerTry, s.MaxLatency.Round(time.Millisecond), bound)

	if s.MaxLatency > bound {
		t.Errorf("max latency %v, want at most per-try timeout × tries + slack = %v", s.MaxLatency, bound)
	}
	// A retry goes to another instance: no request waits on the black
	// hole twice.
	if s.MaxLatency >= 2*faultPerTry {
		t.Errorf("max latency %v, want under 2 × per-try timeout = %v: a retry went back to the black hole", s.MaxLatency, 2*faultPerTry)
	}
	if s.Failed > maxFailed {
		t.Errorf("%d of %d requests failed, want at most %d; first errors %q", s.Failed, n, maxFailed, s.Errors)
	}
	if acceptsAfter != 0 || triesAfter != 0 {
		t.Errorf("after ejection the black hole got %d new connections and %d tries, want none", acceptsAfter, triesAfter)
	}
	// Before ejection only the tries in flight when the third timeout
	// came back can have reached it: about rate × per-try timeout / 3.
	if accepts < 3 || accepts > 30 {
		t.Errorf("the black hole accepted %d connections before ejection, want 3..30", accepts)
	}
	if s.ByBody["a"]+s.ByBody["b"] != n-s.Failed {
		t.Errorf("answers %v: every answer must come from a or b", s.ByBody)
	}
}

// TestFaultGoroutinesReturnToBaseline runs both faults at once — a
// killed instance and a black hole beside a good one — and then closes
// the mesh, the servers and the idle connections: the goroutine count
// must come back to what it was before.
func TestFaultGoroutinesReturnToBaseline(t *testing.T) {
	const (
		n    = 200
		rate = 100
	)
	before := runtime.NumGoroutine()
	good, victim, hole := newFaultBackend(t, "good"), newFaultBackend(t, "victim"), newFaultBlackHole(t)
	list := []discovery.Instance{{Address: good.addr()}, {Address: victim.addr()}, {Address: hole.addr()}}
	base := &http.Transport{}
	m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewMemory([]byte(svcDoc(faultProtection)))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": list})))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: m.Transport(base)}
	load := meshtest.StartLoad(t, client, "http://svc/", n, rate, nil)
	meshtest.WaitFor(t, 5*time.Second, "the victim to serve 10 requests", func() bool { return victim.hits.Load() >= 10 })
	victim.holding.Store(true)
	meshtest.WaitFor(t, 5*time.Second, "a request held on the victim", func() bool { return victim.held.Load() >= 1 })
	victim.kill()
	s := load.Wait(t, 30*time.Second)
	during := runtime.NumGoroutine()
	faultLog(t, "kill and black hole", s)

	m.Close()
	base.CloseIdleConnections()
	good.srv.Close()
	victim.srv.Close()
	hole.close()
	after, took := faultSettleGoroutines(before, 10*time.Second)
	t.Logf("goroutines: %d before, %d at the end of the load, %d after closing everything (settled in %v)", before, during, after, took.Round(time.Millisecond))
	if after > before+faultGoroutineSlack {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d after, %d before (slack %d); stacks:\n%s", after, before, faultGoroutineSlack, buf[:runtime.Stack(buf, true)])
	}
	if s.Failed > 0 {
		t.Errorf("%d of %d requests failed with one good instance left; first errors %q", s.Failed, n, s.Errors)
	}
}
