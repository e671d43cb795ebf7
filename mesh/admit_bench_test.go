package mesh

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// admitDoc has 100 routes in the shape of the router's BenchmarkRoute:
// routes 0..49 test x-env against other lanes or an x-tenant header the
// request lacks, route 50 matches X-Env: staging, 51..98 match paths and
// 99 is the catch-all. protection is added to the service section.
func admitDoc(protection string) string {
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n  svc:\n")
	b.WriteString(protection)
	b.WriteString("    subsets:\n      base: {labels: {env: base}}\n      staging: {labels: {env: staging}}\n    routes:\n")
	for i := range 100 {
		switch {
		case i < 50 && i%2 == 0:
			fmt.Fprintf(&b, "      - match: {headers: {x-env: {exact: lane-%d}}}\n        destinations: [{subset: staging}]\n", i)
		case i < 50:
			fmt.Fprintf(&b, "      - match: {headers: {x-tenant: {exact: tenant-%d}}}\n        destinations: [{subset: staging}]\n", i)
		case i == 50:
			b.WriteString("      - match: {headers: {x-env: {exact: staging}}}\n        destinations: [{subset: staging}]\n        fallback: base\n")
		case i < 99:
			fmt.Fprintf(&b, "      - match: {path: {prefix: /v%d/}}\n        destinations: [{subset: base, weight: 90}, {subset: staging, weight: 10}]\n", i)
		default:
			b.WriteString("      - destinations: [{subset: base}]\n")
		}
	}
	return b.String()
}

func admitMesh(b *testing.B, protection string) *Mesh {
	b.Helper()
	var list []discovery.Instance
	for i := range 1000 {
		env := "base"
		if i%2 == 1 {
			env = "staging"
		}
		list = append(list, discovery.Instance{Address: fmt.Sprintf("10.0.%d.%d:80", i/250, i%250), Labels: map[string]string{"env": env}})
	}
	m, err := New(context.Background(), WithRules(rules.NewMemory([]byte(admitDoc(protection)))),
		WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": list})))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// admit is one request's decision on the transport's own code path: route
// and pick, rate-limit check, breaker admission and outcome.
func admit(snap *state, req *router.Request, send func() breaker.Outcome) error {
	c := call{snap: snap, pol: snap.policies["svc"], service: "svc", rreq: *req}
	res, err := c.route()
	if err != nil {
		return err
	}
	c.cp = &c.pol.routes[res.RouteIndex]
	if c.cp.limiter != nil && !c.cp.limiter.Allow() {
		return ErrRateLimited
	}
	return c.guard(res.Instance, send)
}

// BenchmarkAdmit measures admit beside the raw gobreaker Execute + raw
// rate.Limiter.Allow it builds on, in the same run.
func BenchmarkAdmit(b *testing.B) {
	const limit = "    rateLimit: {rps: 1e12, burst: 1000000000}\n"
	const brk = "    breaker: {minRequests: 20, failureRatio: 0.5}\n"
	req := &router.Request{Method: http.MethodGet, Path: "/", Header: http.Header{"X-Env": {"staging"}}}
	ok := func() breaker.Outcome { return breaker.Success }
	cases := []struct{ name, protection string }{
		{"mesh=breaker+limit", brk + limit},
		{"mesh=breaker+outlier+limit", brk + limit + "    outlierDetection: {minRequests: 20, failureRatio: 0.5}\n"},
	}
	for _, tc := range cases {
		snap := admitMesh(b, tc.protection).snap.Load()
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := admit(snap, req, ok); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := admit(snap, req, ok); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
	raw := func() (*gobreaker.CircuitBreaker[struct{}], *rate.Limiter) {
		return gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{Name: "raw"}), rate.NewLimiter(1e12, 1000000000)
	}
	noop := func() (struct{}, error) { return struct{}{}, nil }
	b.Run("raw=gobreaker+rate", func(b *testing.B) {
		cb, lim := raw()
		b.ReportAllocs()
		for b.Loop() {
			if !lim.Allow() {
				b.Fatal("limited")
			}
			cb.Execute(noop)
		}
	})
	b.Run("raw=gobreaker+rate/parallel", func(b *testing.B) {
		cb, lim := raw()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Allow()
				cb.Execute(noop)
			}
		})
	})
}

// BenchmarkLimit measures the client-side limit check as the transport
// makes it (route, then the route's limiter) beside a raw rate.Limiter.
func BenchmarkLimit(b *testing.B) {
	snap := admitMesh(b, "    rateLimit: {rps: 1e12, burst: 1000000000}\n").snap.Load()
	req := &router.Request{Method: http.MethodGet, Path: "/", Header: http.Header{"X-Env": {"staging"}}}
	limitOnce := func() bool {
		c := call{snap: snap, pol: snap.policies["svc"], service: "svc", rreq: *req}
		res, err := c.route()
		if err != nil {
			return false
		}
		return c.pol.routes[res.RouteIndex].limiter.Allow()
	}
	b.Run("mesh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !limitOnce() {
				b.Fatal("limited")
			}
		}
	})
	b.Run("mesh/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				limitOnce()
			}
		})
	})
	lim := rate.NewLimiter(1e12, 1000000000)
	b.Run("raw=rate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			lim.Allow()
		}
	})
	b.Run("raw=rate/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				lim.Allow()
			}
		})
	})
}
