package engine

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// servingDoc is the document in force in FuzzAccept: every kind of
// stateful protection, for two services.
const servingDoc = `apiVersion: lightmesh/v1
services:
  svc:
    subsets: {a: {labels: {env: a}}, b: {labels: {env: b}}}
    breaker: {minRequests: 1, openBase: 1h, openMax: 1h}
    outlierDetection: {minRequests: 1, openBase: 1h, openMax: 1h}
    rateLimit: {rps: 0.001, burst: 5}
    retry: {attempts: 2, budget: 0.5}
    routes:
      - name: own
        match: {headers: {x-env: {exact: b}}}
        rateLimit: {rps: 0.001, burst: 3}
        retry: {attempts: 1}
        destinations: [{subset: b}]
      - destinations: [{subset: a}]
    inbound: [{name: api, rateLimit: {rps: 0.001, burst: 2}}, {rateLimit: {rps: 0.001, burst: 2}}]
  other:
    rateLimit: {rps: 0.001, burst: 1}
`

// servingState builds the State of servingDoc and uses it: a tripped
// service breaker and instance breaker, spent tokens and budget.
func servingState(tb testing.TB) *State {
	tb.Helper()
	rules, err := router.Load([]byte(servingDoc))
	if err != nil {
		tb.Fatal(err)
	}
	list := []discovery.Instance{
		{Address: "10.0.0.1:80", Labels: map[string]string{"env": "a"}},
		{Address: "10.0.0.2:80", Labels: map[string]string{"env": "b"}},
	}
	st := NewState(router.NewTable(nil, map[string][]discovery.Instance{"svc": list, "other": list[:1]})).WithRules(rules, nil)
	svc := st.Service("svc")
	svc.routes[0].limiter.Allow()
	svc.def.limiter.Allow()
	svc.inbound[0].Allow()
	svc.def.budget.Take()
	svc.routes[0].budget.Take()
	svc.breaker.Do(func() breaker.Outcome { return breaker.Failure })
	svc.outlier["10.0.0.2:80"].Do(func() breaker.Outcome { return breaker.Failure })
	return st
}

// fingerprint describes everything stateful a State holds: the instance
// lists, each breaker (state, trips, open deadline, settings), each bucket
// (rate, burst, tokens at a fixed time) and each budget.
func fingerprint(st *State, at time.Time) string {
	var b strings.Builder
	for _, name := range st.table.Services() {
		fmt.Fprintf(&b, "instances %s %v\n", name, st.table.Instances(name, ""))
	}
	for _, bi := range st.Breakers() {
		br := bi.Breaker
		fmt.Fprintf(&b, "breaker %s/%s %p %v %d %v %+v\n", bi.Service, bi.Instance, br, br.State(), br.Trips(), br.OpenUntil(), br.Settings())
	}
	for _, li := range st.Limiters() {
		fmt.Fprintf(&b, "limiter %s %s %p %v %d %.6f\n", li.Service, li.Scope, li.Limiter, li.Limiter.Limit(), li.Limiter.Burst(), li.Limiter.TokensAt(at))
	}
	for _, name := range st.services.Keys() {
		_, budgets := st.Service(name).scopes()
		for _, scope := range slices.Sorted(func(yield func(string) bool) {
			for s := range budgets {
				if !yield(s) {
					return
				}
			}
		}) {
			fmt.Fprintf(&b, "budget %s %q %p %d\n", name, scope, budgets[scope], budgets[scope].Left())
		}
	}
	return b.String()
}

// FuzzAccept feeds documents to the full acceptance path a mesh runs on
// every update — parse, validate and compile (router.Load), then carry the
// serving state over (State.WithRules) and route through the result — and
// checks that the State in force is left exactly as it was, whether the
// document was rejected or accepted: nothing serving changes until the
// next State is published.
func FuzzAccept(f *testing.F) {
	f.Add([]byte(servingDoc))
	f.Add([]byte(strings.Replace(servingDoc, "burst: 5", "burst: 50", 1)))
	f.Add([]byte(strings.Replace(servingDoc, "rps: 0.001, burst: 5", "rps: 1000, burst: 5", 1)))
	f.Add([]byte(strings.Replace(servingDoc, "    outlierDetection: {minRequests: 1, openBase: 1h, openMax: 1h}\n", "", 1)))
	f.Add([]byte(strings.Replace(servingDoc, "minRequests: 1, openBase", "minRequests: 2, openBase", 1)))
	f.Add([]byte(strings.Replace(servingDoc, "retry: {attempts: 2, budget: 0.5}", "retry: {attempts: 20}", 1)))
	f.Add([]byte(servingDoc + "    retry: {attempts: 1, budget: 2}\n"))
	f.Add([]byte("apiVersion: lightmesh/v1\nservices:\n  svc:\n    rateLimit: {rps: 0.001, burst: 1}\n    timeout: -1s\n"))
	f.Add([]byte("apiVersion: lightmesh/v1\nservices: {}\n"))
	f.Add([]byte("apiVersion: lightmesh/v1\nservices:\n  svc:\n    inbound: [{name: api, rateLimit: {rps: 9}}, {name: api, rateLimit: {rps: 1}}]\n"))
	at := time.Now().Add(time.Minute)
	f.Fuzz(func(t *testing.T, data []byte) {
		st := servingState(t)
		before := fingerprint(st, at)
		rules, err := router.Load(data)
		if err != nil {
			if after := fingerprint(st, at); after != before {
				t.Fatalf("a rejected document (%v) changed the serving state:\nbefore:\n%s\nafter:\n%s", err, before, after)
			}
			return
		}
		next := st.WithRules(rules, nil)
		names := rules.Services()
		names = names[:min(len(names), 3)]
		for _, name := range names {
			next = next.WithInstances(name, []discovery.Instance{{Address: "10.0.0.9:80"}}, nil)
		}
		if after := fingerprint(st, at); after != before {
			t.Fatalf("carrying state over changed the serving state:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// The next state routes (it shares unchanged buckets and breakers
		// with the one in force, as it should).
		for _, name := range names {
			var c Call
			req := &router.Request{Method: http.MethodGet, Path: "/", Header: http.Header{"X-Env": {"b"}}}
			if c.Begin(next, name, req, nil) == nil {
				c.Admit(time.Now())
				if t, err := c.NewTry(context.Background()); err == nil {
					t.Pick(nil)
					t.Done(&Outcome{Status: http.StatusOK})
				}
			}
		}
		// What Load accepts, Parse and then Compile accept too.
		doc, perr := router.Parse(data)
		if perr != nil {
			t.Fatalf("Load accepted what Parse rejects: %v", perr)
		}
		if _, cerr := router.Compile(doc); cerr != nil {
			t.Fatalf("Load accepted what Compile rejects: %v", cerr)
		}
	})
}
