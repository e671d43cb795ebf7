package router

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
)

// TestExplainAgreesWithRoute: for many requests over documents with
// header, path and method conditions, prefix and exact lanes, splits and
// fallbacks, the route, subset and instance Explain names are those the
// next Route call takes, with and without an accept filter, and Explain
// leaves the rotation as it found it.
func TestExplainAgreesWithRoute(t *testing.T) {
	docs := []string{benchDocument(), benchDocumentWith("prefix"), routesDocument(12, true), `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
      empty:   {labels: {env: nowhere}}
    routes:
      - name: posts
        match: {methods: [POST], path: {regex: "/v[0-9]+/posts"}}
        destinations: [{subset: base, weight: 3}, {subset: staging, weight: 1}]
      - name: tenant
        match: {headers: {x-tenant: {present: true}, x-env: {present: false}}}
        destinations: [{subset: empty}]
        fallback: staging
      - name: nowhere
        match: {headers: {x-env: {exact: nowhere}}}
        destinations: [{subset: empty}]
      - destinations: [{subset: base}, {subset: staging}]
        fallback: base
`}
	rng := rand.New(rand.NewPCG(1, 2))
	envs := []string{"", "staging", "lane-4", "lane-7", "nowhere", "stagingX"}
	paths := []string{"/", "/v1/users", "/v60/x", "/v3/posts", "/v3/posts/1"}
	for d, doc := range docs {
		rules, err := Load([]byte(doc))
		if err != nil {
			t.Fatalf("doc %d: %v", d, err)
		}
		table := NewTable(rules, map[string][]discovery.Instance{"user-api": benchInstances(7)})
		for i := range 400 {
			req := &Request{Method: []string{"GET", "POST"}[rng.IntN(2)], Path: paths[rng.IntN(len(paths))], Header: http.Header{}}
			if env := envs[rng.IntN(len(envs))]; env != "" {
				req.Header.Set("X-Env", env)
			}
			if rng.IntN(3) == 0 {
				req.Header.Set("X-Tenant", "t1")
			}
			var accept func(*discovery.Instance) bool
			if i%2 == 1 {
				banned := fmt.Sprintf("10.0.0.%d:8080", rng.IntN(7))
				accept = func(in *discovery.Instance) bool { return in.Address != banned }
			}
			e := table.Explain("user-api", req, accept)
			if again := table.Explain("user-api", req, accept); again.Instance != e.Instance || again.Route != e.Route {
				t.Fatalf("doc %d request %d: a second Explain differs (%s %s vs %s %s): Explain moved a rotation", d, i, e.Route, e.Instance, again.Route, again.Instance)
			}
			res, err := table.Route("user-api", req, accept)
			got := ""
			if res.Instance != nil {
				got = res.Instance.Address
			}
			if e.Route != res.Route || e.RouteIndex != res.RouteIndex || e.Instance != got || e.FallbackUsed != res.Fallback || (e.Err() == nil) != (err == nil) {
				t.Fatalf("doc %d request %+v: Explain says route %q (%d) instance %q fallback %v err %v; Route took %q (%d) %q fallback %v err %v",
					d, req, e.Route, e.RouteIndex, e.Instance, e.FallbackUsed, e.Err(), res.Route, res.RouteIndex, got, res.Fallback, err)
			}
			if e.Chosen != nil && !e.FallbackUsed && err == nil && e.Chosen.Name != res.Subset {
				t.Fatalf("doc %d request %+v: Explain chose subset %s, Route %s", d, req, e.Chosen.Name, res.Subset)
			}
			if n := len(e.Routes); err == nil && (n != e.RouteIndex+1 || !e.Routes[n-1].Matched) {
				t.Fatalf("doc %d: trace has %d routes for a match at %d", d, n, e.RouteIndex)
			}
		}
	}
}

// TestExplainTrace: the trace says why each route did or did not match,
// counts the candidates at each step and says why the fallback was taken.
func TestExplainTrace(t *testing.T) {
	rules, err := Load([]byte(`apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: posts
        match: {methods: [POST], path: {prefix: /v1/}}
        destinations: [{subset: base}]
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging, weight: 90}, {subset: base, weight: 10}]
        fallback: base
`))
	if err != nil {
		t.Fatal(err)
	}
	list := []discovery.Instance{
		{Address: "10.0.0.1:80", Labels: map[string]string{"env": "base"}},
		{Address: "10.0.0.2:80", Labels: map[string]string{"env": "staging"}},
		{Address: "10.0.0.3:80", Labels: map[string]string{"env": "staging"}, Unhealthy: true},
	}
	table := NewTable(rules, map[string][]discovery.Instance{"user-api": list})
	ejected := func(in *discovery.Instance) bool { return in.Address != "10.0.0.2:80" }
	e := table.Explain("user-api", &Request{Method: "GET", Path: "/v1/users", Header: http.Header{"X-Env": {"staging"}}}, ejected)

	if len(e.Routes) != 2 || e.Routes[0].Matched || !e.Routes[1].Matched {
		t.Fatalf("routes = %+v", e.Routes)
	}
	c := e.Routes[0].Conditions
	if len(c) != 2 || c[0].Field != "method" || c[0].Matched || c[0].Got != "GET" || c[1].Field != "path" || !c[1].Matched || c[1].Want != `prefix "/v1/"` {
		t.Errorf("posts conditions = %+v", c)
	}
	if h := e.Routes[1].Conditions; len(h) != 1 || h[0].Field != "header x-env" || h[0].Got != "staging" || !h[0].Matched {
		t.Errorf("staging-lane conditions = %+v", h)
	}
	if len(e.Split) != 2 || e.Split[0].Subset != "staging" || e.Split[0].Share != 0.9 {
		t.Errorf("split = %+v", e.Split)
	}
	if ch := e.Chosen; ch == nil || ch.Name != "staging" || ch.Matching != 2 || ch.Healthy != 1 || ch.Available != 0 {
		t.Errorf("chosen = %+v, want staging: 2 matching, 1 healthy, 0 available", ch)
	}
	if !e.FallbackUsed || e.Fallback.Name != "base" || e.Instance != "10.0.0.1:80" || !strings.Contains(e.Why, `"staging" has no available instance`) {
		t.Errorf("fallback = %+v used %v, instance %s, why %q", e.Fallback, e.FallbackUsed, e.Instance, e.Why)
	}

	if e := table.Explain("user-api", &Request{Method: "GET", Path: "/"}, nil); e.Error == "" || e.Err() == nil || len(e.Routes) != 2 {
		t.Errorf("no match: %+v", e)
	}
	if e := table.Explain("nobody", nil, nil); e.Known || e.Err() != ErrUnknownService {
		t.Errorf("unknown service: %+v", e)
	}
}
