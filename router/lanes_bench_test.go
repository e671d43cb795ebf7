package router

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
)

// laneBenchTable returns a table of user-api with 10,000 instances: 9,000
// base and 1,000 lanes of one instance each (feat-0 … feat-999), under a
// lanes rule when lanes is true, else under a static route to a subset
// of the same size as a lane.
func laneBenchTable(tb testing.TB, lanes bool) *Table {
	tb.Helper()
	list := make([]discovery.Instance, 10000)
	for i := range list {
		env := "base"
		if i < 1000 {
			env = fmt.Sprintf("feat-%d", i)
		}
		list[i] = discovery.Instance{Address: fmt.Sprintf("10.%d.%d.%d:8080", i/62500, i/250%250, i%250), Labels: map[string]string{"env": env}}
	}
	doc := "apiVersion: lightmesh/v1\nservices:\n  user-api:\n"
	if lanes {
		doc += "    lanes: {label: env, base: {labels: {env: base}}}\n"
	} else {
		doc += "    subsets: {base: {labels: {env: base}}, feat: {labels: {env: feat-500}}}\n" +
			"    routes:\n      - match: {headers: {x-env: {exact: feat-500}}}\n        destinations: [{subset: feat}]\n        fallback: base\n" +
			"      - destinations: [{subset: base}]\n"
	}
	rules, err := Load([]byte(doc))
	if err != nil {
		tb.Fatal(err)
	}
	return NewTable(rules, map[string][]discovery.Instance{"user-api": list})
}

// A call finds its lane's instance among 1,000 lanes over 10,000
// instances without allocating, as a static route does.
func TestLaneRouteDoesNotAllocate(t *testing.T) {
	tbl := laneBenchTable(t, true)
	req := &Request{Method: "GET", Path: "/", Header: http.Header{"X-Env": {"feat-500"}}}
	res, err := tbl.Route("user-api", req, nil)
	if err != nil || res.Subset != LaneSubset || res.Lane != "feat-500" || res.Instance.Labels["env"] != "feat-500" {
		t.Fatalf("Route: %+v %v, want the feat-500 instance", res, err)
	}
	if n := testing.AllocsPerRun(100, func() { tbl.Route("user-api", req, nil) }); n != 0 {
		t.Fatalf("%v allocations per lane call, want 0", n)
	}
}

// BenchmarkLaneRoute compares a call in one of 1,000 lanes over 10,000
// instances with the same call by a static route to a subset.
//
//	go test ./router -run '^$' -bench LaneRoute -benchmem -count 10 | benchstat -col /by -
func BenchmarkLaneRoute(b *testing.B) {
	for _, by := range []string{"lanes", "static-route"} {
		b.Run("by="+by, func(b *testing.B) {
			tbl := laneBenchTable(b, by == "lanes")
			req := &Request{Method: "GET", Path: "/", Header: http.Header{"X-Env": {"feat-500"}}}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := tbl.Route("user-api", req, nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
