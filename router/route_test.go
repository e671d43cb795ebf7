package router

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
)

func mustLoad(t testing.TB, doc string) *Rules {
	t.Helper()
	rules, err := Load([]byte(doc))
	if err != nil {
		t.Fatalf("Load: %v\n%s", err, doc)
	}
	return rules
}

// inst returns a healthy instance with labels given as "k=v" pairs.
func inst(addr string, labels ...string) discovery.Instance {
	in := discovery.Instance{Address: addr, Labels: map[string]string{}}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		in.Labels[k] = v
	}
	return in
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// TestRouteMatch checks one route's match against requests: Route either
// takes the route or reports ErrNoRoute (there is no catch-all).
func TestRouteMatch(t *testing.T) {
	tests := []struct {
		name  string
		match string // YAML flow mapping for route.match
		req   *Request
		want  bool
	}{
		{"exact/equal", `{headers: {x-env: {exact: staging}}}`, &Request{Header: header("X-Env", "staging")}, true},
		{"exact/different", `{headers: {x-env: {exact: staging}}}`, &Request{Header: header("X-Env", "base")}, false},
		{"exact/is case-sensitive on the value", `{headers: {x-env: {exact: staging}}}`, &Request{Header: header("X-Env", "Staging")}, false},
		{"exact/absent", `{headers: {x-env: {exact: staging}}}`, &Request{Header: header("Accept", "*/*")}, false},
		{"exact/first value only", `{headers: {x-env: {exact: staging}}}`, &Request{Header: header("X-Env", "base", "X-Env", "staging")}, false},

		// A header present with an empty value.
		{"empty value/exact empty matches", `{headers: {x-env: {exact: ""}}}`, &Request{Header: header("X-Env", "")}, true},
		{"empty value/exact empty needs the header", `{headers: {x-env: {exact: ""}}}`, &Request{Header: http.Header{}}, false},
		{"empty value/exact empty, nil header", `{headers: {x-env: {exact: ""}}}`, &Request{}, false},
		{"empty value/empty list is absent", `{headers: {x-env: {exact: ""}}}`, &Request{Header: http.Header{"X-Env": {}}}, false},
		{"empty value/present true matches", `{headers: {x-env: {present: true}}}`, &Request{Header: header("X-Env", "")}, true},
		{"empty value/present true, absent", `{headers: {x-env: {present: true}}}`, &Request{Header: header("X-Other", "1")}, false},
		{"empty value/present false, absent", `{headers: {x-env: {present: false}}}`, &Request{Header: header("X-Other", "1")}, true},
		{"empty value/present false, nil request headers", `{headers: {x-env: {present: false}}}`, &Request{}, true},
		{"empty value/present false, empty value", `{headers: {x-env: {present: false}}}`, &Request{Header: header("X-Env", "")}, false},
		{"empty value/exact non-empty", `{headers: {x-env: {exact: staging}}}`, &Request{Header: header("X-Env", "")}, false},
		{"empty value/empty prefix matches any value", `{headers: {x-env: {prefix: ""}}}`, &Request{Header: header("X-Env", "")}, true},
		{"empty value/empty prefix needs the header", `{headers: {x-env: {prefix: ""}}}`, &Request{}, false},

		// Header names are case-insensitive, in HTTP headers and gRPC metadata.
		{"name case/upper rule, canonical header", `{headers: {X-ENV: {exact: staging}}}`, &Request{Header: header("x-env", "staging")}, true},
		{"name case/upper rule, metadata", `{headers: {X-ENV: {exact: staging}}}`, &Request{Metadata: map[string][]string{"x-env": {"staging"}}}, true},
		{"name case/lower rule, metadata", `{headers: {x-env: {exact: staging}}}`, &Request{Metadata: map[string][]string{"x-env": {"staging"}}}, true},
		{"name case/mixed rule, header", `{headers: {x-EnV: {exact: staging}}}`, &Request{Header: header("X-ENV", "staging")}, true},
		{"name case/metadata mismatch", `{headers: {x-env: {exact: staging}}}`, &Request{Metadata: map[string][]string{"x-env": {"base"}}}, false},
		{"name case/metadata empty value", `{headers: {x-env: {exact: ""}}}`, &Request{Metadata: map[string][]string{"x-env": {""}}}, true},
		{"name case/metadata present", `{headers: {x-env: {present: true}}}`, &Request{Metadata: map[string][]string{"x-env": {"x"}}}, true},
		{"name case/metadata absent", `{headers: {x-env: {present: false}}}`, &Request{Metadata: map[string][]string{"x-other": {"x"}}}, true},
		{"name case/HTTP header wins over metadata", `{headers: {x-env: {exact: staging}}}`, &Request{Header: header("X-Env", "base"), Metadata: map[string][]string{"x-env": {"staging"}}}, false},
		{"name case/underscore name", `{headers: {x_lane: {exact: a}}}`, &Request{Header: header("X_lane", "a")}, true},

		// Regexes are anchored at both ends.
		{"regex/stag does not match staging", `{headers: {x-env: {regex: stag}}}`, &Request{Header: header("X-Env", "staging")}, false},
		{"regex/stag matches stag", `{headers: {x-env: {regex: stag}}}`, &Request{Header: header("X-Env", "stag")}, true},
		{"regex/stag.* matches staging", `{headers: {x-env: {regex: stag.*}}}`, &Request{Header: header("X-Env", "staging")}, true},
		{"regex/not a suffix match", `{headers: {x-env: {regex: ing}}}`, &Request{Header: header("X-Env", "staging")}, false},
		{"regex/alternation anchored, left", `{headers: {x-env: {regex: "stag|prod"}}}`, &Request{Header: header("X-Env", "staging")}, false},
		{"regex/alternation anchored, right", `{headers: {x-env: {regex: "stag|prod"}}}`, &Request{Header: header("X-Env", "preprod")}, false},
		{"regex/alternation matches", `{headers: {x-env: {regex: "stag|prod"}}}`, &Request{Header: header("X-Env", "prod")}, true},
		{"regex/no multi-line escape", `{headers: {x-env: {regex: "(?m)a$"}}}`, &Request{Header: header("X-Env", "a\nb")}, false},
		{"regex/absent header", `{headers: {x-env: {regex: ".*"}}}`, &Request{}, false},
		{"regex/.* matches empty", `{headers: {x-env: {regex: ".*"}}}`, &Request{Header: header("X-Env", "")}, true},

		{"prefix/matches", `{headers: {x-env: {prefix: stag}}}`, &Request{Header: header("X-Env", "staging")}, true},
		{"prefix/whole value", `{headers: {x-env: {prefix: staging}}}`, &Request{Header: header("X-Env", "staging")}, true},
		{"prefix/longer than value", `{headers: {x-env: {prefix: staging-2}}}`, &Request{Header: header("X-Env", "staging")}, false},

		{"path/exact", `{path: {exact: /v1/users}}`, &Request{Path: "/v1/users"}, true},
		{"path/exact trailing slash", `{path: {exact: /v1/users}}`, &Request{Path: "/v1/users/"}, false},
		{"path/prefix", `{path: {prefix: /v1/}}`, &Request{Path: "/v1/users/42"}, true},
		{"path/prefix other", `{path: {prefix: /v1/}}`, &Request{Path: "/v2/users"}, false},
		{"path/regex", `{path: {regex: "/v[0-9]+/users/[0-9]+"}}`, &Request{Path: "/v12/users/42"}, true},
		{"path/regex anchored", `{path: {regex: "/v[0-9]+/users/[0-9]+"}}`, &Request{Path: "/v12/users/42/orders"}, false},
		{"path/empty path, exact empty", `{path: {exact: ""}}`, &Request{}, true},
		{"path/gRPC full method prefix", `{path: {prefix: /user.v1.UserService/}}`, &Request{Path: "/user.v1.UserService/Get"}, true},

		{"methods/listed", `{methods: [GET, POST]}`, &Request{Method: "POST"}, true},
		{"methods/not listed", `{methods: [GET, POST]}`, &Request{Method: "DELETE"}, false},
		{"methods/rule case-insensitive", `{methods: [get]}`, &Request{Method: "GET"}, true},
		{"methods/empty method", `{methods: [GET]}`, &Request{}, false},

		{"all/every condition met", `{methods: [GET], path: {prefix: /v1/}, headers: {x-env: {exact: staging}, x-user: {present: true}}}`,
			&Request{Method: "GET", Path: "/v1/a", Header: header("X-Env", "staging", "X-User", "7")}, true},
		{"all/one header fails", `{methods: [GET], path: {prefix: /v1/}, headers: {x-env: {exact: staging}, x-user: {present: true}}}`,
			&Request{Method: "GET", Path: "/v1/a", Header: header("X-Env", "staging")}, false},
		{"all/method fails", `{methods: [GET], path: {prefix: /v1/}, headers: {x-env: {exact: staging}}}`,
			&Request{Method: "PUT", Path: "/v1/a", Header: header("X-Env", "staging")}, false},
		{"all/path fails", `{methods: [GET], path: {prefix: /v1/}, headers: {x-env: {exact: staging}}}`,
			&Request{Method: "GET", Path: "/v2/a", Header: header("X-Env", "staging")}, false},

		// A regex condition sees values up to MaxRegexInputLen bytes; a
		// longer one, from anyone, costs no matching and does not match.
		{"regex/value at the input limit", `{headers: {x-user: {regex: "a+"}}}`, &Request{Header: header("X-User", strings.Repeat("a", MaxRegexInputLen))}, true},
		{"regex/value over the input limit", `{headers: {x-user: {regex: "a+"}}}`, &Request{Header: header("X-User", strings.Repeat("a", MaxRegexInputLen+1))}, false},
		{"regex/path over the input limit", `{path: {regex: "/a+"}}`, &Request{Path: "/" + strings.Repeat("a", MaxRegexInputLen)}, false},
		{"prefix/long value still matches", `{headers: {x-user: {prefix: "a"}}}`, &Request{Header: header("X-User", strings.Repeat("a", 1<<20))}, true},

		{"empty match/matches everything", `{}`, &Request{}, true},
		{"nil request/catch-all", `{}`, nil, true},
		{"nil request/header condition", `{headers: {x-env: {exact: ""}}}`, nil, false},
		{"nil request/absent condition", `{headers: {x-env: {present: false}}}`, nil, true},
		{"nil request/path and method", `{methods: [GET], path: {prefix: /}}`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := fmt.Sprintf(`apiVersion: lightmesh/v1
services:
  svc:
    subsets: {a: {labels: {env: a}}}
    routes:
      - name: r
        match: %s
        destinations: [{subset: a}]
`, tt.match)
			table := NewTable(mustLoad(t, doc), map[string][]discovery.Instance{"svc": {inst("10.0.0.1:80", "env=a")}})
			res, err := table.Route("svc", tt.req, nil)
			if tt.want {
				if err != nil || res.Route != "r" || res.Subset != "a" || res.Instance == nil || res.Instance.Address != "10.0.0.1:80" {
					t.Fatalf("Route = %+v, %v; want route r to 10.0.0.1:80", res, err)
				}
				return
			}
			if !errors.Is(err, ErrNoRoute) {
				t.Fatalf("Route = %+v, %v; want ErrNoRoute", res, err)
			}
			var nre *NoRouteError
			if !errors.As(err, &nre) || nre.Service != "svc" {
				t.Fatalf("Route error %v: want *NoRouteError for svc", err)
			}
		})
	}
}

// TestRouteManyHeaders checks matching when a service tests more distinct
// headers than Route caches per call, in routes tried over and over.
func TestRouteManyHeaders(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  svc:\n    subsets: {a: {labels: {}}}\n    routes:\n")
	const n = 3 * headerCacheSize
	for i := range n {
		// Route i needs x-h<i> = v<i> and, for odd i, x-h<i-1> absent.
		extra := ""
		if i%2 == 1 {
			extra = fmt.Sprintf(", x-h%d: {present: false}", i-1)
		}
		fmt.Fprintf(&b, "      - {name: r%d, match: {headers: {x-h%d: {exact: v%d}%s}}, destinations: [{subset: a}]}\n", i, i, i, extra)
	}
	table := NewTable(mustLoad(t, b.String()), map[string][]discovery.Instance{"svc": {inst("10.0.0.1:80")}})
	for i := range n {
		for _, meta := range []bool{false, true} {
			req := &Request{Header: http.Header{}, Metadata: map[string][]string{}}
			for j := range i + 1 {
				// Every header up to i carries a wrong value, except i.
				name, v := fmt.Sprintf("x-h%d", j), "nope"
				if j == i {
					v = fmt.Sprintf("v%d", i)
				}
				if i%2 == 1 && j == i-1 {
					continue // keep it absent
				}
				if meta {
					req.Metadata[name] = []string{v}
				} else {
					req.Header.Set(name, v)
				}
			}
			res, err := table.Route("svc", req, nil)
			if want := fmt.Sprintf("r%d", i); err != nil || res.Route != want {
				t.Fatalf("metadata=%v: Route = %q, %v; want %s", meta, res.Route, err, want)
			}
		}
	}
}

const selectionDoc = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
      canary:  {labels: {env: canary}}
      empty:   {labels: {env: nowhere}}
      empty2:  {labels: {env: nowhere-either}}
    routes:
      - name: lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: to-empty-with-fallback
        match: {headers: {x-case: {exact: fallback}}}
        destinations: [{subset: empty}]
        fallback: base
      - name: to-empty-without-fallback
        match: {headers: {x-case: {exact: none}}}
        destinations: [{subset: empty}]
      - name: to-empty-with-empty-fallback
        match: {headers: {x-case: {exact: both-empty}}}
        destinations: [{subset: empty}]
        fallback: empty2
      - name: fallback-is-destination
        match: {headers: {x-case: {exact: self}}}
        destinations: [{subset: empty}]
        fallback: empty
      - name: first
        match: {headers: {x-case: {exact: order}}}
        destinations: [{subset: canary}]
      - name: second
        match: {headers: {x-case: {prefix: ord}}}
        destinations: [{subset: staging}]
      - name: zero-weight
        match: {headers: {x-case: {exact: zero}}}
        destinations: [{subset: base, weight: 0}, {subset: canary, weight: 3}, {subset: staging, weight: 0}]
      - name: equal-split
        match: {headers: {x-case: {exact: equal}}}
        destinations: [{subset: base}, {subset: canary}]
      - match: {headers: {x-case: {exact: unnamed}}}
        destinations: [{subset: base}]
      - name: canary-split
        destinations: [{subset: base, weight: 90}, {subset: canary, weight: 10}]
  no-catch-all:
    subsets: {base: {labels: {env: base}}}
    routes:
      - match: {path: {prefix: /v1/}}
        destinations: [{subset: base}]
  no-routes:
    subsets: {base: {labels: {env: base}}}
`

func selectionInstances() map[string][]discovery.Instance {
	return map[string][]discovery.Instance{
		"user-api": {
			inst("10.0.0.1:80", "env=base"),
			inst("10.0.0.2:80", "env=staging"),
			inst("10.0.0.3:80", "env=base"),
			inst("10.0.0.4:80", "env=canary"),
			{Address: "10.0.0.5:80", Labels: map[string]string{"env": "staging"}, Unhealthy: true},
			inst("10.0.0.6:80", "env=staging", "zone=b"),
		},
		"no-catch-all": {inst("10.0.1.1:80", "env=base")},
		"no-routes":    {inst("10.0.2.1:80", "env=base"), inst("10.0.2.2:80", "env=staging"), {Address: "10.0.2.3:80", Unhealthy: true}, inst("10.0.2.4:80")},
		"no-rules":     {inst("10.0.3.1:80"), {Address: "10.0.3.2:80", Unhealthy: true}, inst("10.0.3.3:80"), inst("10.0.3.4:80")},
	}
}

func caseReq(c string) *Request { return &Request{Header: header("X-Case", c)} }

// addrs routes n calls and returns the addresses picked.
func addrs(t *testing.T, table *Table, service string, req *Request, accept func(*discovery.Instance) bool, n int) []string {
	t.Helper()
	var got []string
	for range n {
		res, err := table.Route(service, req, accept)
		if err != nil {
			t.Fatalf("Route(%s): %v", service, err)
		}
		got = append(got, res.Instance.Address)
	}
	return got
}

func TestRouteSelection(t *testing.T) {
	rules := mustLoad(t, selectionDoc)

	t.Run("lane to its subset, round robin, unhealthy left out", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		req := &Request{Header: header("X-Env", "staging")}
		got := addrs(t, table, "user-api", req, nil, 4)
		want := []string{"10.0.0.2:80", "10.0.0.6:80", "10.0.0.2:80", "10.0.0.6:80"}
		if !slices.Equal(got, want) {
			t.Fatalf("picks = %v, want %v", got, want)
		}
		res, _ := table.Route("user-api", req, nil)
		if res.Service != "user-api" || res.Route != "lane" || res.Subset != "staging" || res.Fallback {
			t.Fatalf("Result = %+v", res)
		}
	})

	t.Run("empty subset with fallback", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		res, err := table.Route("user-api", caseReq("fallback"), nil)
		if err != nil || res.Subset != "base" || !res.Fallback || res.Route != "to-empty-with-fallback" || res.Instance.Labels["env"] != "base" {
			t.Fatalf("Route = %+v, %v; want base by fallback", res, err)
		}
	})

	t.Run("lane subset emptied, falls back", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		table = table.WithInstances("user-api", []discovery.Instance{inst("10.0.0.1:80", "env=base"), {Address: "10.0.0.2:80", Labels: map[string]string{"env": "staging"}, Unhealthy: true}})
		res, err := table.Route("user-api", &Request{Header: header("X-Env", "staging")}, nil)
		if err != nil || res.Subset != "base" || !res.Fallback || res.Instance.Address != "10.0.0.1:80" {
			t.Fatalf("Route = %+v, %v; want 10.0.0.1:80 by fallback", res, err)
		}
	})

	noInstance := []struct {
		name                    string
		req                     *Request
		subset, fallback, route string
	}{
		{"empty subset without fallback", caseReq("none"), "empty", "", "to-empty-without-fallback"},
		{"empty subset and empty fallback", caseReq("both-empty"), "empty", "empty2", "to-empty-with-empty-fallback"},
		{"fallback is the empty destination", caseReq("self"), "empty", "", "fallback-is-destination"},
	}
	for _, tt := range noInstance {
		t.Run(tt.name, func(t *testing.T) {
			table := NewTable(rules, selectionInstances())
			res, err := table.Route("user-api", tt.req, nil)
			if !errors.Is(err, ErrNoInstance) {
				t.Fatalf("Route = %+v, %v; want ErrNoInstance", res, err)
			}
			var nie *NoInstanceError
			if !errors.As(err, &nie) {
				t.Fatalf("error %T is not a *NoInstanceError", err)
			}
			if nie.Service != "user-api" || nie.Subset != tt.subset || nie.Fallback != tt.fallback {
				t.Fatalf("NoInstanceError = %+v, want subset %q fallback %q", nie, tt.subset, tt.fallback)
			}
			if res.Instance != nil || res.Route != tt.route || res.Subset != tt.subset {
				t.Fatalf("Result = %+v", res)
			}
			if errors.Is(err, ErrNoRoute) || errors.Is(err, ErrUnknownService) {
				t.Fatalf("error %v matches another sentinel", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, `"user-api"`) || !strings.Contains(msg, fmt.Sprintf("subset %q", tt.subset)) ||
				(tt.fallback != "") != strings.Contains(msg, "fallback") {
				t.Fatalf("message %q does not name service, subset and fallback", msg)
			}
		})
	}

	t.Run("first match wins", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		res, err := table.Route("user-api", caseReq("order"), nil)
		if err != nil || res.Route != "first" || res.Subset != "canary" {
			t.Fatalf("Route = %+v, %v; want the first route", res, err)
		}
		res, err = table.Route("user-api", caseReq("ordinal"), nil)
		if err != nil || res.Route != "second" || res.Subset != "staging" {
			t.Fatalf("Route = %+v, %v; want the second route", res, err)
		}
		// The same two routes in the opposite order: the prefix route wins.
		swapped := mustLoad(t, `apiVersion: lightmesh/v1
services:
  user-api:
    subsets: {canary: {labels: {env: canary}}, staging: {labels: {env: staging}}}
    routes:
      - {name: second, match: {headers: {x-case: {prefix: ord}}}, destinations: [{subset: staging}]}
      - {name: first, match: {headers: {x-case: {exact: order}}}, destinations: [{subset: canary}]}
`)
		res, err = NewTable(swapped, selectionInstances()).Route("user-api", caseReq("order"), nil)
		if err != nil || res.Route != "second" {
			t.Fatalf("swapped: Route = %+v, %v; want the prefix route", res, err)
		}
	})

	t.Run("route without match is a catch-all", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		for _, req := range []*Request{nil, {}, caseReq("other"), {Method: "DELETE", Path: "/x", Metadata: map[string][]string{"x-env": {"prod"}}}} {
			res, err := table.Route("user-api", req, nil)
			if err != nil || res.Route != "canary-split" {
				t.Fatalf("Route(%+v) = %+v, %v; want the catch-all", req, res, err)
			}
		}
	})

	t.Run("default route name", func(t *testing.T) {
		res, err := NewTable(rules, selectionInstances()).Route("user-api", caseReq("unnamed"), nil)
		if err != nil || res.Route != "routes[9]" {
			t.Fatalf("Route = %+v, %v; want route routes[9]", res, err)
		}
	})

	t.Run("no route matches", func(t *testing.T) {
		res, err := NewTable(rules, selectionInstances()).Route("no-catch-all", &Request{Path: "/v2/x"}, nil)
		if !errors.Is(err, ErrNoRoute) || res.Instance != nil {
			t.Fatalf("Route = %+v, %v; want ErrNoRoute", res, err)
		}
		var nre *NoRouteError
		if !errors.As(err, &nre) || nre.Service != "no-catch-all" || !strings.Contains(err.Error(), `"no-catch-all"`) {
			t.Fatalf("error %v: want a *NoRouteError naming no-catch-all", err)
		}
		if errors.Is(err, ErrNoInstance) {
			t.Fatal("NoRouteError matches ErrNoInstance")
		}
	})

	t.Run("unknown service", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		for _, name := range []string{"nope", "", "USER-API"} {
			res, err := table.Route(name, &Request{}, nil)
			if err != ErrUnknownService || res != (Result{}) {
				t.Fatalf("Route(%q) = %+v, %v; want exactly ErrUnknownService", name, res, err)
			}
			if table.Has(name) {
				t.Fatalf("Has(%q) = true", name)
			}
		}
	})

	t.Run("no rules: round robin over all healthy", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		got := addrs(t, table, "no-rules", &Request{Header: header("X-Env", "staging")}, nil, 6)
		want := []string{"10.0.3.1:80", "10.0.3.3:80", "10.0.3.4:80", "10.0.3.1:80", "10.0.3.3:80", "10.0.3.4:80"}
		if !slices.Equal(got, want) {
			t.Fatalf("picks = %v, want %v", got, want)
		}
		res, _ := table.Route("no-rules", nil, nil)
		if res.Route != "" || res.Subset != "" || res.Fallback {
			t.Fatalf("Result = %+v; want no route and no subset", res)
		}
	})

	t.Run("rules without routes: round robin over all healthy", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		got := addrs(t, table, "no-routes", nil, nil, 3)
		want := []string{"10.0.2.1:80", "10.0.2.2:80", "10.0.2.4:80"}
		if !slices.Equal(got, want) {
			t.Fatalf("picks = %v, want %v", got, want)
		}
	})

	t.Run("no instances at all", func(t *testing.T) {
		table := NewTable(nil, map[string][]discovery.Instance{"svc": {{Address: "10.0.0.1:80", Unhealthy: true}}})
		_, err := table.Route("svc", nil, nil)
		var nie *NoInstanceError
		if !errors.As(err, &nie) || nie.Service != "svc" || nie.Subset != "" || nie.Fallback != "" {
			t.Fatalf("Route error %v; want *NoInstanceError for svc with no subset", err)
		}
		if want := `router: no available instance for service "svc"`; err.Error() != want {
			t.Fatalf("message %q, want %q", err, want)
		}
	})

	t.Run("accept skips instances", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		notSix := func(in *discovery.Instance) bool { return in.Address != "10.0.0.6:80" }
		for _, a := range addrs(t, table, "user-api", &Request{Header: header("X-Env", "staging")}, notSix, 10) {
			if a != "10.0.0.2:80" {
				t.Fatalf("picked %s, which accept rejects", a)
			}
		}
		// Every staging instance rejected: the fallback serves.
		noStaging := func(in *discovery.Instance) bool { return in.Labels["env"] != "staging" }
		res, err := table.Route("user-api", &Request{Header: header("X-Env", "staging")}, noStaging)
		if err != nil || !res.Fallback || res.Subset != "base" {
			t.Fatalf("Route = %+v, %v; want the base fallback", res, err)
		}
		// Nothing accepted anywhere.
		none := func(*discovery.Instance) bool { return false }
		res, err = table.Route("user-api", &Request{Header: header("X-Env", "staging")}, none)
		var nie *NoInstanceError
		if !errors.As(err, &nie) || nie.Subset != "staging" || nie.Fallback != "base" || res.Instance != nil {
			t.Fatalf("Route = %+v, %v; want NoInstanceError staging/base", res, err)
		}
		_, err = table.Route("no-rules", nil, none)
		if !errors.Is(err, ErrNoInstance) {
			t.Fatalf("no-rules: Route error %v; want ErrNoInstance", err)
		}
	})

	t.Run("weighted 90/10 exact over 100 picks", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		var seq []string
		count := map[string]int{}
		for range 100 {
			res, err := table.Route("user-api", nil, nil)
			if err != nil || res.Route != "canary-split" {
				t.Fatalf("Route = %+v, %v", res, err)
			}
			count[res.Subset]++
			seq = append(seq, res.Subset)
		}
		if count["base"] != 90 || count["canary"] != 10 || len(count) != 2 {
			t.Fatalf("split = %v, want exactly base:90 canary:10", count)
		}
		// Interleaved, not bunched: one canary in every cycle of 10.
		for i := 0; i < 100; i += 10 {
			if n := countOf(seq[i:i+10], "canary"); n != 1 {
				t.Fatalf("picks %d..%d hold %d canary calls, want 1: %v", i, i+9, n, seq[i:i+10])
			}
		}
	})

	t.Run("zero-weight destinations never chosen", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		for range 50 {
			res, err := table.Route("user-api", caseReq("zero"), nil)
			if err != nil || res.Subset != "canary" {
				t.Fatalf("Route = %+v, %v; want canary only", res, err)
			}
		}
	})

	t.Run("no weights: equal split", func(t *testing.T) {
		table := NewTable(rules, selectionInstances())
		var got []string
		for range 6 {
			res, err := table.Route("user-api", caseReq("equal"), nil)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, res.Subset)
		}
		if want := []string{"base", "canary", "base", "canary", "base", "canary"}; !slices.Equal(got, want) {
			t.Fatalf("subsets = %v, want %v", got, want)
		}
	})
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestTableAccessors(t *testing.T) {
	rules := mustLoad(t, selectionDoc)
	table := NewTable(rules, selectionInstances())
	if table.Rules() != rules {
		t.Fatal("Rules() is not the rules given")
	}
	if got, want := rules.Services(), []string{"no-catch-all", "no-routes", "user-api"}; !slices.Equal(got, want) {
		t.Fatalf("Rules.Services = %v, want %v", got, want)
	}
	if got, want := table.Services(), []string{"no-catch-all", "no-routes", "no-rules", "user-api"}; !slices.Equal(got, want) {
		t.Fatalf("Services = %v, want %v", got, want)
	}
	if got, want := table.Subsets("user-api"), []string{"base", "canary", "empty", "empty2", "staging"}; !slices.Equal(got, want) {
		t.Fatalf("Subsets = %v, want %v", got, want)
	}
	if table.Subsets("no-rules") != nil || table.Subsets("nope") != nil {
		t.Fatal("Subsets of a service without rules is not nil")
	}
	instAddrs := func(list []discovery.Instance) []string {
		var a []string
		for _, in := range list {
			a = append(a, in.Address)
		}
		return a
	}
	if got, want := instAddrs(table.Instances("user-api", "")), []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.6:80"}; !slices.Equal(got, want) {
		t.Fatalf("Instances(user-api) = %v, want %v (healthy only)", got, want)
	}
	if got, want := instAddrs(table.Instances("user-api", "staging")), []string{"10.0.0.2:80", "10.0.0.6:80"}; !slices.Equal(got, want) {
		t.Fatalf("Instances(user-api, staging) = %v, want %v", got, want)
	}
	if table.Instances("user-api", "empty") != nil && len(table.Instances("user-api", "empty")) != 0 {
		t.Fatal("empty subset has instances")
	}
	if table.Instances("user-api", "nope") != nil || table.Instances("nope", "") != nil || table.Instances("no-rules", "base") != nil {
		t.Fatal("Instances of an unknown service or subset is not nil")
	}

	empty := NewTable(nil, nil)
	if len(empty.Services()) != 0 || empty.Rules() == nil || empty.Rules().Document().APIVersion != APIVersion {
		t.Fatalf("NewTable(nil, nil): services %v, rules %v", empty.Services(), empty.Rules())
	}
	if _, err := empty.Route("svc", nil, nil); err != ErrUnknownService {
		t.Fatalf("empty table: Route error %v", err)
	}
}

func TestTableWithInstances(t *testing.T) {
	rules := mustLoad(t, selectionDoc)
	lists := selectionInstances()
	t1 := NewTable(rules, lists)

	newList := []discovery.Instance{inst("10.9.0.1:80", "env=staging"), inst("10.9.0.2:80", "env=base")}
	t2 := t1.WithInstances("user-api", newList)

	// t1 is unchanged.
	if got := t1.Instances("user-api", "staging"); len(got) != 2 || got[0].Address != "10.0.0.2:80" {
		t.Fatalf("old table changed: %v", got)
	}
	if got := t2.Instances("user-api", "staging"); len(got) != 1 || got[0].Address != "10.9.0.1:80" {
		t.Fatalf("new table: staging = %v", got)
	}
	if t2.Rules() != t1.Rules() {
		t.Fatal("WithInstances changed the rules")
	}

	// Other services are shared: the same instances, and the round-robin
	// position carries over from one table to the other.
	if &t1.Instances("no-rules", "")[0] != &t2.Instances("no-rules", "")[0] {
		t.Fatal("no-rules is not shared")
	}
	a, _ := t1.Route("no-rules", nil, nil)
	b, _ := t2.Route("no-rules", nil, nil)
	c, _ := t1.Route("no-rules", nil, nil)
	if a.Instance.Address != "10.0.3.1:80" || b.Instance.Address != "10.0.3.3:80" || c.Instance.Address != "10.0.3.4:80" {
		t.Fatalf("shared round robin: %s %s %s", a.Instance.Address, b.Instance.Address, c.Instance.Address)
	}

	// The weighted counters live in the rules, shared by every table built
	// from them: 100 calls spread over two tables still split exactly 90/10.
	tx := t1.WithInstances("user-api", selectionInstances()["user-api"])
	count := map[string]int{}
	for i := range 100 {
		tb := t1
		if i%3 == 0 {
			tb = tx
		}
		res, err := tb.Route("user-api", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		count[res.Subset]++
	}
	if count["base"] != 90 || count["canary"] != 10 {
		t.Fatalf("split over two tables = %v, want base:90 canary:10", count)
	}

	// nil removes a service's instances: a service without rules leaves
	// the table, one with rules stays, with nothing to pick.
	t3 := t2.WithInstances("no-rules", nil).WithInstances("user-api", nil)
	if t3.Has("no-rules") || !t2.Has("no-rules") {
		t.Fatal("WithInstances(no-rules, nil) did not remove the service (or changed t2)")
	}
	if _, err := t3.Route("no-rules", nil, nil); err != ErrUnknownService {
		t.Fatalf("removed service: Route error %v", err)
	}
	if !t3.Has("user-api") {
		t.Fatal("service with rules removed with its instances")
	}
	if _, err := t3.Route("user-api", &Request{Header: header("X-Env", "staging")}, nil); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("user-api without instances: Route error %v", err)
	}
	// An empty, non-nil list keeps a service without rules known.
	t4 := t3.WithInstances("no-rules", []discovery.Instance{})
	if _, err := t4.Route("no-rules", nil, nil); !errors.Is(err, ErrNoInstance) {
		t.Fatalf("empty list: Route error %v; want ErrNoInstance", err)
	}

	// A new service joins.
	t5 := NewTable(nil, nil).WithInstances("fresh", []discovery.Instance{inst("10.1.0.1:80")})
	if res, err := t5.Route("fresh", nil, nil); err != nil || res.Instance.Address != "10.1.0.1:80" {
		t.Fatalf("fresh: Route = %+v, %v", res, err)
	}
	if lists["user-api"][0].Address != "10.0.0.1:80" || len(lists["user-api"]) != 6 {
		t.Fatal("WithInstances modified the caller's lists")
	}
}

func TestTableWithRules(t *testing.T) {
	rules := mustLoad(t, selectionDoc)
	t1 := NewTable(rules, selectionInstances())
	next := mustLoad(t, `apiVersion: lightmesh/v1
services:
  user-api:
    subsets: {canary: {labels: {env: canary}}}
    routes: [{destinations: [{subset: canary}]}]
`)
	t2 := t1.WithRules(next)
	if t2.Rules() != next || t1.Rules() != rules {
		t.Fatal("WithRules: wrong rules")
	}
	res, err := t2.Route("user-api", &Request{Header: header("X-Env", "staging")}, nil)
	if err != nil || res.Subset != "canary" || res.Instance.Address != "10.0.0.4:80" {
		t.Fatalf("new rules: Route = %+v, %v", res, err)
	}
	res, err = t1.Route("user-api", &Request{Header: header("X-Env", "staging")}, nil)
	if err != nil || res.Subset != "staging" {
		t.Fatalf("old table: Route = %+v, %v", res, err)
	}
	// The instances carry over, including services the new rules omit.
	if got := t2.Instances("no-rules", ""); len(got) != 3 {
		t.Fatalf("no-rules after WithRules: %v", got)
	}
	if _, err := t2.Route("no-catch-all", &Request{Path: "/v2/"}, nil); err != nil {
		t.Fatalf("no-catch-all lost its rules, so any call routes: %v", err)
	}
	// nil rules: every service is plain round robin.
	t3 := t1.WithRules(nil)
	if _, err := t3.Route("no-catch-all", &Request{Path: "/v2/"}, nil); err != nil {
		t.Fatalf("WithRules(nil): %v", err)
	}
	if t3.Has("user-api") != true || t3.Subsets("user-api") != nil {
		t.Fatal("WithRules(nil) kept subsets")
	}
}

// TestRouteFallbackDoesNotAllocate checks that a call served by the
// fallback allocates nothing, like any other successful call.
func TestRouteFallbackDoesNotAllocate(t *testing.T) {
	table := NewTable(mustLoad(t, selectionDoc), selectionInstances())
	for _, req := range []*Request{caseReq("fallback"), {Header: header("X-Env", "staging")}, nil} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := table.Route("user-api", req, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Route(%v) allocates %.1f times per call", req, allocs)
		}
	}
}

func TestRouteConcurrent(t *testing.T) {
	table := NewTable(mustLoad(t, selectionDoc), selectionInstances())
	const goroutines, calls = 8, 1000
	counts := make(chan map[string]int)
	for range goroutines {
		go func() {
			c := map[string]int{}
			for range calls {
				res, err := table.Route("user-api", nil, nil)
				if err != nil {
					t.Error(err)
				}
				c[res.Subset]++
			}
			counts <- c
		}()
	}
	total := map[string]int{}
	for range goroutines {
		for k, v := range <-counts {
			total[k] += v
		}
	}
	// The shared counter hands out each schedule position once.
	if total["base"] != 7200 || total["canary"] != 800 {
		t.Fatalf("concurrent split = %v, want base:7200 canary:800", total)
	}
}

// TestInboundRegexOnLongValues: a value too long to run an inbound
// route's regex on places the request nowhere (InboundUndecided), whether
// the route it would reach is strict or generous; an outbound route's
// regex does not match it.
func TestInboundRegexOnLongValues(t *testing.T) {
	rules := mustLoad(t, `apiVersion: lightmesh/v1
services:
  svc:
    subsets: {a: {labels: {env: a}}}
    routes:
      - {name: bots, match: {headers: {user-agent: {regex: ".*bot.*"}}}, destinations: [{subset: a}]}
    inbound:
      - name: trusted
        match: {headers: {x-client: {regex: "internal-[a-z]+"}}}
        rateLimit: {rps: 10000, burst: 100}
      - name: bots
        match: {headers: {user-agent: {regex: ".*bot.*"}}}
        rateLimit: {rps: 1, burst: 1}
      - name: everyone
        rateLimit: {rps: 100, burst: 10}
`)
	pad := strings.Repeat("x", MaxRegexInputLen)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
	}{
		{"trusted client", header("X-Client", "internal-ops"), 0},
		{"bot", header("User-Agent", "crawlerbot/1.0"), 1},
		{"browser", header("User-Agent", "browser"), 2},
		{"padded client header", header("X-Client", "internal-ops"+pad), InboundUndecided},
		{"padded bot", header("User-Agent", "crawlerbot/1.0 "+pad), InboundUndecided},
		{"long header no regex reads", header("Cookie", pad+pad), 2},
		{"trusted client with a padded bot header", header("X-Client", "internal-ops", "User-Agent", "bot"+pad), 0},
	} {
		if got, _ := rules.MatchInbound("svc", &Request{Header: tc.header}); got != tc.want {
			t.Errorf("%s: inbound route %d, want %d", tc.name, got, tc.want)
		}
	}
	table := NewTable(rules, map[string][]discovery.Instance{"svc": {inst("10.0.0.1:80", "env=a")}})
	if _, err := table.Route("svc", &Request{Header: header("User-Agent", "crawlerbot/1.0 "+pad)}, nil); !errors.Is(err, ErrNoRoute) {
		t.Errorf("outbound route of a padded user agent: %v, want ErrNoRoute", err)
	}
}
