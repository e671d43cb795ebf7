package mesh_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

const opsRules = `apiVersion: lightmesh/v1
defaults:
  timeout: 2s
services:
  user-api:
    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1m}
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: canary
        destinations: [{subset: base, weight: 3}, {subset: staging, weight: 1}]
`

// TestStatusForOps: the status an operator reads (JSON, and HTML by
// Accept) shows each service's live route table with the shares in
// force, its instances with labels, weight and state, the settings it
// takes from the defaults, and its request and error rates per subset.
func TestStatusForOps(t *testing.T) {
	var failing atomic.Bool
	start := func(name string, fail *atomic.Bool) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if fail != nil && fail.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	base1, staging1 := start("base-1", nil), start("staging-1", &failing)
	list := []discovery.Instance{
		{Address: base1, Weight: 5, Labels: map[string]string{"env": "base"}},
		{Address: staging1, Labels: map[string]string{"env": "staging"}},
	}
	reg := prometheus.NewRegistry()
	m := newMesh(t, rules.NewMemory([]byte(opsRules)), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}),
		mesh.WithRegisterer(reg))
	admin := httptest.NewServer(m.StatusHandler())
	defer admin.Close()
	read := func() mesh.Status {
		resp, err := http.Get(admin.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st mesh.Status
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	read() // the first read: totals, no rates yet
	client := &http.Client{Transport: m.Transport(nil)}
	for range 4 {
		meshtest.Get(context.Background(), client, "http://user-api/", nil)
	}
	failing.Store(true)
	for range 2 {
		meshtest.Get(context.Background(), client, "http://user-api/", map[string]string{"X-Env": "staging"})
	}
	time.Sleep(20 * time.Millisecond)
	st := read()
	if len(st.Services) != 1 {
		t.Fatalf("services: %+v", st.Services)
	}
	svc := st.Services[0]

	if len(svc.Routes) != 2 {
		t.Fatalf("routes: %+v", svc.Routes)
	}
	lane, canary := svc.Routes[0], svc.Routes[1]
	if lane.Name != "staging-lane" || lane.Match != `header x-env exact "staging"` || lane.Fallback != "base" ||
		len(lane.Destinations) != 1 || lane.Destinations[0].Percent != 100 {
		t.Errorf("staging-lane route: %+v", lane)
	}
	if canary.Match != "" || len(canary.Destinations) != 2 || canary.Destinations[0].Percent != 75 || canary.Destinations[1].Percent != 25 {
		t.Errorf("canary route: %+v, want base 75%% and staging 25%%", canary)
	}

	byAddr := map[string]mesh.InstanceStatus{}
	for _, in := range svc.Instances {
		byAddr[in.Address] = in
	}
	if in := byAddr[base1]; in.Labels["env"] != "base" || in.Weight != 5 || in.State != mesh.InstanceServing {
		t.Errorf("base-1: %+v, want env=base, weight 5, serving", in)
	}
	if in := byAddr[staging1]; in.Labels["env"] != "staging" || in.Weight != 1 || in.State != mesh.InstanceEjected {
		t.Errorf("staging-1: %+v, want env=staging, weight 1, ejected after failing 2 of 2", in)
	}

	if in := svc.InForce; in == nil || len(in.FromDefaults) != 1 || in.FromDefaults[0] != "timeout" || in.Call.Timeout.Std() != 2*time.Second {
		t.Errorf("in force: %+v, want timeout 2s from the defaults", in)
	}

	traffic := map[string]mesh.TrafficStatus{}
	for _, tr := range svc.Traffic {
		traffic[tr.Subset] = tr
	}
	if tr := traffic["staging"]; tr.Errors < 1 || tr.ErrorRate <= 0 || tr.Window <= 0 {
		t.Errorf("staging traffic: %+v, want its error (the 503 that ejected it) and an error rate", tr)
	}
	if tr := traffic["base"]; tr.Requests < 3 || tr.RequestRate <= 0 || tr.Errors != 0 {
		t.Errorf("base traffic: %+v, want requests, a rate and no error", tr)
	}

	req, _ := http.NewRequest("GET", admin.URL, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	page := string(body)
	for _, want := range []string{"<code>canary</code>", "<code>base</code> 75%", "<code>staging</code> 25%", "<code>env=staging</code>",
		">ejected<", "Errors/s", "From the defaults: <code>timeout</code>"} {
		if !strings.Contains(page, want) {
			t.Errorf("HTML status page lacks %q", want)
		}
	}
}
