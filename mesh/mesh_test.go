package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const laneRules = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - destinations: [{subset: base}]
`

// fleet starts two base and two staging backends of user-api.
func fleet(t *testing.T) (map[string]*meshtest.Backend, []discovery.Instance) {
	t.Helper()
	return meshtest.Fleet(t, "base-1", "base-2", "staging-1", "staging-2")
}

func newMesh(t *testing.T, src rules.Source, disc discovery.Source, opts ...mesh.Option) *mesh.Mesh {
	t.Helper()
	return meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, append([]mesh.Option{mesh.WithRules(src), mesh.WithDiscovery(disc)}, opts...)...)
	})
}

func TestTransportAndHandlerEndToEnd(t *testing.T) {
	backends, list := fleet(t)
	m := newMesh(t, rules.NewMemory([]byte(laneRules)), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}))
	client := &http.Client{Transport: m.Transport(nil)}
	ctx := context.Background()

	seen := map[string]int{}
	for range 8 {
		body, err := meshtest.Get(ctx, client, "http://user-api/v1/users", nil)
		if err != nil {
			t.Fatal(err)
		}
		seen[body]++
	}
	if seen["base-1"] != 4 || seen["base-2"] != 4 {
		t.Fatalf("no header: got %v, want 4 each on base-1 and base-2", seen)
	}
	if h := backends["base-1"].LastHost(); h != "user-api" {
		t.Fatalf("backend saw Host %q, want the logical name user-api", h)
	}

	for range 4 {
		body, err := meshtest.Get(ctx, client, "http://user-api/v1/users", map[string]string{"X-Env": "staging"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(body, "staging-") {
			t.Fatalf("X-Env: staging went to %s", body)
		}
	}

	// A request to a host the mesh does not know passes through untouched.
	plain := meshtest.NewBackend(t, "plain")
	if body, err := meshtest.Get(ctx, client, plain.Server.URL+"/x", nil); err != nil || body != "plain" {
		t.Fatalf("pass-through: %q, %v", body, err)
	}

	// The Handler puts the inbound lane in the context; the front service's
	// own call through the Transport stays in the lane without copying
	// headers.
	front := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := meshtest.Get(r.Context(), client, "http://user-api/v1/users", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, body)
	})))
	defer front.Close()
	for _, tc := range []struct{ env, prefix string }{{"staging", "staging-"}, {"", "base-"}} {
		h := map[string]string{}
		if tc.env != "" {
			h["X-Env"] = tc.env
		}
		body, err := meshtest.Get(ctx, http.DefaultClient, front.URL, h)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(body, tc.prefix) {
			t.Fatalf("via front with X-Env %q: reached %s, want %s*", tc.env, body, tc.prefix)
		}
	}
}

func TestFallbackAndNoInstance(t *testing.T) {
	backends, list := fleet(t)
	_ = backends
	static := discovery.NewStatic(map[string][]discovery.Instance{"user-api": list[:2]}) // base only
	m := newMesh(t, rules.NewMemory([]byte(laneRules)), static)
	client := &http.Client{Transport: m.Transport(nil)}

	body, err := meshtest.Get(context.Background(), client, "http://user-api/", map[string]string{"X-Env": "staging"})
	if err != nil || !strings.HasPrefix(body, "base-") {
		t.Fatalf("staging is empty, fallback base expected: %q, %v", body, err)
	}

	static.Set("user-api", nil)
	meshtest.WaitFor(t, 5*time.Second, "instances removed", func() bool { return len(m.Table().Instances("user-api", "")) == 0 })
	_, err = meshtest.Get(context.Background(), client, "http://user-api/", map[string]string{"X-Env": "staging"})
	var noInst *router.NoInstanceError
	if !errors.Is(err, router.ErrNoInstance) || !errors.As(err, &noInst) {
		t.Fatalf("err = %v, want ErrNoInstance", err)
	}
	if noInst.Service != "user-api" || noInst.Subset != "staging" || noInst.Fallback != "base" {
		t.Fatalf("NoInstanceError = %+v", noInst)
	}
}

func TestBadDocumentKeepsLastGoodRules(t *testing.T) {
	_, list := fleet(t)
	src := rules.NewMemory([]byte(laneRules))
	events := make(chan mesh.RulesEvent, 16)
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
	<-events
	client := &http.Client{Transport: m.Transport(nil)}
	good := m.Status().Rules.Version

	bad := strings.Replace(laneRules, "{subset: base}]", "{subset: base, weight: -1}]", 1)
	src.Set([]byte(bad))
	ev := <-events
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "services.user-api.routes[1].destinations[0].weight: must be >= 0") {
		t.Fatalf("rejection = %v", ev.Err)
	}
	st := m.Status()
	if st.Rules.Version != good || st.LastRejection == nil || !strings.Contains(st.LastRejection.Error, "weight") {
		t.Fatalf("status after rejection = %+v", st)
	}
	if m.LastRejection() == nil {
		t.Fatal("LastRejection() = nil after a rejection")
	}
	for range 4 {
		body, err := meshtest.Get(context.Background(), client, "http://user-api/", map[string]string{"X-Env": "staging"})
		if err != nil || !strings.HasPrefix(body, "staging-") {
			t.Fatalf("after rejection: %q, %v (old rules must keep serving)", body, err)
		}
	}

	// The document just rejected, delivered again (as a reconnect does),
	// is not rejected again: the next event is the new document's. (After
	// a revert it would be: TestBrokenDocumentAgainAfterRevert.)
	src.Set([]byte(bad))
	src.Set([]byte(strings.Replace(laneRules, "exact: staging", "exact: stg", 1)))
	ev = <-events
	if ev.Err != nil {
		t.Fatal(ev.Err)
	}
	body, _ := meshtest.Get(context.Background(), client, "http://user-api/", map[string]string{"X-Env": "stg"})
	if !strings.HasPrefix(body, "staging-") {
		t.Fatalf("new rules not applied: X-Env: stg went to %q", body)
	}
	select {
	case ev := <-events:
		t.Fatalf("unexpected extra event %+v: an unchanged document was re-applied", ev)
	default:
	}
}

func TestStartFailsWithoutValidRules(t *testing.T) {
	ctx := context.Background()
	_, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte("apiVersion: lightmesh/v2\n"))), mesh.WithStartTimeout(300*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Fatalf("invalid first document: err = %v", err)
	}
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err = mesh.New(ctx, mesh.WithRules(rules.NewFile(missing, 0)), mesh.WithStartTimeout(300*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: err = %v", err)
	}
	m, err := mesh.New(ctx, mesh.WithRules(rules.NewFile(missing, 0)), mesh.WithStartTimeout(100*time.Millisecond), mesh.WithStartEmpty())
	if err != nil {
		t.Fatalf("WithStartEmpty: %v", err)
	}
	// The file appears later and is applied.
	if err := os.WriteFile(missing, []byte(laneRules), 0o644); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 5*time.Second, "rules from the late file", func() bool { return m.Status().Rules.Version != "" })
	m.Close()
}

func TestFileSourceHotSwap(t *testing.T) {
	_, list := fleet(t)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte(laneRules), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newMesh(t, rules.NewFile(path, 10*time.Millisecond), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}))
	client := &http.Client{Transport: m.Transport(nil)}
	moved := strings.Replace(laneRules, "- destinations: [{subset: base}]", "- destinations: [{subset: staging}]", 1)
	if err := os.WriteFile(path, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 5*time.Second, "default route moved to staging", func() bool {
		body, _ := meshtest.Get(context.Background(), client, "http://user-api/", nil)
		return strings.HasPrefix(body, "staging-")
	})
}

// TestHotSwapUnderLoad swaps between two rule sets hundreds of times while
// goroutines send requests; every response must come from an instance one
// of the two rule sets allows for that request — never a mix.
func TestHotSwapUnderLoad(t *testing.T) {
	names := []string{"a1", "a2", "b1", "b2", "c1", "c2", "d1", "d2"}
	var list []discovery.Instance
	for _, n := range names {
		b := meshtest.NewBackend(t, n)
		list = append(list, discovery.Instance{Address: b.Addr(), Labels: map[string]string{"grp": n[:1]}})
	}
	doc := func(lane, rest string) string {
		return fmt.Sprintf(`apiVersion: lightmesh/v1
services:
  svc:
    subsets: {a: {labels: {grp: a}}, b: {labels: {grp: b}}, c: {labels: {grp: c}}, d: {labels: {grp: d}}}
    routes:
      - match: {headers: {x-lane: {exact: blue}}}
        destinations: [{subset: %s}]
      - destinations: [{subset: %s}]
`, lane, rest)
	}
	// Old rules send blue to a and the rest to b; new rules send blue to c
	// and the rest to d. A mix would send blue to b or d, or the rest to a
	// or c.
	docs := []string{doc("a", "b"), doc("c", "d")}
	allowed := map[bool]string{true: "ac", false: "bd"}

	src := rules.NewMemory([]byte(docs[0]))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": list}))
	client := &http.Client{Transport: m.Transport(nil)}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var sent, bad atomic.Int64
	var firstBad atomic.Value
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				blue := (g+i)%2 == 0
				h := map[string]string{}
				if blue {
					h["X-Lane"] = "blue"
				}
				body, err := meshtest.Get(ctx, client, "http://svc/", h)
				if ctx.Err() != nil {
					return
				}
				sent.Add(1)
				if err != nil || !strings.Contains(allowed[blue], body[:1]) {
					bad.Add(1)
					firstBad.CompareAndSwap(nil, fmt.Sprintf("blue=%v got %q err=%v", blue, body, err))
				}
			}
		}()
	}
	for i := range 400 {
		src.Set([]byte(docs[(i+1)%2]))
		time.Sleep(500 * time.Microsecond)
	}
	cancel()
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d responses broke both rule sets; first: %v", bad.Load(), sent.Load(), firstBad.Load())
	}
	if sent.Load() < 100 {
		t.Fatalf("only %d requests completed during the swaps", sent.Load())
	}
}

// TestRequestIDFromHandWrittenMiddleware: a service's own middleware that
// sets X-Trace-ID on each request it receives, outside the mesh Handler,
// keeps working: the id reaches the next service under X-Trace-ID (and
// X-Request-Id), across a second hop too, without the handlers copying it.
func TestRequestIDFromHandWrittenMiddleware(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	var hop2 *httptest.Server
	instances := func() map[string][]discovery.Instance {
		return map[string][]discovery.Instance{
			"user-api":  {{Address: strings.TrimPrefix(backend.URL, "http://")}},
			"order-api": {{Address: strings.TrimPrefix(hop2.URL, "http://")}},
		}
	}
	doc := "apiVersion: lightmesh/v1\nservices:\n  user-api: {}\n  order-api: {}\n"
	static := discovery.NewStatic(nil)
	m := newMesh(t, rules.NewMemory([]byte(doc)), static)
	client := &http.Client{Transport: m.Transport(nil)}
	forward := func(target string) http.Handler {
		return m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := meshtest.Get(r.Context(), client, target, nil)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			io.WriteString(w, body)
		}))
	}
	// The middleware: an id per request unless the caller sent one.
	var n atomic.Int64
	traceID := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Trace-ID") == "" {
				r.Header.Set("X-Trace-ID", fmt.Sprintf("mw-%d", n.Add(1)))
			}
			next.ServeHTTP(w, r)
		})
	}
	hop2 = httptest.NewServer(traceID(forward("http://user-api/")))
	defer hop2.Close()
	front := httptest.NewServer(traceID(forward("http://order-api/")))
	defer front.Close()
	for name, list := range instances() {
		static.Set(name, list)
	}
	meshtest.WaitFor(t, 5*time.Second, "instances", func() bool { return len(m.Table().Instances("order-api", "")) == 1 })

	if _, err := meshtest.Get(context.Background(), http.DefaultClient, front.URL, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := meshtest.Get(context.Background(), http.DefaultClient, front.URL, map[string]string{"X-Trace-ID": "caller-9"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("backend saw %d requests, want 2", len(seen))
	}
	for i, want := range []string{"mw-1", "caller-9"} {
		if got := seen[i].Get("X-Trace-Id"); got != want {
			t.Errorf("request %d: backend saw X-Trace-Id %q, want %q (set at the front, two hops away)", i, got, want)
		}
		if got := seen[i].Get("X-Request-Id"); got != want {
			t.Errorf("request %d: backend saw X-Request-Id %q, want %q", i, got, want)
		}
	}
}
