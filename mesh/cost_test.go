package mesh_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/floor"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// recordRT answers every request in process, like cannedRT, and keeps the
// header of the last request it was given.
type recordRT struct{ header http.Header }

func (r *recordRT) RoundTrip(req *http.Request) (*http.Response, error) {
	r.header = req.Header
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// TestRoutingCallCost: a routed call that the mesh adds no header to
// (no lane header, no lane or trace in its context) costs one allocation of the SDK's
// own over the base RoundTripper's, and its header goes out as the
// caller wrote it, without the caller's request being changed.
func TestRoutingCallCost(t *testing.T) {
	inst := []discovery.Instance{{Address: "10.0.0.1:80", Labels: map[string]string{"env": "base"}}}
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(benchRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": inst})))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := &recordRT{}
	rt := m.Transport(base)
	req, _ := http.NewRequest(http.MethodGet, "http://svc/v1", nil)
	req.Header.Set("Accept", "text/plain")
	call := func(rt http.RoundTripper) func() {
		return func() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	call(rt)()
	if got := base.header.Get("Accept"); got != "text/plain" || len(base.header) != 1 {
		t.Fatalf("sent header %v, want only Accept: text/plain", base.header)
	}
	if req.URL.Host != "svc" || len(req.Header) != 1 || req.Host != "svc" {
		t.Fatalf("caller's request changed: host %q, Host %q, header %v", req.URL.Host, req.Host, req.Header)
	}
	bare := testing.AllocsPerRun(200, call(base))
	meshed := testing.AllocsPerRun(200, call(rt))
	if meshed-bare > 1 {
		t.Fatalf("a routed call allocates %.0f times over the base RoundTripper's %.0f, want at most 1", meshed-bare, bare)
	}
}

// countRT answers in process and counts the requests per instance.
type countRT struct {
	mu   sync.Mutex
	hits map[string]int
}

func (c *countRT) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.hits[req.URL.Host]++
	c.mu.Unlock()
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Header: http.Header{}, Request: req, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// TestSplitRouteSeries: a route that splits its calls over two subsets
// records each call under the subset it went to, although the route
// keeps the series of its first destination at hand.
func TestSplitRouteSeries(t *testing.T) {
	doc := `apiVersion: lightmesh/v1
services:
  svc:
    subsets:
      a: {labels: {pool: a}}
      b: {labels: {pool: b}}
    timeout: 2s
    routes:
      - destinations: [{subset: a, weight: 50}, {subset: b, weight: 50}]
`
	reg := prometheus.NewRegistry()
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(doc))),
		mesh.WithRegisterer(reg),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": {
			{Address: "10.0.0.1:80", Labels: map[string]string{"pool": "a"}},
			{Address: "10.0.0.2:80", Labels: map[string]string{"pool": "b"}},
		}})))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := &countRT{hits: map[string]int{}}
	client := &http.Client{Transport: m.Transport(base)}
	for range 40 {
		resp, err := client.Get("http://svc/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for subset, addr := range map[string]string{"a": "10.0.0.1:80", "b": "10.0.0.2:80"} {
		got := metricValue(t, reg, "lightmesh_requests_total", map[string]string{"direction": "outbound", "destination_subset": subset, "code": "200"})
		if base.hits[addr] == 0 || got != float64(base.hits[addr]) {
			t.Errorf("subset %s: %v requests recorded, %d reached %s", subset, got, base.hits[addr], addr)
		}
	}
}

// TestLaneCallHeaderCost: a call from a handler, carrying a typical
// caller's header (five headers of its own and the lane's) inside a
// sampled trace, costs the mesh three allocations over the base
// RoundTripper's, as a call with the lane header alone does: the request's
// storage and one small header map (map and group) that holds the caller's
// headers with the traceparent and baggage the mesh adds. The header that
// goes out carries all of them and the caller's request is left as it was.
func TestLaneCallHeaderCost(t *testing.T) {
	inst := []discovery.Instance{{Address: "10.0.0.1:80", Labels: map[string]string{"env": "staging"}}}
	m, err := mesh.New(context.Background(),
		mesh.WithRules(rules.NewMemory([]byte(benchRules))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": inst})),
		mesh.WithTrace(trace.WithMode(trace.ModePropagate)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	base := &recordRT{}
	rt := m.Transport(base)
	newReq := func(extra ...string) *http.Request {
		req, _ := http.NewRequestWithContext(floor.SampledParent(), http.MethodGet, "http://svc/v1", nil)
		req.Header.Set("X-Env", "staging")
		for _, k := range extra {
			req.Header.Set(k, "v-"+k)
		}
		return req
	}
	call := func(rt http.RoundTripper, req *http.Request) func() {
		return func() {
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	many := newReq("Accept", "Accept-Encoding", "User-Agent", "Content-Type", "Authorization")
	call(rt, many)()
	if len(base.header) != 8 || base.header.Get("Traceparent") == "" || base.header.Get("Baggage") != "lightmesh.lane.x-env=staging" || base.header.Get("User-Agent") != "v-User-Agent" {
		t.Fatalf("sent header %v, want the caller's six, traceparent and the lane's baggage", base.header)
	}
	if len(many.Header) != 6 {
		t.Fatalf("caller's header changed: %v", many.Header)
	}
	bare := testing.AllocsPerRun(200, call(base, many))
	for _, req := range []*http.Request{newReq(), many} {
		if got := testing.AllocsPerRun(200, call(rt, req)) - bare; got > 3 {
			t.Errorf("a lane call with %d caller headers allocates %.0f times over the base RoundTripper's %.0f, want at most 3", len(req.Header), got, bare)
		}
	}
}
