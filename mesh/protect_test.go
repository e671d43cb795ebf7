package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// flaky is a real HTTP backend whose status code and delay tests set.
type flaky struct {
	name   string
	srv    *httptest.Server
	status atomic.Int64
	delay  atomic.Int64 // nanoseconds
	hits   atomic.Int64
	posts  atomic.Int64
}

func newFlaky(t *testing.T, name string) *flaky {
	t.Helper()
	f := &flaky{name: name}
	f.status.Store(http.StatusOK)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		if r.Method == http.MethodPost {
			f.posts.Add(1)
		}
		io.Copy(io.Discard, r.Body)
		if d := time.Duration(f.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(int(f.status.Load()))
		io.WriteString(w, name)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *flaky) instance() discovery.Instance {
	return discovery.Instance{Address: strings.TrimPrefix(f.srv.URL, "http://")}
}

func send(c *http.Client, method, target string) (int, string, error) {
	req, _ := http.NewRequest(method, target, strings.NewReader("payload"))
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

func svcDoc(extra string) string {
	return "apiVersion: lightmesh/v1\nservices:\n  svc:\n" + extra
}

func meshFor(t *testing.T, doc string, backends ...*flaky) (*mesh.Mesh, *rules.Memory, *http.Client) {
	t.Helper()
	var list []discovery.Instance
	for _, b := range backends {
		list = append(list, b.instance())
	}
	src := rules.NewMemory([]byte(doc))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))
	return m, src, &http.Client{Transport: m.Transport(nil)}
}

func serviceBreaker(m *mesh.Mesh, service string) mesh.BreakerStatus {
	for _, b := range m.Status().Breakers {
		if b.Service == service && b.Instance == "" {
			return b
		}
	}
	return mesh.BreakerStatus{}
}

// TestBreakerLifecycle walks the service breaker through open, half-open,
// a failed probe with a longer open period up to the cap, and recovery.
func TestBreakerLifecycle(t *testing.T) {
	be := newFlaky(t, "b")
	m, _, client := meshFor(t, svcDoc(`    breaker: {window: 10s, buckets: 10, minRequests: 4, failureRatio: 0.5,
              openBase: 300ms, openMax: 1200ms, multiplier: 2, halfOpenProbes: 1}
`), be)
	const base = 300 * time.Millisecond

	// tripped sends a request that trips the breaker and returns the
	// times around it: the breaker opened between the two, so its open
	// period ends between them plus the period (exact on a stalled
	// machine, where a bound on time.Until would not be).
	var sentAt, doneAt time.Time
	send500 := func(what string) {
		t.Helper()
		sentAt = time.Now()
		code, _, err := send(client, "GET", "http://svc/")
		doneAt = time.Now()
		if err != nil || code != 500 {
			t.Fatalf("%s: %d, %v", what, code, err)
		}
	}
	openFor := func(what string, st mesh.BreakerStatus, want time.Duration) {
		t.Helper()
		if st.OpenUntil.Before(sentAt.Add(want)) || st.OpenUntil.After(doneAt.Add(want)) {
			t.Fatalf("%s: open until %v, want %v after the tripping request (sent %v, answered %v)", what,
				st.OpenUntil.Format(time.StampMicro), want, sentAt.Format(time.StampMicro), doneAt.Format(time.StampMicro))
		}
	}

	be.status.Store(http.StatusInternalServerError)
	for range 4 {
		send500("before tripping")
	}
	// Open: fails fast without reaching the backend.
	hits := be.hits.Load()
	_, _, err := send(client, "GET", "http://svc/")
	var open *mesh.CircuitOpenError
	if !errors.Is(err, mesh.ErrCircuitOpen) || !errors.Is(err, breaker.ErrOpen) || !errors.As(err, &open) || open.Service != "svc" {
		t.Fatalf("while open: err = %v, want *CircuitOpenError for svc", err)
	}
	if be.hits.Load() != hits {
		t.Fatal("an open breaker let a request through")
	}

	// Each failed probe reopens for longer: base, 2×, 4×, 4× (the cap).
	for i, want := range []time.Duration{base, 2 * base, 4 * base, 4 * base} {
		st := serviceBreaker(m, "svc")
		if st.State != "open" || st.Trips != i+1 {
			t.Fatalf("trip %d: status %+v", i+1, st)
		}
		openFor(fmt.Sprintf("trip %d", i+1), st, want)
		if i == 3 {
			break
		}
		time.Sleep(time.Until(st.OpenUntil) + 5*time.Millisecond)
		send500(fmt.Sprintf("probe %d (the half-open probe should reach the backend)", i+1))
	}

	// Recovery: a good probe closes the breaker and resets the period.
	be.status.Store(http.StatusOK)
	time.Sleep(time.Until(serviceBreaker(m, "svc").OpenUntil) + 5*time.Millisecond)
	if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != 200 {
		t.Fatalf("good probe: %d, %v", code, err)
	}
	if st := serviceBreaker(m, "svc"); st.State != "closed" || st.Trips != 0 {
		t.Fatalf("after recovery: %+v", st)
	}
	be.status.Store(http.StatusInternalServerError)
	for range 4 {
		send500("after recovery")
	}
	st := serviceBreaker(m, "svc")
	if st.Trips != 1 {
		t.Fatalf("after recovery the trips must restart at 1: %+v", st)
	}
	openFor("after recovery the open period must restart at the base", st, base)
}

func TestOutlierEjection(t *testing.T) {
	good1, good2, bad := newFlaky(t, "good1"), newFlaky(t, "good2"), newFlaky(t, "bad")
	m, _, client := meshFor(t, svcDoc(`    outlierDetection: {minRequests: 3, failureRatio: 0.5, openBase: 1s, openMax: 1s, halfOpenProbes: 1}
`), good1, good2, bad)
	bad.status.Store(http.StatusServiceUnavailable)

	for range 30 {
		send(client, "GET", "http://svc/")
	}
	if n := bad.hits.Load(); n != 3 {
		t.Fatalf("bad instance got %d requests; it should be ejected after 3 failures", n)
	}
	// Ejected: the healthy two take everything.
	for range 20 {
		code, body, err := send(client, "GET", "http://svc/")
		if err != nil || code != 200 || body == "bad" {
			t.Fatalf("after ejection: %d %q %v", code, body, err)
		}
	}
	var ejected bool
	for _, b := range m.Status().Breakers {
		if b.Instance == bad.instance().Address && b.State == "open" {
			ejected = true
		}
	}
	if !ejected {
		t.Fatalf("status does not show the bad instance ejected: %+v", m.Status().Breakers)
	}

	// It recovers and comes back once its open period ends.
	bad.status.Store(http.StatusOK)
	meshtest.WaitFor(t, 5*time.Second, "the recovered instance to get traffic again", func() bool {
		send(client, "GET", "http://svc/")
		return bad.hits.Load() > 4
	})
}

func TestClientRateLimitAndResize(t *testing.T) {
	be := newFlaky(t, "b")
	doc := func(rps string, burst int) string {
		return svcDoc(fmt.Sprintf("    rateLimit: {rps: %s, burst: %d}\n", rps, burst))
	}
	events := make(chan mesh.RulesEvent, 8)
	src := rules.NewMemory([]byte(doc("0.01", 5)))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}}),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
	<-events
	client := &http.Client{Transport: m.Transport(nil)}

	burst := func(n int) (ok, limited int) {
		for range n {
			_, _, err := send(client, "GET", "http://svc/")
			var rl *mesh.RateLimitError
			switch {
			case err == nil:
				ok++
			case errors.Is(err, mesh.ErrRateLimited) && errors.As(err, &rl) && rl.Service == "svc":
				limited++
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		return ok, limited
	}
	if ok, limited := burst(8); ok != 5 || limited != 3 {
		t.Fatalf("burst of 8 over a limit of 5: ok=%d limited=%d", ok, limited)
	}
	if be.hits.Load() != 5 {
		t.Fatalf("limited requests reached the backend: %d hits", be.hits.Load())
	}
	// A larger burst resizes the same bucket in place: the spent tokens
	// stay spent (a fresh limiter would allow 8 at once).
	src.Set([]byte(doc("0.01", 8)))
	<-events
	if ok, _ := burst(3); ok != 0 {
		t.Fatalf("after resizing, %d requests passed; the bucket must carry over", ok)
	}
	src.Set([]byte(doc("1000", 8)))
	<-events
	time.Sleep(20 * time.Millisecond)
	if ok, limited := burst(8); ok != 8 || limited != 0 {
		t.Fatalf("after raising the rate: ok=%d limited=%d", ok, limited)
	}
}

// inboundServer serves, behind the Handler of a mesh that is service "me"
// with the rules doc, a handler that counts the requests reaching it.
func inboundServer(t *testing.T, doc string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewMemory([]byte(doc))), mesh.WithLocalService("me"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	reached := new(atomic.Int64)
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) })))
	t.Cleanup(srv.Close)
	return srv, reached
}

func TestServerRateLimit(t *testing.T) {
	doc := `apiVersion: lightmesh/v1
services:
  me:
    inbound:
      - name: api
        match: {path: {prefix: /api/}}
        rateLimit: {rps: 0.01, burst: 3}
`
	srv, reached := inboundServer(t, doc)
	var codes []int
	for range 5 {
		resp, err := http.Get(srv.URL + "/api/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("429 without a valid Retry-After: %q", resp.Header.Get("Retry-After"))
			}
		}
	}
	if fmt.Sprint(codes) != "[200 200 200 429 429]" || reached.Load() != 3 {
		t.Fatalf("codes %v, handler reached %d times", codes, reached.Load())
	}
	// Other paths are not limited.
	for range 5 {
		resp, err := http.Get(srv.URL + "/health")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("unlimited path: %v %v", resp, err)
		}
		resp.Body.Close()
	}
}

func TestRetriesGoElsewhereAndSkipPost(t *testing.T) {
	good, bad := newFlaky(t, "good"), newFlaky(t, "bad")
	bad.status.Store(http.StatusServiceUnavailable)
	_, _, client := meshFor(t, svcDoc("    retry: {attempts: 2, backoff: 1ms}\n"), good, bad)

	for range 10 {
		code, body, err := send(client, "GET", "http://svc/")
		if err != nil || code != 200 || body != "good" {
			t.Fatalf("GET: %d %q %v (a 503 must be retried on the other instance)", code, body, err)
		}
	}
	// Every call ends on good exactly once; each try on bad was retried.
	if good.hits.Load() != 10 || bad.hits.Load() < 1 {
		t.Fatalf("good got %d GETs (want 10), bad got %d (want >= 1)", good.hits.Load(), bad.hits.Load())
	}
	var failed int
	for range 10 {
		code, _, err := send(client, "POST", "http://svc/")
		if err != nil {
			t.Fatal(err)
		}
		if code == 503 {
			failed++
		}
	}
	if failed != 5 || bad.posts.Load() != 5 || good.posts.Load() != 5 {
		t.Fatalf("POST: %d failed, bad got %d, good got %d: POST must not be retried", failed, bad.posts.Load(), good.posts.Load())
	}
}

func TestRetryBodyIsReplayed(t *testing.T) {
	var bodies sync.Map
	mk := func(name string, status int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			bodies.Store(name, string(b))
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	bad, good := mk("bad", 503), mk("good", 200)
	list := []discovery.Instance{{Address: strings.TrimPrefix(bad.URL, "http://")}, {Address: strings.TrimPrefix(good.URL, "http://")}}
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    retry: {attempts: 1, backoff: 1ms}\n"))), discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))
	client := &http.Client{Transport: m.Transport(nil)}
	req, _ := http.NewRequest(http.MethodPut, "http://svc/", strings.NewReader("the-body"))
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, n := range []string{"bad", "good"} {
		if b, _ := bodies.Load(n); b != "the-body" {
			t.Fatalf("%s received body %q", n, b)
		}
	}
}

func TestRetryBudgetCapsOutage(t *testing.T) {
	a, b := newFlaky(t, "a"), newFlaky(t, "b")
	a.status.Store(http.StatusServiceUnavailable)
	b.status.Store(http.StatusServiceUnavailable)
	_, _, client := meshFor(t, svcDoc("    retry: {attempts: 3, budget: 0.2, backoff: 1ms}\n"), a, b)
	const calls = 100
	for range calls {
		if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != 503 {
			t.Fatalf("%d %v", code, err)
		}
	}
	// Without a budget the backends would see 400 requests. With it:
	// 100 calls + a reserve of 10 + 20% of 100.
	if got := a.hits.Load() + b.hits.Load(); got > calls+10+20 || got <= calls {
		t.Fatalf("backends received %d requests for %d calls; the budget allows at most %d", got, calls, calls+30)
	}
}

func TestTimeouts(t *testing.T) {
	slow, fast := newFlaky(t, "slow"), newFlaky(t, "fast")
	slow.delay.Store(int64(2 * time.Second))
	_, _, client := meshFor(t, svcDoc("    retry: {attempts: 1, perTryTimeout: 50ms, backoff: 1ms}\n"), slow, fast)
	for range 4 {
		start := time.Now()
		code, body, err := send(client, "GET", "http://svc/")
		if err != nil || code != 200 || body != "fast" {
			t.Fatalf("per-try timeout: %d %q %v", code, body, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("call took %v: the per-try timeout did not cut the slow try", d)
		}
	}

	fast.delay.Store(int64(2 * time.Second))
	_, _, client = meshFor(t, svcDoc("    timeout: 100ms\n"), fast)
	start := time.Now()
	_, _, err := send(client, "GET", "http://svc/")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("route timeout: err = %v after %v", err, time.Since(start))
	}
}

// TestBreakerSwapKeepsState checks that a rule change keeps breakers whose
// settings did not change and replaces the others, under traffic.
func TestBreakerSwapKeepsState(t *testing.T) {
	be := newFlaky(t, "b")
	br := func(min int, route string) string {
		return svcDoc(fmt.Sprintf(`    breaker: {minRequests: %d, failureRatio: 0.5, openBase: 10s}
    routes:
      - name: %s
        destinations: [{subset: all}]
    subsets: {all: {labels: {}}}
`, min, route))
	}
	events := make(chan mesh.RulesEvent, 512)
	src := rules.NewMemory([]byte(br(3, "r1")))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}}),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
	<-events
	client := &http.Client{Transport: m.Transport(nil)}
	be.status.Store(500)
	for range 3 {
		send(client, "GET", "http://svc/")
	}
	if st := serviceBreaker(m, "svc"); st.State != "open" {
		t.Fatalf("breaker not open: %+v", st)
	}
	src.Set([]byte(br(3, "renamed")))
	if ev := <-events; ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if st := serviceBreaker(m, "svc"); st.State != "open" {
		t.Fatalf("a change that left the breaker settings alone reset it: %+v", st)
	}
	src.Set([]byte(br(4, "renamed")))
	<-events
	if st := serviceBreaker(m, "svc"); st.State != "closed" {
		t.Fatalf("changed settings must replace the breaker: %+v", st)
	}

	// Under -race: swap settings back and forth while traffic flows.
	be.status.Store(200)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				code, _, err := send(client, "GET", "http://svc/")
				if err != nil && !errors.Is(err, mesh.ErrCircuitOpen) || err == nil && code != 200 {
					t.Errorf("during swaps: %d %v", code, err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		src.Set([]byte(br(5+i%3, "renamed")))
	}
	cancel()
	wg.Wait()
}

// TestEjectedSubsetFallsBack ejects every instance of the chosen subset:
// the route's fallback serves, and without a fallback the call fails fast
// with a CircuitOpenError naming service and subset.
func TestEjectedSubsetFallsBack(t *testing.T) {
	canary, stable := newFlaky(t, "canary"), newFlaky(t, "stable")
	canary.status.Store(http.StatusInternalServerError)
	ci, si := canary.instance(), stable.instance()
	ci.Labels, si.Labels = map[string]string{"v": "canary"}, map[string]string{"v": "stable"}
	doc := func(fallback string) string {
		return svcDoc(`    subsets: {canary: {labels: {v: canary}}, stable: {labels: {v: stable}}}
    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 10s}
    routes:
      - destinations: [{subset: canary}]
` + fallback)
	}
	for _, tc := range []struct{ fallback string }{{"        fallback: stable\n"}, {""}} {
		m := newMesh(t, rules.NewMemory([]byte(doc(tc.fallback))), discovery.NewStatic(map[string][]discovery.Instance{"svc": {ci, si}}))
		client := &http.Client{Transport: m.Transport(nil)}
		for range 2 {
			send(client, "GET", "http://svc/")
		}
		hits := canary.hits.Load()
		code, body, err := send(client, "GET", "http://svc/")
		if tc.fallback != "" {
			if err != nil || code != 200 || body != "stable" {
				t.Fatalf("with fallback: %d %q %v", code, body, err)
			}
		} else {
			var open *mesh.CircuitOpenError
			if !errors.As(err, &open) || open.Service != "svc" || open.Subset != "canary" {
				t.Fatalf("without fallback: err = %v, want CircuitOpenError{svc, canary}", err)
			}
		}
		if canary.hits.Load() != hits {
			t.Fatal("an ejected instance received a request")
		}
		m.Close()
	}
}

// TestCallerCancellationIsNotAFailure cancels calls from the caller's side
// while the backend is slow: the breaker must not count them.
func TestCallerCancellationIsNotAFailure(t *testing.T) {
	be := newFlaky(t, "b")
	be.delay.Store(int64(time.Second))
	m, _, client := meshFor(t, svcDoc("    breaker: {minRequests: 2, failureRatio: 0.5}\n"), be)
	for range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://svc/", nil)
		if _, err := client.Do(req); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the caller's deadline", err)
		}
		cancel()
	}
	if st := serviceBreaker(m, "svc"); st.State != "closed" {
		t.Fatalf("caller cancellations tripped the breaker: %+v", st)
	}
	// The same slowness cut by the mesh's own timeout does count.
	_, _, client = meshFor(t, svcDoc("    timeout: 20ms\n    breaker: {minRequests: 2, failureRatio: 0.5}\n"), be)
	for range 2 {
		send(client, "GET", "http://svc/")
	}
	if _, _, err := send(client, "GET", "http://svc/"); !errors.Is(err, mesh.ErrCircuitOpen) {
		t.Fatalf("after two mesh timeouts: err = %v, want ErrCircuitOpen", err)
	}
}

// TestServerRateLimitPaddedHeader: a stranger who pads the header an
// inbound route's regex reads past router.MaxRegexInputLen is neither let
// past that route's limit nor into a more generous route: the request is
// refused with 429, and the handler is not reached.
func TestServerRateLimitPaddedHeader(t *testing.T) {
	doc := `apiVersion: lightmesh/v1
services:
  me:
    inbound:
      - name: trusted
        match: {headers: {x-client: {regex: "internal-[a-z]+"}}}
        rateLimit: {rps: 10000, burst: 1000}
      - name: everyone
        rateLimit: {rps: 0.01, burst: 1}
`
	srv, reached := inboundServer(t, doc)
	get := func(client string) int {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.Header.Set("X-Client", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	padded := "internal-ops" + strings.Repeat("x", router.MaxRegexInputLen)
	var codes []int
	for _, c := range []string{"internal-ops", "internal-ops", padded, padded, "internal-ops"} {
		codes = append(codes, get(c))
	}
	if fmt.Sprint(codes) != "[200 200 429 429 200]" || reached.Load() != 3 {
		t.Fatalf("codes %v, handler reached %d times; want the padded requests refused", codes, reached.Load())
	}
}

// TestTimeoutCutsTheBody: the rule's timeout bounds the response body
// too. A server that sends its headers at once and then stalls: the body
// read fails at the timeout with an error that is
// context.DeadlineExceeded (errors.Is), and the next call is served as
// usual after the caller closed the body.
func TestTimeoutCutsTheBody(t *testing.T) {
	var stall atomic.Bool
	stall.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.Write([]byte("head"))
		w.(http.Flusher).Flush()
		if stall.Load() {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    timeout: 200ms\n"))), discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: u.Host}}}))
	client := &http.Client{Transport: m.Transport(nil)}
	start := time.Now()
	resp, err := client.Get("http://svc/")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	took := time.Since(start)
	resp.Body.Close()
	if !errors.Is(err, context.DeadlineExceeded) || took < 200*time.Millisecond || took > 2*time.Second {
		t.Fatalf("body read: err = %v after %v, want context.DeadlineExceeded after 200ms", err, took)
	}
	stall.Store(false)
	if code, body, err := send(client, "GET", "http://svc/"); err != nil || code != 200 || body != "head" {
		t.Fatalf("next call: %d %q %v", code, body, err)
	}
}
