package router

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
)

// FuzzLoad feeds Load arbitrary documents. Load must never panic; when it
// accepts a document, the document must compile again, its JSON form must
// load too, to the same document, and routing sample requests through a table built from it must
// neither panic nor break Route's contract.
func FuzzLoad(f *testing.F) {
	for _, d := range badDocs() {
		if len(d.doc) <= 8<<10 { // larger seeds make the fuzzer spend its time minimizing
			f.Add([]byte(d.doc))
		}
	}
	f.Add([]byte(validDoc))
	f.Add([]byte(validJSON))
	f.Add([]byte(selectionDoc))
	f.Add([]byte(benchDocument()))
	f.Add([]byte(specDoc))
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := Load(data)
		if err != nil {
			if rules != nil {
				t.Fatalf("Load returned rules and error %v", err)
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if _, err := Compile(rules.Document()); err != nil {
			t.Fatalf("accepted document does not compile again: %v", err)
		}
		js, err := json.Marshal(rules.Document())
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		again, err := Load(js)
		if err != nil {
			t.Fatalf("JSON form of an accepted document is rejected: %v\n%s", err, js)
		}
		// ...and reads back as the same document (compared in JSON form,
		// where an empty map and a missing one are the same).
		if js2, err := json.Marshal(again.Document()); err != nil || !bytes.Equal(js2, js) {
			t.Fatalf("JSON form of an accepted document reads back otherwise (%v):\n%s\n%s", err, js, js2)
		}
		checkRouting(t, rules)
	})
}

// specDoc is the example document of the product spec.
const specDoc = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - destinations: [{subset: base, weight: 90}, {subset: staging, weight: 10}]
    timeout: 2s
    retry: {attempts: 2, perTryTimeout: 500ms, budget: 0.2}
    breaker: {window: 10s, buckets: 10, minRequests: 20, failureRatio: 0.5,
              openBase: 1s, openMax: 60s, halfOpenProbes: 3}
    rateLimit: {rps: 1000, burst: 200}
`

// checkRouting routes sample requests through a table built from rules and
// instances carrying every subset's labels, and checks each answer.
func checkRouting(t *testing.T, rules *Rules) {
	instances := map[string][]discovery.Instance{}
	var reqs []*Request
	reqs = append(reqs, nil, &Request{},
		&Request{Method: "GET", Path: "/v1/users", Header: http.Header{"X-Env": {"staging"}, "X-Empty": {""}}},
		&Request{Method: "POST", Path: "/pkg.Svc/Call", Metadata: map[string][]string{"x-env": {"base"}, "x-empty": {""}}},
	)
	for name, svc := range rules.Document().Services {
		list := []discovery.Instance{{Address: "10.0.0.1:80"}, {Address: "10.0.0.2:80", Unhealthy: true}}
		for sn, sub := range svc.Subsets {
			list = append(list, discovery.Instance{Address: sn + ":80", Labels: sub.Labels, Weight: len(sn)})
		}
		instances[name] = list
		// A request meeting each route's exact, prefix and present
		// conditions, in HTTP headers and in gRPC metadata.
		for _, r := range svc.Routes {
			if r.Match == nil {
				continue
			}
			h, md := http.Header{}, map[string][]string{}
			for k, m := range r.Match.Headers {
				v := ""
				switch {
				case m.Exact != nil:
					v = *m.Exact
				case m.Prefix != nil:
					v = *m.Prefix + "x"
				case m.Present != nil && !*m.Present:
					continue
				}
				h.Set(k, v)
				md[k] = []string{v}
			}
			req := &Request{Header: h, Metadata: md}
			if r.Match.Path != nil && r.Match.Path.Exact != nil {
				req.Path = *r.Match.Path.Exact
			}
			if len(r.Match.Methods) > 0 {
				req.Method = r.Match.Methods[0]
			}
			reqs = append(reqs, req, &Request{Metadata: md, Path: req.Path, Method: req.Method})
		}
	}
	for _, sr := range rules.services {
		for _, req := range reqs {
			checkIndex(t, sr, req)
		}
	}
	table := NewTable(rules, instances)
	odd := func(in *discovery.Instance) bool { return len(in.Address)%2 == 1 }
	for _, name := range append(table.Services(), "not-a-service") {
		for _, req := range reqs {
			for _, accept := range []func(*discovery.Instance) bool{nil, odd} {
				for range 3 {
					checkRoute(t, table, name, req, accept)
				}
			}
		}
	}
}

func checkRoute(t *testing.T, table *Table, service string, req *Request, accept func(*discovery.Instance) bool) {
	t.Helper()
	res, err := table.Route(service, req, accept)
	if err != nil {
		var nie *NoInstanceError
		var nre *NoRouteError
		switch {
		case err == ErrUnknownService:
			if table.Has(service) {
				t.Fatalf("ErrUnknownService for known service %q", service)
			}
		case errors.As(err, &nie):
			if nie.Service != service || !errors.Is(err, ErrNoInstance) || res.Instance != nil {
				t.Fatalf("bad NoInstanceError %+v (result %+v)", nie, res)
			}
		case errors.As(err, &nre):
			if nre.Service != service || !errors.Is(err, ErrNoRoute) {
				t.Fatalf("bad NoRouteError %+v", nre)
			}
		default:
			t.Fatalf("Route(%q): unexpected error %v", service, err)
		}
		return
	}
	if res.Instance == nil || res.Service != service || res.Instance.Unhealthy {
		t.Fatalf("Route(%q) = %+v", service, res)
	}
	if accept != nil && !accept(res.Instance) {
		t.Fatalf("Route(%q) picked %s, which accept rejects", service, res.Instance.Address)
	}
	if res.Subset != "" {
		sub := table.Rules().Document().Services[service].Subsets[res.Subset]
		if !res.Instance.HasLabels(sub.Labels) {
			t.Fatalf("instance %+v is not in subset %q (%v)", res.Instance, res.Subset, sub.Labels)
		}
	}
}

// TestFuzzSeedsRoute runs the fuzz body's routing checks over the valid
// seeds, so that they run in every plain `go test`.
func TestFuzzSeedsRoute(t *testing.T) {
	for i, doc := range []string{validDoc, validJSON, selectionDoc, benchDocument()} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			checkRouting(t, mustLoad(t, doc))
		})
	}
}
