package router

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// scanMatch is the reference for serviceRules.match: every route in order,
// no index.
func scanMatch(sr *serviceRules, r *Request) int {
	if r == nil {
		r = &emptyRequest
	}
	var hc headerCache
	for i := range sr.routes {
		if sr.routes[i].matches(r, &hc) {
			return i
		}
	}
	return -1
}

// checkIndex compares the indexed match with the scan for one request.
func checkIndex(t *testing.T, sr *serviceRules, r *Request) {
	t.Helper()
	want := scanMatch(sr, r)
	req := r
	if req == nil {
		req = &emptyRequest
	}
	var hc headerCache
	if got := sr.match(req, &hc); got != want {
		t.Fatalf("service %s: indexed match = route %d, scan = route %d\nrequest %+v", sr.name, got, want, r)
	}
}

func ptr[T any](v T) *T { return &v }

// randomDocument returns a valid document with one service whose routes
// draw their conditions from small pools, so that requests drawn from the
// same pools often meet them, in part or in full.
func randomDocument(rng *rand.Rand, routes, headerNames int) *Document {
	names := make([]string, headerNames)
	for i := range names {
		names[i] = fmt.Sprintf("x-h%d", i)
	}
	values := []string{"", "a", "b", "c", "ab"}
	cond := func() StringMatch {
		v := values[rng.IntN(len(values))]
		switch rng.IntN(6) {
		case 0, 1, 2:
			return StringMatch{Exact: &v}
		case 3:
			return StringMatch{Prefix: &v}
		case 4:
			return StringMatch{Regex: ptr(v + ".?")}
		default:
			return StringMatch{Present: ptr(rng.IntN(2) == 0)}
		}
	}
	svc := Service{Subsets: map[string]Subset{"s": {}}}
	for range routes {
		r := Route{Destinations: []Destination{{Subset: "s"}}}
		if rng.IntN(60) != 0 { // a rare catch-all
			m := &Match{Headers: map[string]StringMatch{}}
			for range 1 + rng.IntN(3) {
				name := names[rng.IntN(len(names))]
				if rng.IntN(3) == 0 {
					name = strings.ToUpper(name) // same header, other spelling
				}
				if _, dup := m.Headers[strings.ToLower(name)]; dup {
					continue
				}
				if _, dup := m.Headers[strings.ToUpper(name)]; dup {
					continue
				}
				m.Headers[name] = cond()
			}
			if rng.IntN(4) == 0 {
				m.Path = &StringMatch{Prefix: ptr([]string{"/", "/a", "/b"}[rng.IntN(3)])}
			}
			if rng.IntN(4) == 0 {
				m.Methods = []string{[]string{"GET", "post"}[rng.IntN(2)]}
			}
			r.Match = m
		}
		svc.Routes = append(svc.Routes, r)
	}
	return &Document{APIVersion: APIVersion, Services: map[string]Service{"svc": svc}}
}

func randomRequest(rng *rand.Rand, headerNames int) *Request {
	if rng.IntN(20) == 0 {
		return nil
	}
	values := []string{"", "a", "b", "c", "ab", "abc", "z"}
	r := &Request{
		Method: []string{"GET", "POST", ""}[rng.IntN(3)],
		Path:   []string{"/", "/a/1", "/b", ""}[rng.IntN(4)],
	}
	if rng.IntN(2) == 0 {
		r.Header = http.Header{}
	}
	if rng.IntN(2) == 0 {
		r.Metadata = map[string][]string{}
	}
	for range rng.IntN(headerNames + 1) {
		name := fmt.Sprintf("x-h%d", rng.IntN(headerNames))
		v := values[rng.IntN(len(values))]
		if r.Header != nil && rng.IntN(2) == 0 {
			r.Header.Set(name, v)
		} else if r.Metadata != nil {
			r.Metadata[name] = []string{v}
		}
	}
	return r
}

func TestIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, shape := range []struct{ routes, headers int }{
		{8, 1}, {8, 3}, {20, 2}, {64, 3}, {65, 3}, {130, 4}, {300, 6},
		{100, headerCacheSize + 8}, // headers beyond the cache: not indexed
		{MaxRoutes, 5},
	} {
		t.Run(fmt.Sprintf("routes=%d,headers=%d", shape.routes, shape.headers), func(t *testing.T) {
			indexed := 0
			for range 20 {
				rules, err := Compile(randomDocument(rng, shape.routes, shape.headers))
				if err != nil {
					t.Fatal(err)
				}
				sr := rules.services["svc"]
				if sr.index != nil {
					indexed++
				}
				for range 200 {
					checkIndex(t, sr, randomRequest(rng, shape.headers))
				}
			}
			if indexed < 10 {
				t.Fatalf("only %d of 20 documents indexed", indexed)
			}
		})
	}
}

// TestIndexShape checks which routes the index covers and that small
// services go without one.
func TestIndexShape(t *testing.T) {
	rules := mustLoad(t, benchDocument())
	sr := rules.services["user-api"]
	if len(sr.index) != 2 {
		t.Fatalf("%d index keys, want 2 (x-env, x-tenant)", len(sr.index))
	}
	env := sr.index[0]
	if env.header.canonical != "X-Env" || env.header.slot != 0 || len(env.byValue) != 26 {
		t.Fatalf("first key %s slot %d with %d values; want X-Env, slot 0, 26 values", env.header.canonical, env.header.slot, len(env.byValue))
	}
	if got := env.byValue["staging"]; got[0] != 1<<50 || got[1] != 0 {
		t.Fatalf("staging bitset %x, want only route 50", got)
	}
	small := mustLoad(t, validDoc)
	if small.services["user-api"].index != nil {
		t.Fatal("a two-route service has an index")
	}
}
