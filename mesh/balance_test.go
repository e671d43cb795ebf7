package mesh_test

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestP2CEWMAAvoidsASlowedInstance: under loadBalancer: p2c-ewma, an
// instance slowed by 50ms loses nearly all its calls within a second (a
// round-robin third would cost every third call 50ms), and gets its
// share back within seconds of recovering; no call fails. 50ms, not
// 20ms: with every package's tests running at once on 2 cores a healthy
// call can take several milliseconds (a 0.39 share was seen at 20ms),
// while round-robin gives the slowed instance a third whatever the delay.
func TestP2CEWMAAvoidsASlowedInstance(t *testing.T) {
	a, b, slow := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "slow")
	reg := prometheus.NewRegistry()
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    loadBalancer: p2c-ewma\n"))),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance(), b.instance(), slow.instance()}}), mesh.WithRegisterer(reg))
	client := &http.Client{Transport: m.Transport(nil)}
	// period sends calls for d and returns the slow instance's share.
	period := func(d time.Duration) float64 {
		t.Helper()
		start, calls, before := time.Now(), 0, slow.hits.Load()
		for time.Since(start) < d && calls < 20000 {
			if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != 200 {
				t.Fatalf("%d %v", code, err)
			}
			calls++
		}
		return float64(slow.hits.Load()-before) / float64(calls)
	}
	// Warm up: connections made, every instance's first (slower) calls
	// forgotten.
	period(1500 * time.Millisecond)
	slow.delay.Store(int64(50 * time.Millisecond))
	first := period(time.Second)
	next := period(time.Second)
	if first > 0.15 || next > 0.15 || first+next > 0.2 {
		t.Fatalf("slowed instance's share: %.2f in its first second, %.2f in the next; want each < 0.15 and together < 0.2 (round-robin: 0.33 each)", first, next)
	}
	ewma := func(f *flaky) float64 {
		return metricValue(t, reg, "lightmesh_instance_latency_ewma_seconds", map[string]string{"destination_service": "svc", "upstream_instance": f.instance().Address})
	}
	if e := ewma(slow); e < 0.015 {
		t.Fatalf("lightmesh_instance_latency_ewma_seconds of the slowed instance = %v, want >= 15ms", e)
	}
	slow.delay.Store(0)
	start := time.Now()
	for {
		if s := period(500 * time.Millisecond); s > 0.2 {
			t.Logf("slowed: %.3f then %.3f of the calls; back to %.2f %v after recovering", first, next, s, time.Since(start).Round(100*time.Millisecond))
			return
		}
		// An instance shunned while slow is tried once a second
		// (forcePick) and each such sample removes about 80% of its
		// average: from 50ms that takes 4-5 samples, and each sample
		// caught in a stall of the loaded machine costs a second or more
		// (4.5-7.5s in 8 runs under -race here; meshgrpc's test of the
		// same name, the same balancer, took up to 9.5s).
		if time.Since(start) > 15*time.Second {
			t.Fatalf("the recovered instance did not get its share back within 15s")
		}
	}
}

// TestLeastRequestAvoidsABusyInstance: under loadBalancer: least-request,
// an instance whose calls pile up (slow, with calls in flight from
// concurrent callers) gets fewer calls than the others.
func TestLeastRequestAvoidsABusyInstance(t *testing.T) {
	a, b, slow := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "slow")
	_, _, client := meshFor(t, svcDoc("    loadBalancer: least-request\n"), a, b, slow)
	slow.delay.Store(int64(50 * time.Millisecond))
	a.delay.Store(int64(2 * time.Millisecond))
	b.delay.Store(int64(2 * time.Millisecond))
	errs := make(chan error, 8)
	deadline := time.Now().Add(time.Second)
	for range 8 {
		go func() {
			for time.Now().Before(deadline) {
				if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != http.StatusOK {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	total := a.hits.Load() + b.hits.Load() + slow.hits.Load()
	if share := float64(slow.hits.Load()) / float64(total); share > 0.25 {
		t.Fatalf("the busy instance got %.2f of %d calls, want well under a third", share, total)
	}
}

// TestExplainShowsBalancerAndSlowStart: explain names the load balancer,
// the slow start and the ejection cap in force.
func TestExplainShowsBalancerAndSlowStart(t *testing.T) {
	a := newFlaky(t, "a")
	m, _, _ := meshFor(t, svcDoc("    loadBalancer: least-request\n    slowStart: {window: 30s}\n    outlierDetection: {maxEjectionPercent: 20}\n"), a)
	var text strings.Builder
	m.Explain(mesh.ExplainRequest{Service: "svc", Path: "/"}).WriteText(&text)
	for _, want := range []string{"  load balancer: least-request\n", "  slow start: over 30s from 10%\n", "at most 20% ejected"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, text.String())
		}
	}
}

// TestP2CEWMAAvoidsAFastFailingInstance: under loadBalancer: p2c-ewma
// with no outlierDetection, an instance that answers 503 at once (a
// crashed dependency, an empty pool) must not draw the calls away from
// the healthy ones because its errors are fast: it gets less than
// round-robin's third. Before, its 503s were latency samples like any
// other, so the lowest average won and it took about 90% of the calls.
func TestP2CEWMAAvoidsAFastFailingInstance(t *testing.T) {
	a, b, bad := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "bad")
	_, _, client := meshFor(t, svcDoc("    loadBalancer: p2c-ewma\n"), a, b, bad)
	a.delay.Store(int64(3 * time.Millisecond))
	b.delay.Store(int64(3 * time.Millisecond))
	for range 30 { // connections made
		send(client, "GET", "http://svc/")
	}
	bad.status.Store(http.StatusServiceUnavailable)
	calls, failed := 0, 0
	for ; calls < 300; calls++ {
		if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != http.StatusOK {
			failed++
		}
	}
	t.Logf("%d of %d calls failed", failed, calls)
	if share := float64(failed) / float64(calls); share > 0.15 {
		t.Fatalf("%d of %d calls (%.2f) failed on the instance answering 503; want < 0.15 (round-robin: 0.33)", failed, calls, share)
	}
}

// TestP2CEWMADoesNotFloodAJoiningInstance: under p2c-ewma an instance
// that joins has no latency sample yet; it must not look free to every
// concurrent caller until its first call returns. A new instance that is
// slow on its first calls (a cold cache, a JIT) takes one probe call at
// a time until it has a sample, as Finagle's peak EWMA penalises an
// instance with calls pending and no latency known. Before, all eight
// callers piled onto it and waited 200ms each.
func TestP2CEWMADoesNotFloodAJoiningInstance(t *testing.T) {
	a, b, cold := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "cold")
	a.delay.Store(int64(2 * time.Millisecond))
	b.delay.Store(int64(2 * time.Millisecond))
	cold.delay.Store(int64(200 * time.Millisecond))
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance(), b.instance()}})
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    loadBalancer: p2c-ewma\n"))), static)
	client := &http.Client{Transport: m.Transport(nil)}
	for range 50 {
		send(client, "GET", "http://svc/")
	}
	static.Set("svc", []discovery.Instance{a.instance(), b.instance(), cold.instance()})
	meshtest.WaitFor(t, 5*time.Second, "the new instance known", func() bool { return len(m.Table().Instances("svc", "")) == 3 })
	var wg sync.WaitGroup
	deadline := time.Now().Add(150 * time.Millisecond)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != http.StatusOK {
					t.Errorf("%d %v", code, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := cold.hits.Load(); n > 2 {
		t.Fatalf("the joining instance took %d calls at once before its first answer; want at most 2", n)
	}
}

// TestP2CEWMAAvoidsARefusingInstance: under p2c-ewma, with no retries
// and no outlierDetection, an instance that refuses connections from the
// start has no latency sample ever; its connect failures must still make
// it costly (before, with no sample it looked free and drew most calls,
// each failing).
func TestP2CEWMAAvoidsARefusingInstance(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := discovery.Instance{Address: l.Addr().String()}
	l.Close()
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    loadBalancer: p2c-ewma\n"))),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {a.instance(), b.instance(), dead}}))
	client := &http.Client{Transport: m.Transport(nil)}
	calls, failed := 0, 0
	for start := time.Now(); time.Since(start) < 500*time.Millisecond && calls < 3000; calls++ {
		if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != http.StatusOK {
			failed++
		}
	}
	if share := float64(failed) / float64(calls); share > 0.1 {
		t.Fatalf("%d of %d calls (%.2f) failed on the instance refusing connections; want < 0.1 (round-robin: 0.33)", failed, calls, share)
	}
}
