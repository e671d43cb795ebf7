package mesh_test

// The tests in this file each hold one promise of the README against the
// public API, with real backends, and are named after the bug that broke
// it (issue 9 of the tracker).

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// eventsOf returns a mesh option delivering rule events to a channel.
func eventsOf() (mesh.Option, chan mesh.RulesEvent) {
	ch := make(chan mesh.RulesEvent, 64)
	return mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { ch <- ev }), ch
}

func nextEvent(t *testing.T, ch chan mesh.RulesEvent) mesh.RulesEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no rule event within 5s")
		return mesh.RulesEvent{}
	}
}

// count sends n GETs to http://svc/ and counts the outcomes.
func count(c *http.Client, n int) (ok, limited, open, other int) {
	for range n {
		code, _, err := send(c, "GET", "http://svc/")
		switch {
		case err == nil && code == 200:
			ok++
		case errors.Is(err, mesh.ErrRateLimited):
			limited++
		case errors.Is(err, mesh.ErrCircuitOpen):
			open++
		default:
			other++
		}
	}
	return ok, limited, open, other
}

// Bug 1: a rejected document must not change the live rate limit.
func TestRejectedDocumentLeavesTheLimitAlone(t *testing.T) {
	be := newFlaky(t, "b")
	opt, events := eventsOf()
	src := rules.NewMemory([]byte(svcDoc("    rateLimit: {rps: 1000, burst: 1000}\n")))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}}), opt)
	client := &http.Client{Transport: m.Transport(nil)}
	nextEvent(t, events)
	// A tiny limit plus one mistake: the whole document is rejected.
	src.Set([]byte(svcDoc("    rateLimit: {rps: 0.001, burst: 1}\n    retry: {attempts: 20}\n")))
	if ev := nextEvent(t, events); ev.Err == nil || !strings.Contains(ev.Err.Error(), "services.svc.retry.attempts") {
		t.Fatalf("event %+v, want the rejection of retry.attempts", ev)
	}
	if ok, limited, _, _ := count(client, 50); ok != 50 || limited != 0 {
		t.Fatalf("after the rejected document %d of 50 calls passed (%d rate limited): the rejected limit took effect", ok, limited)
	}
}

// Bug 2: removing outlierDetection takes effect at once.
func TestRemovingOutlierDetectionStopsEjecting(t *testing.T) {
	good, bad := newFlaky(t, "good"), newFlaky(t, "bad")
	bad.status.Store(http.StatusServiceUnavailable)
	opt, events := eventsOf()
	src := rules.NewMemory([]byte(svcDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n")))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": {good.instance(), bad.instance()}}), opt)
	nextEvent(t, events)
	client := &http.Client{Transport: m.Transport(nil)}
	count(client, 20)
	if n := bad.hits.Load(); n != 2 {
		t.Fatalf("bad instance got %d requests, want 2 before ejection", n)
	}
	src.Set([]byte(svcDoc("")))
	if ev := nextEvent(t, events); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	count(client, 20)
	if n := bad.hits.Load(); n < 10 {
		t.Fatalf("after outlierDetection was removed the bad instance got %d of 20 more calls: it is still ejected", n-2)
	}
	for _, b := range m.Status().Breakers {
		if b.Instance != "" {
			t.Fatalf("instance breaker %+v still listed without outlierDetection", b)
		}
	}
}

// Bug 3: instance breakers classify with outlierDetection.failureStatus,
// not with the service breaker's set.
func TestOutlierFailureStatusIsHonoured(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	a.status.Store(http.StatusInternalServerError) // not an outlier failure
	b.status.Store(http.StatusServiceUnavailable)  // an outlier failure
	m, _, client := meshFor(t, svcDoc(`    breaker: {minRequests: 1000, failureStatus: [500]}
    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h, failureStatus: [503]}
`), a, b)
	count(client, 30)
	if n := b.hits.Load(); n != 2 {
		t.Fatalf("the 503 instance got %d calls, want 2 and then ejection", n)
	}
	if n := a.hits.Load(); n < 20 {
		t.Fatalf("the 500 instance got %d of 30 calls: 500 is not in outlierDetection.failureStatus, it must not be ejected", n)
	}
	for _, st := range m.Status().Breakers {
		if st.Instance == a.instance().Address && st.State != "closed" {
			t.Fatalf("the 500 instance's breaker is %s", st.State)
		}
	}
}

// Bug 4: an open service breaker fails fast, even with retries
// configured: no backoff, no budget spent, nothing sent.
func TestOpenServiceBreakerFailsFast(t *testing.T) {
	be := newFlaky(t, "b")
	be.status.Store(http.StatusServiceUnavailable)
	reg := prometheus.NewRegistry()
	src := rules.NewMemory([]byte(svcDoc(`    breaker: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h}
    retry: {attempts: 3, backoff: 1s, on: [connect-failure]}
`)))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}}), mesh.WithRegisterer(reg))
	client := &http.Client{Transport: m.Transport(nil)}
	count(client, 2)
	hits := be.hits.Load()
	for range 5 {
		start := time.Now()
		_, _, err := send(client, "GET", "http://svc/")
		var open *mesh.CircuitOpenError
		if !errors.As(err, &open) || !open.ServiceLevel() {
			t.Fatalf("err = %v, want the service breaker's CircuitOpenError", err)
		}
		if d := time.Since(start); d > 400*time.Millisecond {
			t.Fatalf("the refusal took %v: an open service breaker must fail at once, not back off", d)
		}
	}
	if be.hits.Load() != hits {
		t.Fatal("an open breaker let a call through")
	}
	if got := metricValue(t, reg, "lightmesh_retries_total", map[string]string{"destination_service": "svc"}); got > 0 {
		t.Fatalf("%v retries counted while the breaker was open", got)
	}
}

// Bug 5: a half-open instance whose probe slot is taken is not offered;
// calls go to the healthy instance in the same attempt.
func TestBusyHalfOpenInstanceIsSkipped(t *testing.T) {
	slow, healthy := newFlaky(t, "slow"), newFlaky(t, "healthy")
	slow.status.Store(http.StatusServiceUnavailable)
	m, _, client := meshFor(t, svcDoc("    outlierDetection: {minRequests: 1, failureRatio: 0.5, openBase: 100ms, openMax: 100ms, halfOpenProbes: 1}\n"), slow, healthy)
	meshtest.WaitFor(t, 5*time.Second, "the slow instance to be ejected", func() bool {
		send(client, "GET", "http://svc/")
		return slow.hits.Load() > 0 && instanceState(m, slow) == "open"
	})
	// The slow instance recovers but answers slowly: its one probe stays
	// in flight.
	slow.status.Store(http.StatusOK)
	slow.delay.Store(int64(time.Second))
	meshtest.WaitFor(t, 5*time.Second, "the open period to end", func() bool { return instanceState(m, slow) != "open" })
	probe := make(chan error, 1)
	go func() {
		for slow.hits.Load() < 2 { // until a call lands on the slow instance as its probe
			if _, _, err := send(client, "GET", "http://svc/"); err != nil {
				probe <- err
				return
			}
		}
		probe <- nil
	}()
	meshtest.WaitFor(t, 5*time.Second, "the probe to reach the slow instance", func() bool { return slow.hits.Load() >= 2 })
	ok, _, open, other := count(client, 10)
	if ok != 10 {
		t.Fatalf("with the slow instance's probe slot taken, %d of 10 calls succeeded (%d circuit open, %d other): they must go to the healthy instance", ok, open, other)
	}
	if err := <-probe; err != nil {
		t.Fatal(err)
	}
}

// Bug 5, second half: when the busy instance is the only one, the error
// names it and says an instance breaker refused.
func TestOnlyInstanceBusyNamesIt(t *testing.T) {
	be := newFlaky(t, "b")
	be.status.Store(http.StatusServiceUnavailable)
	m, _, client := meshFor(t, svcDoc("    outlierDetection: {minRequests: 1, failureRatio: 0.5, openBase: 50ms, openMax: 50ms, halfOpenProbes: 1}\n"), be)
	send(client, "GET", "http://svc/")
	be.status.Store(http.StatusOK)
	be.delay.Store(int64(time.Second))
	meshtest.WaitFor(t, 5*time.Second, "the open period to end", func() bool { return instanceState(m, be) != "open" })
	go send(client, "GET", "http://svc/") // the probe
	meshtest.WaitFor(t, 5*time.Second, "the probe to arrive", func() bool { return be.hits.Load() == 2 })
	_, _, err := send(client, "GET", "http://svc/")
	var open *mesh.CircuitOpenError
	if !errors.As(err, &open) || open.Instance != be.instance().Address || open.ServiceLevel() ||
		!strings.Contains(err.Error(), "instance breaker of "+be.instance().Address) {
		t.Fatalf("err = %v, want a CircuitOpenError naming the instance breaker of %s", err, be.instance().Address)
	}
}

func instanceState(m *mesh.Mesh, f *flaky) string {
	for _, b := range m.Status().Breakers {
		if b.Instance == f.instance().Address {
			return b.State
		}
	}
	return ""
}

// Bug 6: a refused call closes the request body, as the RoundTripper
// contract says: a writer feeding it through a pipe is released.
func TestRefusedCallClosesTheBody(t *testing.T) {
	be := newFlaky(t, "b")
	be.status.Store(http.StatusInternalServerError)
	_, _, client := meshFor(t, svcDoc("    breaker: {minRequests: 1, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n"), be)
	send(client, "GET", "http://svc/")
	for _, method := range []string{http.MethodPost, http.MethodGet} {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(method, "http://svc/", pr)
		if _, err := client.Do(req); !errors.Is(err, mesh.ErrCircuitOpen) {
			t.Fatalf("%s: err = %v, want ErrCircuitOpen", method, err)
		}
		wrote := make(chan error, 1)
		go func() { _, err := pw.Write([]byte("body")); wrote <- err }()
		select {
		case err := <-wrote:
			if !errors.Is(err, io.ErrClosedPipe) {
				t.Fatalf("%s: write = %v, want io.ErrClosedPipe", method, err)
			}
		case <-time.After(2 * time.Second):
			pw.Close()
			t.Fatalf("%s: the refused request's body was never closed: its writer blocks", method)
		}
	}
}

// nilSource's Watch returns nil at once, which a Source must not do; the
// mesh must survive it and say so.
type nilSource struct{ calls atomic.Int64 }

func (s *nilSource) Watch(context.Context, func(rules.Document)) error { s.calls.Add(1); return nil }
func (s *nilSource) String() string                                    { return "nil-source" }

type nilDiscovery struct{ calls atomic.Int64 }

func (d *nilDiscovery) Watch(context.Context, string, func([]discovery.Instance)) error {
	d.calls.Add(1)
	return nil
}

// Bug 7: a source whose Watch returns a nil error does not crash the
// process.
func TestWatchReturningNilDoesNotCrash(t *testing.T) {
	rs, ds := &nilSource{}, &nilDiscovery{}
	m, err := mesh.New(context.Background(), mesh.WithRules(rs), mesh.WithDiscovery(ds), mesh.WithServices("svc"),
		mesh.WithStartEmpty(), mesh.WithStartTimeout(200*time.Millisecond), mesh.WithReconnectBackoff(time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	meshtest.WaitFor(t, 5*time.Second, "both sources to be retried", func() bool { return rs.calls.Load() > 2 && ds.calls.Load() > 2 })
	if st := m.Status().Watcher; st.Connected || !strings.Contains(st.LastError, "returned without an error") {
		t.Fatalf("watcher status %+v, want it to say the watch returned without an error", st)
	}
}

// Bug 8: lightmesh_breaker_state reports the breakers in force: a breaker
// replaced by a rule change reports its successor, and an instance that
// left discovery has no series.
func TestBreakerStateMetricFollowsTheRules(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	a.status.Store(http.StatusInternalServerError)
	b.status.Store(http.StatusInternalServerError)
	reg := prometheus.NewRegistry()
	opt, events := eventsOf()
	doc := func(min int) string {
		return svcDoc(fmt.Sprintf("    breaker: {minRequests: %d, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n    outlierDetection: {minRequests: 1, openBase: 1h, openMax: 1h}\n", min))
	}
	src := rules.NewMemory([]byte(doc(2)))
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance(), b.instance()}})
	m := newMesh(t, src, static, mesh.WithRegisterer(reg), opt)
	nextEvent(t, events)
	client := &http.Client{Transport: m.Transport(nil)}
	count(client, 4)
	state := func(instance string) float64 {
		return metricValue(t, reg, "lightmesh_breaker_state", map[string]string{"destination_service": "svc", "upstream_instance": instance})
	}
	if state("") != 2 || state(a.instance().Address) != 2 {
		t.Fatalf("service breaker %v, instance a %v: want both open (2)", state(""), state(a.instance().Address))
	}
	// New breaker settings replace the service breaker: a closed one.
	src.Set([]byte(doc(3)))
	nextEvent(t, events)
	if got := state(""); got != 0 {
		t.Fatalf("after the breaker was replaced the metric says %v, want 0 (closed)", got)
	}
	// Instance a leaves while open: its series goes.
	static.Set("svc", []discovery.Instance{b.instance()})
	meshtest.WaitFor(t, 5*time.Second, "instance a to leave", func() bool { return len(m.Table().Instances("svc", "")) == 1 })
	if got := state(a.instance().Address); got != -1 {
		t.Fatalf("instance a left but its breaker series is still %v", got)
	}
}

// Bug 9: an unnamed inbound route and one named "0" keep a bucket each,
// also after a reload.
func TestInboundRoutesKeepTheirOwnBuckets(t *testing.T) {
	doc := `apiVersion: lightmesh/v1
services:
  me:
    inbound:
      - {match: {path: {prefix: /a}}, rateLimit: {rps: 0.001, burst: 1}}
      - {name: "0", match: {path: {prefix: /b}}, rateLimit: {rps: 0.001, burst: 1}}
`
	opt, events := eventsOf()
	src := rules.NewMemory([]byte(doc))
	m, err := mesh.New(context.Background(), mesh.WithRules(src), mesh.WithLocalService("me"), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	nextEvent(t, events)
	src.Set([]byte(doc + "# reloaded\n"))
	nextEvent(t, events)
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	defer srv.Close()
	for _, p := range []string{"/a", "/b"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("first request to %s: %d; each inbound route has a bucket of its own", p, resp.StatusCode)
		}
	}
}

// Bug 10, server side: a WebSocket handshake behind mesh.Handler with
// metrics on (the ResponseWriter is wrapped) succeeds.
func TestWebSocketBehindHandler(t *testing.T) {
	m, err := mesh.New(context.Background(), mesh.WithRegisterer(prometheus.NewRegistry()), mesh.WithLocalService("me"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	up := websocket.Upgrader{}
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_, msg, err := c.ReadMessage()
		if err == nil {
			c.WriteMessage(websocket.TextMessage, append([]byte("echo "), msg...))
		}
	})))
	defer srv.Close()
	c, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("handshake behind mesh.Handler failed (%d): %v", status, err)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "echo hi" {
		t.Fatalf("read %q, %v", msg, err)
	}
}

// Bug 10, client side: an upgrade through mesh.Transport with a call
// timeout returns the connection as the body (readable and writable) and
// the timeout does not cut it afterwards.
func TestUpgradeThroughTransport(t *testing.T) {
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(websocket.TextMessage, msg)
		}
	}))
	defer srv.Close()
	list := []discovery.Instance{{Address: strings.TrimPrefix(srv.URL, "http://")}}
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    timeout: 100ms\n"))), discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))

	// The handshake, by hand, through the mesh Transport.
	req, _ := http.NewRequest(http.MethodGet, "http://svc/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := m.Transport(nil).RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	conn, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("the 101 body is a %T, not the upgraded connection", resp.Body)
	}
	defer conn.Close()
	time.Sleep(300 * time.Millisecond) // well past the call timeout
	// A masked text frame "ping" (RFC 6455 section 5), answered in kind.
	frame := []byte{0x81, 0x84, 1, 2, 3, 4}
	for i, c := range []byte("ping") {
		frame = append(frame, c^[]byte{1, 2, 3, 4}[i%4])
	}
	if _, err := conn.Write(frame); err != nil {
		t.Fatalf("write after the timeout: %v", err)
	}
	reply := make([]byte, 6)
	if _, err := io.ReadFull(bufio.NewReader(conn), reply); err != nil {
		t.Fatalf("read after the timeout: %v (the call timeout cut the upgraded connection)", err)
	}
	if string(reply[2:]) != "ping" {
		t.Fatalf("reply frame %q", reply)
	}
}

// Bug 12: a baggage header the caller set is merged with the lane, not
// overwritten.
func TestCallerBaggageReachesTheBackend(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got.Store(r.Header.Get("Baggage")) }))
	defer srv.Close()
	list := []discovery.Instance{{Address: strings.TrimPrefix(srv.URL, "http://")}}
	m := newMesh(t, rules.NewMemory([]byte(svcDoc(""))), discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))
	req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
	req.Header.Set("X-Env", "staging")
	req.Header.Set("Baggage", "user=alice")
	resp, err := (&http.Client{Transport: m.Transport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	bag, _ := got.Load().(string)
	if !strings.Contains(bag, "user=alice") || !strings.Contains(bag, "lightmesh.lane.x-env=staging") {
		t.Fatalf("backend saw baggage %q, want the caller's user=alice and the lane", bag)
	}
	if req.Header.Get("Baggage") != "user=alice" {
		t.Fatal("the caller's request was changed")
	}
}

// Bug 13: services named by WithServices are discovered from New on, even
// before any rule document, and a call to one never leaves the mesh.
func TestNamedServicesNeverLeaveTheMesh(t *testing.T) {
	be := newFlaky(t, "b")
	missing := filepath.Join(t.TempDir(), "rules.yaml") // the rules do not exist yet
	snapDir := t.TempDir()
	static := discovery.NewStatic(map[string][]discovery.Instance{})
	m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(missing, 10*time.Millisecond)),
		mesh.WithDiscovery(static), mesh.WithServices("svc"), mesh.WithStartEmpty(),
		mesh.WithStartTimeout(100*time.Millisecond), mesh.WithSnapshotDir(snapDir))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	client := &http.Client{Transport: m.Transport(nil)}
	// Not discovered yet: a clear mesh error, not a DNS lookup of "svc".
	if _, _, err := send(client, "GET", "http://svc/"); !errors.Is(err, router.ErrNoInstance) {
		t.Fatalf("before discovery: err = %v, want router.ErrNoInstance", err)
	}
	static.Set("svc", []discovery.Instance{be.instance()})
	meshtest.WaitFor(t, 5*time.Second, "discovery to report svc", func() bool {
		code, body, err := send(client, "GET", "http://svc/")
		return err == nil && code == 200 && body == "b"
	})
	// And the instance snapshot is written in that state too.
	meshtest.WaitFor(t, 5*time.Second, "the instance snapshot", func() bool {
		data, err := os.ReadFile(filepath.Join(snapDir, "instances", "svc-svc.json"))
		return err == nil && strings.Contains(string(data), be.instance().Address)
	})
}

// Bug 14: a misspelled field is rejected with its document path, line and
// a suggestion, through the mesh as through router.Load.
func TestUnknownFieldRejectionNamesThePlace(t *testing.T) {
	opt, events := eventsOf()
	src := rules.NewMemory([]byte(svcDoc("")))
	newMesh(t, src, discovery.NewStatic(nil), opt)
	nextEvent(t, events)
	doc := svcDoc("    subsets: {all: {}}\n    routes:\n      - destinatons: [{subset: all}]\n")
	src.Set([]byte(doc))
	ev := nextEvent(t, events)
	want := `services.svc.routes[0].destinatons: unknown field; did you mean "destinations"? (line 6, column 9)`
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), want) {
		t.Fatalf("rejection %v, want %q", ev.Err, want)
	}
	_, lerr := router.Load([]byte(doc))
	if lerr == nil || lerr.Error() != ev.Err.Error() {
		t.Fatalf("router.Load says %v; the mesh said %v: they must reject alike", lerr, ev.Err)
	}
}

// Bug 15: a snapshot saved from another rule source is not restored.
func TestSnapshotOfAnotherSourceIsRefused(t *testing.T) {
	_, list := fleet(t)
	snapDir := t.TempDir()
	fileA := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(fileA, []byte(laneRules), 0o644); err != nil {
		t.Fatal(err)
	}
	first := newMesh(t, rules.NewFile(fileA, 10*time.Millisecond), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}), mesh.WithSnapshotDir(snapDir))
	first.Close()
	fileB := filepath.Join(t.TempDir(), "b.yaml") // another source, down
	_, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(fileB, 10*time.Millisecond)),
		mesh.WithSnapshotDir(snapDir), mesh.WithStartTimeout(200*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "was saved from file:"+fileA) {
		t.Fatalf("err = %v, want a refusal of the snapshot saved from %s", err, fileA)
	}
}

// newTLSBackend starts an HTTPS server whose certificate is valid for the
// name svc only, and returns it with a client TLS config trusting it.
func newTLSBackend(t *testing.T) (*httptest.Server, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "svc"}, DNSNames: []string{"svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secure") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return srv, &tls.Config{RootCAs: pool}
}

// HTTPS to a logical name verifies the certificate against that name,
// although the connection goes to the instance's IP.
func TestHTTPSVerifiesTheLogicalName(t *testing.T) {
	srv, clientTLS := newTLSBackend(t)
	list := []discovery.Instance{{Address: strings.TrimPrefix(srv.URL, "https://")}}
	m := newMesh(t, rules.NewMemory([]byte(svcDoc(""))), discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))
	base := &http.Transport{TLSClientConfig: clientTLS}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: m.Transport(base)}
	for range 3 {
		code, body, err := send(client, "GET", "https://svc/")
		if err != nil || code != 200 || body != "secure" {
			t.Fatalf("https://svc/: %d %q %v", code, body, err)
		}
	}
}

// closingSource counts Close calls.
type closingSource struct {
	*rules.Memory
	closed atomic.Int64
}

func (s *closingSource) Close() error { s.closed.Add(1); return nil }

type closingDiscovery struct {
	*discovery.Static
	closed atomic.Int64
}

func (d *closingDiscovery) Close() error { d.closed.Add(1); return nil }

// Close stops everything and closes the sources the mesh was given, once.
func TestCloseClosesTheSources(t *testing.T) {
	rs := &closingSource{Memory: rules.NewMemory([]byte(svcDoc("")))}
	ds := &closingDiscovery{Static: discovery.NewStatic(nil)}
	m, err := mesh.New(context.Background(), mesh.WithRules(rs), mesh.WithDiscovery(ds))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if rs.closed.Load() != 1 || ds.closed.Load() != 1 {
		t.Fatalf("rule source closed %d times, discovery %d times; want once each", rs.closed.Load(), ds.closed.Load())
	}
}

// A callback that blocks does not freeze the manager: rules and instances
// keep being applied while it waits.
func TestBlockingCallbackDoesNotFreezeTheManager(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	var seen atomic.Int64
	var last atomic.Value
	src := rules.NewMemory([]byte(svcDoc("")))
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance()}})
	m := newMesh(t, src, static, mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
		seen.Add(1)
		last.Store(ev.Version)
		<-release // a callback stuck on a full channel, say
	}))
	for i := range 5 {
		src.Set([]byte(svcDoc(fmt.Sprintf("    timeout: %ds\n", i+1))))
	}
	meshtest.WaitFor(t, 5*time.Second, "the last rules to apply", func() bool { return m.Status().Rules.Version == "6" })
	static.Set("svc", []discovery.Instance{b.instance()})
	meshtest.WaitFor(t, 5*time.Second, "the new instance", func() bool {
		_, body, err := send(&http.Client{Transport: m.Transport(nil)}, "GET", "http://svc/")
		return err == nil && body == "b"
	})
	if n := seen.Load(); n != 1 {
		t.Fatalf("callback entered %d times while the first call blocks, want 1", n)
	}
	once.Do(func() { close(release) })
	// The memory source may skip versions set in quick succession; the
	// last one is delivered in any case.
	meshtest.WaitFor(t, 5*time.Second, "the queued events", func() bool { v, _ := last.Load().(string); return v == "6" })
}

// Snapshot writes are gathered: a burst of instance updates is applied at
// once and written once or twice, not once per update.
func TestSnapshotWritesAreGathered(t *testing.T) {
	be := newFlaky(t, "b")
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}})
	dir := t.TempDir()
	m := newMesh(t, rules.NewMemory([]byte(svcDoc(""))), static, mesh.WithSnapshotDir(dir))
	meshtest.WaitFor(t, 5*time.Second, "the first snapshot", func() bool { return m.Status().Snapshot.Writes >= 2 })
	base := m.Status().Snapshot.Writes
	for i := range 200 {
		static.Set("svc", []discovery.Instance{{Address: fmt.Sprintf("10.0.0.%d:80", i%250+1)}})
	}
	meshtest.WaitFor(t, 5*time.Second, "the last list to apply", func() bool {
		in := m.Table().Instances("svc", "")
		return len(in) == 1 && in[0].Address == "10.0.0.200:80"
	})
	meshtest.WaitFor(t, 5*time.Second, "the last list on disk", func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "instances", "svc-svc.json"))
		return err == nil && strings.Contains(string(data), "10.0.0.200:80")
	})
	if n := m.Status().Snapshot.Writes - base; n > 20 {
		t.Fatalf("200 instance updates took %d snapshot writes; they must be gathered", n)
	}
}
