//go:build fault

package mesh_test

import (
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
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

// churnTargets is the number of allowed backends of the rule churn; each
// valid document routes every call to one of them.
const churnTargets = 8

// churnSubsets declares a subset per allowed backend, t0..t7, and the
// forbidden one that no valid document routes to.
var churnSubsets = func() string {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  svc:\n    subsets:\n")
	for i := range churnTargets {
		fmt.Fprintf(&b, "      t%d: {labels: {name: t%d}}\n", i, i)
	}
	b.WriteString("      forbidden: {labels: {name: forbidden}}\n")
	return b.String()
}()

// churnValid returns valid document i: every call to t(i mod 8), under a
// route name of its own so that no two documents are equal.
func churnValid(i int) string {
	return churnSubsets + fmt.Sprintf("    routes:\n      - name: v%d\n        destinations: [{subset: t%d}]\n", i, i%churnTargets)
}

// churnInvalid returns invalid document i, of one of eight kinds. Each
// one's first route sends every call to the forbidden subset, so a
// document applied in spite of its error — or half applied — would send
// calls to the forbidden backend.
func churnInvalid(i int) string {
	first := fmt.Sprintf("    routes:\n      - name: x%d\n        destinations: [{subset: forbidden}]\n", i)
	switch i % 8 {
	case 0: // a destination naming a subset that does not exist
		return churnSubsets + first + "      - destinations: [{subset: missing}]\n"
	case 1: // a duration that does not parse
		return churnSubsets + "    timeout: soon\n" + first
	case 2: // a regex RE2 refuses
		return churnSubsets + first + "      - match: {headers: {x-a: {regex: \"(\"}}}\n        destinations: [{subset: t0}]\n"
	case 3: // an unknown field (strict decoding)
		return churnSubsets + "    colour: red\n" + first
	case 4: // a negative weight
		return churnSubsets + fmt.Sprintf("    routes:\n      - name: x%d\n        destinations: [{subset: forbidden, weight: 100}, {subset: t0, weight: -1}]\n", i)
	case 5: // too many retry attempts
		return churnSubsets + "    retry: {attempts: 99}\n" + first
	case 6: // a duplicate route name
		return churnSubsets + first + fmt.Sprintf("      - name: x%d\n        destinations: [{subset: t0}]\n", i)
	default: // YAML cut short
		return churnSubsets + strings.TrimSuffix(first, "]\n")
	}
}

// TestFaultRuleChurn applies 1,000 rule updates in quick succession, a
// third of them invalid, while calls flow. The source may coalesce
// versions; what must hold: no call reaches the backend that only the
// invalid documents route to, no call fails, the last document (valid)
// is the one in force, the last rejection shows in Status, and neither
// goroutines nor the heap grow with the number of updates.
func TestFaultRuleChurn(t *testing.T) {
	faultCheckGoroutines(t)
	const (
		updates = 1000
		n       = 800
		rate    = 200
		pause   = 500 * time.Microsecond // between updates
		// Bounds on what the churn may add while it runs: goroutines
		// beyond those of the connections warmed up before it and of the
		// calls in flight (perCall each: the caller's, and when the call
		// needs a new connection its dial, read and write loops and the
		// server's connection and background read), and heap (retaining
		// every compiled rule set would exceed it).
		maxExtraGoroutines = 20
		perCall            = 6
		maxHeapGrowth      = 4 << 20
	)
	invalid := func(i int) bool { return i%3 == 1 }
	version := func(i int) string { return strconv.Itoa(i + 2) } // NewMemory is "1"; update i is Set number i+1

	var list []discovery.Instance
	var allowed []*faultBackend
	for i := range churnTargets {
		b := newFaultBackend(t, fmt.Sprintf("t%d", i))
		allowed = append(allowed, b)
		list = append(list, discovery.Instance{Address: b.addr(), Labels: map[string]string{"name": b.name}})
	}
	forbidden := newFaultBackend(t, "forbidden")
	list = append(list, discovery.Instance{Address: forbidden.addr(), Labels: map[string]string{"name": "forbidden"}})

	// The churn sends calls to every allowed backend in turn: open the
	// connections the transport keeps to each (two idle ones) beforehand,
	// two requests held at once on each backend, so that the goroutines
	// counted before the churn include theirs.
	base := &http.Transport{MaxIdleConnsPerHost: 2}
	t.Cleanup(base.CloseIdleConnections)
	var warm sync.WaitGroup
	for _, b := range allowed {
		b.holding.Store(true)
		for range 2 {
			warm.Go(func() {
				resp, err := (&http.Client{Transport: base}).Get(b.srv.URL + "/warm-up")
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			})
		}
		meshtest.WaitFor(t, 5*time.Second, "two warm-up requests held on "+b.name, func() bool { return b.held.Load() == 2 })
		b.unhold()
	}
	warm.Wait()

	var applied, rejected atomic.Int64
	src := rules.NewMemory([]byte(churnValid(-1 + churnTargets))) // t7 to start with
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": list}),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
			if ev.Err != nil {
				rejected.Add(1)
			} else {
				applied.Add(1)
			}
		}))
	client := &http.Client{Transport: m.Transport(base)}

	load := meshtest.StartLoad(t, client, "http://svc/", n, rate, nil)
	meshtest.WaitFor(t, 5*time.Second, "50 requests sent", func() bool { return load.Sent() >= 50 })
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc
	goBefore := runtime.NumGoroutine()
	goMax, goExcess, inFlightMax := goBefore, 0, 0
	churnStart := time.Now()
	var nInvalid int
	for i := range updates {
		if invalid(i) {
			src.Set([]byte(churnInvalid(i)))
			nInvalid++
		} else {
			src.Set([]byte(churnValid(i)))
		}
		if i%10 == 0 {
			g, f := runtime.NumGoroutine(), load.InFlight()
			goMax, inFlightMax = max(goMax, g), max(inFlightMax, f)
			goExcess = max(goExcess, g-goBefore-perCall*f)
		}
		time.Sleep(pause)
	}
	churnTook := time.Since(churnStart)
	sentDuring := load.Sent()
	last := updates - 1
	if invalid(last) {
		t.Fatal("the test needs a valid last document")
	}
	meshtest.WaitFor(t, 5*time.Second, "the last document to be in force", func() bool { return m.Status().Rules.Version == version(last) })
	settled := time.Since(churnStart)
	s := load.Wait(t, 30*time.Second)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapAfter := ms.HeapAlloc
	st := m.Status()
	faultLog(t, "rule churn", s)
	t.Logf("%d updates (%d invalid) in %v, %d requests sent by then; the last in force %v after the first; events: %d applied, %d rejected, %d coalesced by the source",
		updates, nInvalid, churnTook.Round(time.Millisecond), sentDuring, settled.Round(time.Millisecond),
		applied.Load()-1, rejected.Load(), int64(updates)-(applied.Load()-1)-rejected.Load())
	goAfter, _ := faultSettleGoroutines(goBefore, 5*time.Second)
	t.Logf("goroutines: %d before the churn, at most %d during it with up to %d calls in flight (at most %d beyond %d per call in flight), %d once the load ended; heap: %d KiB before, %d KiB after (after GC)",
		goBefore, goMax, inFlightMax, goExcess, perCall, goAfter, heapBefore>>10, heapAfter>>10)

	if h := forbidden.hits.Load(); h != 0 {
		t.Errorf("the forbidden backend got %d calls: a document that was never valid routed them", h)
	}
	if s.Failed != 0 {
		t.Errorf("%d of %d calls failed during the churn, want none; first errors %q", s.Failed, n, s.Errors)
	}
	for body := range s.ByBody {
		if !strings.HasPrefix(body, "t") {
			t.Errorf("answers %v: %q is not an allowed backend", s.ByBody, body)
		}
	}
	if rejected.Load() == 0 || st.LastRejection == nil {
		t.Fatalf("no rejection seen (events %d, status %+v)", rejected.Load(), st.LastRejection)
	}
	if v, err := strconv.Atoi(st.LastRejection.Version); err != nil || !invalid(v-2) {
		t.Errorf("last rejection has version %q, not one of an invalid document", st.LastRejection.Version)
	}
	if goExcess > maxExtraGoroutines || goAfter > goBefore+faultGoroutineSlack {
		t.Errorf("goroutines: %d before the churn, up to %d more than %d per call in flight during it (bound +%d), %d once the load ended (bound +%d)",
			goBefore, goExcess, perCall, maxExtraGoroutines, goAfter, faultGoroutineSlack)
	}
	if heapAfter > heapBefore+maxHeapGrowth {
		t.Errorf("heap grew from %d to %d bytes over the churn (bound +%d)", heapBefore, heapAfter, maxHeapGrowth)
	}
	want := fmt.Sprintf("t%d", last%churnTargets)
	for range 20 {
		if name, err := faultCallSvc(client); err != nil || name != want {
			t.Fatalf("after the churn: %q, %v; want %s (the last document's)", name, err, want)
		}
	}

	// One more invalid document: rejected and shown, the last good one
	// keeps serving.
	src.Set([]byte(churnInvalid(updates)))
	meshtest.WaitFor(t, 5*time.Second, "the extra rejection", func() bool {
		r := m.Status().LastRejection
		return r != nil && r.Version == version(updates)
	})
	if st := m.Status(); st.Rules.Version != version(last) || !strings.Contains(st.LastRejection.Error, "missing") {
		t.Errorf("after an extra bad document: rules %q (want %q), rejection %+v", st.Rules.Version, version(last), st.LastRejection)
	}
	if name, err := faultCallSvc(client); err != nil || name != want || forbidden.hits.Load() != 0 {
		t.Errorf("after the extra rejection: %q, %v, forbidden hits %d", name, err, forbidden.hits.Load())
	}
}

func faultCallSvc(c *http.Client) (string, error) {
	resp, err := c.Get("http://svc/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

// faultChurnBackend is one backend of the instance churn: it counts its
// requests and, through its server's ConnState hook, the connections
// open to all the churn's backends.
type faultChurnBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

// TestFaultInstanceChurn has instances join and leave every 50 ms for
// 30 s while calls flow: a rotating window of 4 of 10 real backends, one
// leaving and one joining on each discovery event.
//
// Discovery events are numbered: event k is the k-th Set; before it
// starts the test records the list it sets, and once it returned the test
// publishes k as the current event. A call carries the event number s
// current when it was sent; the backend that receives it reads the event
// number c current on arrival. The call is out of bounds when its backend
// is in none of the lists of events s-1 .. c+1 — that is, it was sent
// after the backend's leaving event and the next one had both returned,
// and the backend did not rejoin in the meantime (event c+1 counts
// because it may be applied before its Set returns). No call may be out
// of bounds, none may fail, and neither goroutines nor open connections
// may grow over the 30 s.
func TestFaultInstanceChurn(t *testing.T) {
	faultCheckGoroutines(t)
	const (
		pool   = 10
		window = 4
		every  = 50 * time.Millisecond
		events = 600 // 30 s
		n      = 3000
		rate   = 100
		// Connections open at any time: at most the idle ones kept per
		// backend (MaxIdleConnsPerHost) times the pool, one per call in
		// flight, and connSlack closed by the client that the servers
		// have not seen closing yet.
		maxIdle   = 2
		connSlack = 4
		// Goroutines, less those of the open connections (connG each:
		// the client's read and write loops, the server's) and of the
		// calls in flight (callG each: the caller's, the server's
		// background read), may not grow by more than goroutineSlack
		// from the first 10 s to the last.
		connG, callG   = 3, 2
		goroutineSlack = 10
		// Calls picked before their backend left may still arrive up to
		// two events later when the machine stalls them in flight.
		maxLate = 5
	)
	var (
		seq       atomic.Int64              // the last discovery event whose Set returned
		members   [events + 2]atomic.Uint32 // members[k]: bit j set when backend j is in event k's list
		open      atomic.Int64              // connections open to all backends
		created   atomic.Int64              // connections ever accepted
		outside   atomic.Int64              // calls out of bounds
		late      atomic.Int64              // calls that arrived (not were sent) more than one event after their backend left
		mu        sync.Mutex
		firstOuts []string
	)
	mask := func(k int) uint32 {
		var m uint32
		for w := range window {
			m |= 1 << ((k + w) % pool)
		}
		return m
	}
	backends := make([]*faultChurnBackend, pool)
	for j := range pool {
		b := &faultChurnBackend{name: fmt.Sprintf("i%d", j)}
		bit := uint32(1) << j
		b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.hits.Add(1)
			c := int(seq.Load())
			s, err := strconv.Atoi(r.Header.Get("X-Fault-Seq"))
			if err != nil {
				http.Error(w, "no X-Fault-Seq", http.StatusBadRequest)
				return
			}
			in := func(lo, hi int) bool {
				for k := max(lo, 0); k <= hi && k < len(members); k++ {
					if members[k].Load()&bit != 0 {
						return true
					}
				}
				return false
			}
			if !in(s-1, c+1) {
				outside.Add(1)
				mu.Lock()
				if len(firstOuts) < 5 {
					firstOuts = append(firstOuts, fmt.Sprintf("%s got a call sent at event %d, arriving at event %d; lists %d..%d: %010b",
						b.name, s, c, s-1, c+1, func() []uint32 {
							var l []uint32
							for k := max(s-1, 0); k <= c+1 && k < len(members); k++ {
								l = append(l, members[k].Load())
							}
							return l
						}()))
				}
				mu.Unlock()
			}
			if !in(c-1, c+1) {
				late.Add(1)
			}
			io.WriteString(w, b.name)
		}))
		b.srv.Config.ConnState = func(_ net.Conn, cs http.ConnState) {
			switch cs {
			case http.StateNew:
				open.Add(1)
				created.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
		b.srv.Start()
		t.Cleanup(b.srv.Close)
		backends[j] = b
	}
	listOf := func(k int) []discovery.Instance {
		var l []discovery.Instance
		for w := range window {
			b := backends[(k+w)%pool]
			l = append(l, discovery.Instance{Address: strings.TrimPrefix(b.srv.URL, "http://")})
		}
		return l
	}
	members[0].Store(mask(0))
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": listOf(0)})
	base := &http.Transport{MaxIdleConnsPerHost: 2}
	t.Cleanup(base.CloseIdleConnections)
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    retry: {attempts: 1, backoff: 5ms}\n"))), static)
	client := &http.Client{Transport: m.Transport(base)}

	load := meshtest.StartLoad(t, client, "http://svc/", n, rate, func(_ int, req *http.Request) {
		req.Header.Set("X-Fault-Seq", strconv.FormatInt(seq.Load(), 10))
	})
	type sample struct {
		conns, goroutines, inFlight int
	}
	var samples []sample
	var slowSets int
	tick := time.NewTicker(every)
	for k := 1; k <= events; k++ {
		<-tick.C
		members[k].Store(mask(k))
		setStart := time.Now()
		static.Set("svc", listOf(k))
		if time.Since(setStart) > every {
			slowSets++
		}
		seq.Store(int64(k))
		if k%20 == 0 { // every second
			samples = append(samples, sample{int(open.Load()), runtime.NumGoroutine(), load.InFlight()})
		}
	}
	tick.Stop()
	s := load.Wait(t, 30*time.Second)
	faultLog(t, "instance churn", s)

	// Per sample: connections beyond the bound, and goroutines that
	// neither a connection nor a call in flight accounts for.
	connExcess := func(x sample) int { return x.conns - maxIdle*pool - x.inFlight }
	spare := func(x sample) int { return x.goroutines - connG*x.conns - callG*x.inFlight }
	var worstConn, firstSpare, lastSpare = math.MinInt, math.MinInt, math.MinInt
	var cs, gs []string
	for i, x := range samples {
		worstConn = max(worstConn, connExcess(x))
		if i < 10 {
			firstSpare = max(firstSpare, spare(x))
		}
		if i >= len(samples)-10 {
			lastSpare = max(lastSpare, spare(x))
		}
		cs = append(cs, strconv.Itoa(x.conns))
		gs = append(gs, fmt.Sprintf("%d/%d", x.goroutines, x.inFlight))
	}
	t.Logf("%d discovery events every %v (%d Sets slower than that); calls out of bounds: %d; arrived more than one event after their backend left: %d; first: %q",
		events, every, slowSets, outside.Load(), late.Load(), firstOuts)
	t.Logf("open connections each second: %s (%d accepted in all; at worst %d beyond %d idle per backend plus one per call in flight)",
		strings.Join(cs, " "), created.Load(), worstConn, maxIdle)
	t.Logf("goroutines/calls in flight each second: %s (not accounted for by connections and calls: at most %d in the first 10 s, %d in the last)",
		strings.Join(gs, " "), firstSpare, lastSpare)

	if outside.Load() != 0 {
		t.Errorf("%d calls reached an instance that had left more than one discovery event before they were sent; first: %q", outside.Load(), firstOuts)
	}
	if late.Load() > maxLate {
		t.Errorf("%d calls arrived more than one discovery event after their backend left, want at most %d (calls in flight)", late.Load(), maxLate)
	}
	if s.Failed != 0 {
		t.Errorf("%d of %d calls failed, want none (every instance that left keeps running); first errors %q", s.Failed, n, s.Errors)
	}
	if worstConn > connSlack {
		t.Errorf("open connections: up to %d more than %d idle per backend plus one per call in flight (slack %d): %s", worstConn, maxIdle, connSlack, strings.Join(cs, " "))
	}
	if lastSpare > firstSpare+goroutineSlack {
		t.Errorf("goroutines not accounted for by connections and calls in flight grew from %d in the first 10 s to %d in the last (slack %d): %s",
			firstSpare, lastSpare, goroutineSlack, strings.Join(gs, " "))
	}
	for _, b := range backends {
		if b.hits.Load() == 0 {
			t.Errorf("backend %s got no call in 30 s", b.name)
		}
	}
	want := listOf(events)
	addrs := func(l []discovery.Instance) []string {
		var a []string
		for _, in := range l {
			a = append(a, in.Address)
		}
		slices.Sort(a)
		return a
	}
	// The last Set reaches the table through the manager a moment later.
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Equal(addrs(m.Table().Instances("svc", "")), addrs(want)) {
		if time.Now().After(deadline) {
			t.Fatalf("the mesh routes to %v 5 s after the last Set, want the last list %v", addrs(m.Table().Instances("svc", "")), addrs(want))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
