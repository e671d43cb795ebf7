package router

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
)

// benchDocument returns a document for user-api with 100 routes. Routes
// 0..49 carry header conditions the benchmark request does not meet (even
// ones test x-env against other lanes, odd ones an x-tenant header the
// request does not carry), route 50 matches x-env: staging exactly and sends
// to the staging subset with base as fallback, routes 51..98 match other
// paths and route 99 is the catch-all.
func benchDocument() string { return benchDocumentWith("exact") }

// benchDocumentWith is benchDocument with the lane routes' x-env condition
// of the given kind: "exact" lets the route index skip them, "prefix"
// makes Route evaluate each of them in turn.
func benchDocumentWith(kind string) string {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  user-api:\n")
	b.WriteString("    subsets:\n      base: {labels: {env: base}}\n      staging: {labels: {env: staging}}\n")
	b.WriteString("    routes:\n")
	for i := range 100 {
		switch {
		case i < 50 && i%2 == 0:
			fmt.Fprintf(&b, "      - name: lane-%d\n        match: {headers: {x-env: {%s: lane-%d}}}\n        destinations: [{subset: staging}]\n        fallback: base\n", i, kind, i)
		case i < 50:
			fmt.Fprintf(&b, "      - name: tenant-%d\n        match: {headers: {x-tenant: {exact: tenant-%d}}}\n        destinations: [{subset: staging}]\n", i, i)
		case i == 50:
			b.WriteString("      - name: staging\n        match: {headers: {x-env: {exact: staging}}}\n        destinations: [{subset: staging}]\n        fallback: base\n")
		case i < 99:
			fmt.Fprintf(&b, "      - name: path-%d\n        match: {path: {prefix: /v%d/}}\n        destinations: [{subset: base, weight: 90}, {subset: staging, weight: 10}]\n", i, i)
		default:
			b.WriteString("      - name: default\n        destinations: [{subset: base}]\n")
		}
	}
	return b.String()
}

// benchInstances returns n instances of user-api, alternately labelled
// env=staging and env=base.
func benchInstances(n int) []discovery.Instance {
	list := make([]discovery.Instance, n)
	for i := range list {
		env := "base"
		if i%2 == 0 {
			env = "staging"
		}
		list[i] = discovery.Instance{
			Address: fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250),
			Labels:  map[string]string{"env": env, "zone": fmt.Sprintf("z%d", i%3)},
		}
	}
	return list
}

func benchTable(b *testing.B, n int) (*Table, *Request) { return benchTableWith(b, n, benchDocument()) }

func benchTableWith(b *testing.B, n int, doc string) (*Table, *Request) {
	b.Helper()
	rules, err := Load([]byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	table := NewTable(rules, map[string][]discovery.Instance{"user-api": benchInstances(n)})
	req := &Request{
		Method: http.MethodGet,
		Path:   "/v1/users/42",
		Header: http.Header{
			"X-Env":       {"staging"},
			"Accept":      {"application/json"},
			"User-Agent":  {"lightmesh-bench/1"},
			"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		},
	}
	res, err := table.Route("user-api", req, nil)
	if err != nil || res.Route != "staging" || res.Subset != "staging" || res.Instance.Labels["env"] != "staging" {
		b.Fatalf("Route = %+v, %v; want route staging, subset staging", res, err)
	}
	return table, req
}

func BenchmarkRoute(b *testing.B) {
	for _, n := range []int{10, 1000, 10000, 100000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			table, req := benchTable(b, n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := table.Route("user-api", req, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRouteParallel(b *testing.B) {
	table, req := benchTable(b, 1000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := table.Route("user-api", req, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRouteScan is BenchmarkRoute's worst case: the 25 lane routes
// test x-env by prefix, which the route index cannot use, so Route
// evaluates every route up to the 51st.
func BenchmarkRouteScan(b *testing.B) {
	table, req := benchTableWith(b, 1000, benchDocumentWith("prefix"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := table.Route("user-api", req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// routesDocument returns a document for user-api with n routes where only
// the last matches the benchmark request (x-env: staging). The n-1 before
// it test x-env for other lanes: exactly when indexed is true (the route
// index skips them without evaluating them), by prefix otherwise (Route
// evaluates each in turn).
func routesDocument(n int, indexed bool) string {
	kind := "prefix"
	if indexed {
		kind = "exact"
	}
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  user-api:\n")
	b.WriteString("    subsets:\n      base: {labels: {env: base}}\n      staging: {labels: {env: staging}}\n")
	b.WriteString("    routes:\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, "      - match: {headers: {x-env: {%s: lane-%d}}}\n        destinations: [{subset: base}]\n", kind, i)
	}
	b.WriteString("      - name: staging\n        match: {headers: {x-env: {exact: staging}}}\n        destinations: [{subset: staging}]\n")
	return b.String()
}

// BenchmarkRouteCount measures how routing grows with the number of
// routes (1, 10, 100, 1,000; the match is always the last route), with the
// exact-header index hitting and with every route scanned, at 1,000
// instances.
func BenchmarkRouteCount(b *testing.B) {
	for _, indexed := range []bool{true, false} {
		for _, n := range []int{1, 10, 100, MaxRoutes} {
			b.Run(fmt.Sprintf("index=%t/routes=%d", indexed, n), func(b *testing.B) {
				table, req := benchTableWith(b, 1000, routesDocument(n, indexed))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := table.Route("user-api", req, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkMatchHostOnly matches a call to a service whose only route has
// no conditions, the common host-only rule: the service's name picks its
// destination.
func BenchmarkMatchHostOnly(b *testing.B) {
	rules, err := Load([]byte("apiVersion: lightmesh/v1\nservices:\n  user-api:\n    subsets:\n      base: {labels: {env: base}}\n    routes:\n      - destinations: [{subset: base}]\n"))
	if err != nil {
		b.Fatal(err)
	}
	table := NewTable(rules, map[string][]discovery.Instance{"user-api": benchInstances(10)})
	req := &Request{Method: http.MethodGet, Path: "/v1/users/42", Header: http.Header{"Accept": {"application/json"}}}
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		if err := table.Match("user-api", req, &d); err != nil || d.RouteIndex != 0 {
			b.Fatal(err, d.RouteIndex)
		}
	}
}
