package mesh_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// laneFleet starts base-1, base-2, feat1-1 (env=feat1), feat2-1
// (env=feat2) and canary-1 (env=base, track=canary) for service svc.
func laneFleet(t *testing.T) []discovery.Instance {
	t.Helper()
	_, list := meshtest.Fleet(t, "base-1", "base-2", "feat1-1", "feat2-1")
	canary := meshtest.NewBackend(t, "canary-1")
	in := canary.Instance("base")
	in.Labels["track"] = "canary"
	return append(list, in)
}

// Lanes combined with each other kind of rule, through the HTTP
// transport: the lane's instance when it has one, else what the rest of
// the rules say; never another lane's instance, and base traffic never
// on a lane instance.
func TestLanesCombineWithRoutes(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  string // the service's rules, below "  svc:\n"
		env  string
		want []string
	}{
		{"no routes, lane with instance", "    lanes: {label: env, base: {labels: {env: base}}}\n", "feat1", []string{"feat1-1"}},
		{"no routes, lane without instance goes to base", "    lanes: {label: env, base: {labels: {env: base}}}\n", "feat9", []string{"base-1", "base-2", "canary-1"}},
		{"no routes, no lane goes to base only", "    lanes: {label: env, base: {labels: {env: base}}}\n", "", []string{"base-1", "base-2", "canary-1"}},
		{"default base: instances without the label", "    lanes: {label: track}\n", "", []string{"base-1", "base-2", "feat1-1", "feat2-1"}},
		{"default base, lane canary", "    lanes: {label: track}\n", "canary", []string{"canary-1"}},
		{"weighted split: lane wins, split for the rest", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {all: {labels: {}}, canary: {labels: {track: canary}}}\n" +
			"    routes: [{destinations: [{subset: all, weight: 50}, {subset: canary, weight: 50}]}]\n", "feat2", []string{"feat2-1"}},
		{"weighted split never reaches lane instances", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {all: {labels: {}}, canary: {labels: {track: canary}}}\n" +
			"    routes: [{destinations: [{subset: all, weight: 50}, {subset: canary, weight: 50}]}]\n", "", []string{"base-1", "base-2", "canary-1"}},
		{"lane without instance takes the route's subset", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {canary: {labels: {track: canary}}}\n" +
			"    routes: [{destinations: [{subset: canary}]}]\n", "feat9", []string{"canary-1"}},
		{"route's fallback after the lane", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {gone: {labels: {track: gone}}, base: {labels: {env: base}}}\n" +
			"    routes: [{destinations: [{subset: gone}], fallback: base}]\n", "feat9", []string{"base-1", "base-2", "canary-1"}},
		{"static subset naming the lane label keeps its lane instances", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {f2: {labels: {env: feat2}}}\n" +
			"    routes: [{destinations: [{subset: f2}]}]\n", "", []string{"feat2-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: lightmesh/v1\nservices:\n  svc:\n" + tc.svc
			if _, err := router.Load([]byte(doc)); err != nil {
				t.Fatal(err)
			}
			m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": laneFleet(t)}))
			c := &http.Client{Transport: m.Transport(nil)}
			meshtest.ExpectOnly(t, c, "svc", tc.env, 40, tc.want...)
		})
	}
}

// A lane instance is found again as soon as discovery reports it and
// left as soon as discovery removes it; the fallback counter counts the
// calls that carried the lane and went to base.
func TestLaneFollowsInstances(t *testing.T) {
	list := laneFleet(t)
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": list[:2]})
	doc := "apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env, base: {labels: {env: base}}}\n"
	m := newMesh(t, rules.NewMemory([]byte(doc)), static, mesh.WithServices("svc"))
	c := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, c, "svc", "feat1", 10, "base-1", "base-2")
	static.Set("svc", list[:3])
	meshtest.WaitFor(t, 5*time.Second, "feat1-1 known", func() bool { return len(m.Table().Instances("svc", "")) == 3 })
	meshtest.ExpectOnly(t, c, "svc", "feat1", 10, "feat1-1")
	meshtest.ExpectOnly(t, c, "svc", "", 10, "base-1", "base-2")
	static.Set("svc", list[:2])
	meshtest.WaitFor(t, 5*time.Second, "feat1-1 gone", func() bool { return len(m.Table().Instances("svc", "")) == 2 })
	meshtest.ExpectOnly(t, c, "svc", "feat1", 10, "base-1", "base-2")
}

// laneEdgeDoc puts calls entering edge into a lane by header, cookie,
// query and a 5% share of user ids; svc has lane instances feat1 and
// feat2.
const laneEdgeDoc = `apiVersion: lightmesh/v1
defaults:
  lanes: {label: env, base: {labels: {env: base}}}
services:
  edge:
    lanes:
      label: env
      base: {labels: {env: base}}
      entry:
        - header: x-feature
        - cookie: lane
        - query: lane
        - {header: x-user-id, percent: 5, lane: feat2}
`

// edge starts the edge service: its handler calls svc with its request's
// context and answers with svc's answer.
func edge(t *testing.T, opts ...mesh.Option) (*httptest.Server, *mesh.Mesh) {
	t.Helper()
	m := newMesh(t, rules.NewMemory([]byte(laneEdgeDoc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": laneFleet(t)}),
		append([]mesh.Option{mesh.WithLocalService("edge"), mesh.WithServices("svc")}, opts...)...)
	c := &http.Client{Transport: m.Transport(nil)}
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := meshtest.Get(r.Context(), c, "http://svc/", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, body)
	})))
	t.Cleanup(srv.Close)
	return srv, m
}

// Calls entering the edge go into a lane by its entry rules: by header,
// cookie and query value, and 5% of user ids (by a stable hash: within
// one point over 20,000 users, each user always on the same side).
func TestLaneEntryAtTheEdge(t *testing.T) {
	srv, m := edge(t)
	get := func(path string, h map[string]string) string {
		t.Helper()
		body, err := meshtest.Get(context.Background(), http.DefaultClient, srv.URL+path, h)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	for _, tc := range []struct {
		path   string
		header map[string]string
		want   string
	}{
		{"/", map[string]string{"X-Feature": "feat1"}, "feat1-1"},
		{"/", map[string]string{"Cookie": "a=b; lane=feat1"}, "feat1-1"},
		{"/?lane=feat1", nil, "feat1-1"},
		{"/", map[string]string{"X-Env": "feat1", "X-Feature": "feat2"}, "feat1-1"}, // a lane already carried is kept
	} {
		for range 4 {
			if got := get(tc.path, tc.header); got != tc.want {
				t.Fatalf("%s %v: %s, want %s", tc.path, tc.header, got, tc.want)
			}
		}
	}
	for range 6 {
		if got := get("/", nil); !strings.HasPrefix(got, "base-") && got != "canary-1" {
			t.Fatalf("no entry: %s, want base", got)
		}
	}

	// The share, computed by the rules the edge runs, over 20,000 users;
	// then a sample of users through the edge, each twice.
	rs := m.Table().Rules()
	in := 0
	for u := range 20000 {
		_, lane, ok := rs.EntryLane("edge", &router.Request{Header: http.Header{"X-User-Id": {fmt.Sprintf("user-%d", u)}}})
		if ok && lane == "feat2" {
			in++
		}
	}
	if share := float64(in) / 200; share < 4 || share > 6 {
		t.Fatalf("%.2f%% of users in the lane, want 5%% ± 1", share)
	}
	for u := range 60 {
		id := fmt.Sprintf("user-%d", u)
		_, _, inLane := rs.EntryLane("edge", &router.Request{Header: http.Header{"X-User-Id": {id}}})
		for range 2 {
			got := get("/", map[string]string{"X-User-Id": id})
			if (got == "feat2-1") != inLane {
				t.Fatalf("user %s reached %s, in lane: %v", id, got, inLane)
			}
		}
	}
}

// With WithoutInboundLanes a stranger's X-Env is ignored at the edge, and
// the edge's entry rules still put calls into lanes.
func TestLaneEntryWithoutInboundLanes(t *testing.T) {
	srv, _ := edge(t, mesh.WithTrace(trace.WithoutInboundLanes()))
	for _, tc := range []struct {
		header map[string]string
		want   []string
	}{
		{map[string]string{"X-Env": "feat1"}, []string{"base-1", "base-2", "canary-1"}},
		{map[string]string{"Cookie": "lane=feat1"}, []string{"feat1-1"}},
	} {
		for range 4 {
			got, err := meshtest.Get(context.Background(), http.DefaultClient, srv.URL, tc.header)
			if err != nil || !slices.Contains(tc.want, got) {
				t.Fatalf("%v: %s %v, want one of %v", tc.header, got, err, tc.want)
			}
		}
	}
}

// Operators see lanes: Status lists each service's lanes with instance
// counts, Explain shows the lane decision, and calls that fell back from
// their lane to base are counted per service (no label per lane value).
func TestLanesSeen(t *testing.T) {
	reg := prometheus.NewRegistry()
	doc := "apiVersion: lightmesh/v1\nservices:\n  svc:\n    lanes: {label: env, base: {labels: {env: base}}}\n"
	m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": laneFleet(t)}), mesh.WithRegisterer(reg))
	var got *mesh.LanesStatus
	for _, s := range m.Status().Services {
		if s.Name == "svc" {
			got = s.Lanes
		}
	}
	if got == nil || got.Label != "env" || fmt.Sprint(got.Lanes) != "[{feat1 1} {feat2 1}]" {
		t.Fatalf("status lanes of svc: %+v, want env: feat1 1, feat2 1", got)
	}

	e := m.Explain(mesh.ExplainRequest{Service: "svc", Path: "/", Header: http.Header{"X-Env": {"feat9"}}})
	if e.Lane == nil || e.Lane.Used || e.Lane.Decision != "lane feat9: no instance of svc → base; lane kept for the next hop" {
		t.Fatalf("explain lane feat9: %+v", e.Lane)
	}
	e = m.Explain(mesh.ExplainRequest{Service: "svc", Path: "/", Header: http.Header{"X-Env": {"feat1"}}})
	var text strings.Builder
	e.WriteText(&text)
	if e.Lane == nil || !e.Lane.Used || e.Instance != m.Table().Instances("svc", "")[2].Address || !strings.Contains(text.String(), "lane feat1: 1 instance(s) of svc with env=feat1") {
		t.Fatalf("explain lane feat1: %+v\n%s", e.Lane, text.String())
	}

	c := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, c, "svc", "feat9", 3, "base-1", "base-2", "canary-1")
	meshtest.ExpectOnly(t, c, "svc", "feat1", 2, "feat1-1")
	meshtest.ExpectOnly(t, c, "svc", "", 2, "base-1", "base-2", "canary-1")
	if n := meshtest.Metric(t, reg, "lightmesh_lane_fallbacks_total", map[string]string{"destination_service": "svc"}); n != 3 {
		t.Fatalf("lane fallbacks of svc: %v, want 3 (the feat9 calls only)", n)
	}
	if n := meshtest.Metric(t, reg, "lightmesh_requests_total", map[string]string{"destination_service": "svc", "destination_subset": router.LaneSubset, "code": "200"}); n != 2 {
		t.Fatalf("requests served in their lane: %v, want 2", n)
	}
}

// A lanes rule whose header is not one of the mesh's lane keys is
// applied with a warning: its lane would not be read back at the next
// hop. With the header among the lane keys, no warning.
func TestLaneHeaderNotALaneKeyWarns(t *testing.T) {
	doc := "apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env, header: x-lane}\n"
	for _, tc := range []struct {
		opts []mesh.Option
		want int
	}{
		{nil, 1},
		{[]mesh.Option{mesh.WithTrace(trace.WithLaneKeys("x-env", "x-lane"))}, 0},
	} {
		var logs meshtest.LogBuffer
		newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(nil), append(tc.opts, mesh.WithLogger(logs.Logger()))...)
		if n := logs.Count("is not a lane key"); n != tc.want {
			t.Errorf("with %d options: %d warnings, want %d\n%s", len(tc.opts), n, tc.want, logs.String())
		}
	}
}
