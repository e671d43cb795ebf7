package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// explainRules routes X-Env: staging to staging (falling back to base),
// splits the rest 3:1 between base and staging, ejects an instance that
// fails half of 4 calls, and limits to a burst of 40.
const explainRules = `apiVersion: lightmesh/v1
services:
  user-api:
    outlierDetection: {minRequests: 4, failureRatio: 0.5, openBase: 1m}
    rateLimit: {rps: 0.001, burst: 40}
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging-lane
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: split
        destinations: [{subset: base, weight: 3}, {subset: staging, weight: 1}]
`

// explainFleet starts base-1, base-2, staging-1 and staging-2; failing[name]
// makes that backend answer 503.
func explainFleet(t *testing.T) (map[string]string, map[string]*atomic.Bool, []discovery.Instance) {
	t.Helper()
	byAddr, failing := map[string]string{}, map[string]*atomic.Bool{}
	var list []discovery.Instance
	for _, name := range []string{"base-1", "base-2", "staging-1", "staging-2"} {
		f := &atomic.Bool{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if f.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		addr := strings.TrimPrefix(srv.URL, "http://")
		byAddr[addr], failing[name] = name, f
		list = append(list, discovery.Instance{Address: addr, Labels: map[string]string{"env": strings.TrimSuffix(strings.TrimSuffix(name, "-1"), "-2")}})
	}
	return byAddr, failing, list
}

// explainJSON asks the status handler's explain view about a call.
func explainJSON(t *testing.T, admin, query string) *mesh.Explanation {
	t.Helper()
	resp, err := http.Get(admin + "?explain&format=json&" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("explain %s: %d %s", query, resp.StatusCode, body)
	}
	var e mesh.Explanation
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	return &e
}

// TestExplainAgreesWithRealRequests: before each real request, the explain
// view names the route, subset and instance; the request then reaches
// that instance — through the 3:1 split, the lane, an ejection and the
// fallback it causes. Asking never takes a token, trips or moves anything.
func TestExplainAgreesWithRealRequests(t *testing.T) {
	byAddr, failing, list := explainFleet(t)
	m := newMesh(t, rules.NewMemory([]byte(explainRules)), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}))
	admin := httptest.NewServer(m.StatusHandler())
	defer admin.Close()
	client := &http.Client{Transport: m.Transport(nil)}
	sent := 0
	check := func(env string) *mesh.Explanation {
		t.Helper()
		q := "service=user-api&path=/v1/users"
		if env != "" {
			q += "&header=" + url.QueryEscape("x-env:"+env)
		}
		for range 3 { // asking again changes nothing
			explainJSON(t, admin.URL, q)
		}
		e := explainJSON(t, admin.URL, q)
		body, err := get(client, env)
		sent++
		if e.Error != "" {
			want := map[string]error{"circuit_open": mesh.ErrCircuitOpen, "rate_limited": mesh.ErrRateLimited, "no_instance": router.ErrNoInstance}[e.Reason]
			if want == nil || !errors.Is(err, want) || !strings.Contains(err.Error(), e.Error) {
				t.Fatalf("explain said refused (%s: %s), the request got %q, %v", e.Reason, e.Error, body, err)
			}
			return e
		}
		if err != nil && !strings.Contains(err.Error(), "503") {
			t.Fatalf("explain said %s, the request failed: %v", byAddr[e.Instance], err)
		}
		if got := strings.TrimSpace(body); got != byAddr[e.Instance] {
			t.Fatalf("X-Env %q: explain said route %s instance %s, the request reached %s", env, e.Route, byAddr[e.Instance], got)
		}
		return e
	}
	subsets := map[string]int{}
	for range 8 {
		e := check("")
		if e.Route != "split" || e.Reason != "" || e.Tokens == nil {
			t.Fatalf("no header: %+v", e)
		}
		subsets[e.Chosen.Name]++
	}
	if subsets["base"] != 6 || subsets["staging"] != 2 {
		t.Errorf("the split explain forecast: %v, want 6 base and 2 staging (3:1)", subsets)
	}
	e := check("staging")
	if e.Route != "staging-lane" || e.Routes[0].Conditions[0].Got != "staging" || !e.Routes[0].Matched {
		t.Fatalf("lane: %+v", e)
	}

	// Both staging instances fail until their breakers eject them; the
	// lane then falls back to base, as explain says first.
	failing["staging-1"].Store(true)
	failing["staging-2"].Store(true)
	for range 12 {
		e = check("staging")
		if e.FallbackUsed {
			break
		}
	}
	if !e.FallbackUsed || len(e.Ejected) != 2 || e.Chosen.Available != 0 || !strings.Contains(e.Why, "staging") {
		t.Fatalf("after staging failed: %+v", e)
	}
	check("staging") // the fallback, as explained

	// The limit: a burst of 40, no refill to speak of. Explain never took
	// a token: the 41st real request is the first refused for the limit,
	// and explain says so before it is sent. (Until then, the split's
	// share for staging has no instance: explain says that too.)
	for sent < 40 {
		if e := check(""); e.Reason == "rate_limited" {
			t.Fatalf("request %d: rate limited early: %s", sent+1, e.Error)
		} else if e.Chosen.Name == "staging" && e.Reason != "circuit_open" {
			t.Fatalf("request %d to ejected staging: reason %q, want circuit_open", sent+1, e.Reason)
		}
	}
	if e := check(""); e.Reason != "rate_limited" || !strings.Contains(e.Error, "rate limited") {
		t.Fatalf("request 41: explain = %+v, want rate_limited", e)
	}
	if _, err := get(client, ""); !errors.Is(err, mesh.ErrRateLimited) {
		t.Fatalf("request 42: %v, want ErrRateLimited", err)
	}
}

func get(client *http.Client, env string) (string, error) {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://user-api/v1/users", nil)
	if env != "" {
		req.Header.Set("X-Env", env)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(body), fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(body), nil
}

// TestExplainViewRejectsBadQueries: a query the view cannot read is a 400
// that says what to write.
func TestExplainViewRejectsBadQueries(t *testing.T) {
	_, _, list := explainFleet(t)
	m := newMesh(t, rules.NewMemory([]byte(explainRules)), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}))
	admin := httptest.NewServer(m.StatusHandler())
	defer admin.Close()
	for query, want := range map[string]string{
		"explain":                            "service= is required",
		"explain&service=user-api&header=x1": `header="x1": want name:value`,
	} {
		resp, err := http.Get(admin.URL + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %q, want 400 with %q", query, resp.StatusCode, body, want)
		}
	}
	// An unknown service is explained, not an error.
	if e := explainJSON(t, admin.URL, "service=nobody"); e.Known || e.Reason != "" && e.Error == "" {
		t.Errorf("unknown service: %+v", e)
	}
}

// TestExplainHTMLInChromium renders the explain view in headless Chromium,
// through the URL the status page's form submits, and checks the DOM: the
// decision, each route's conditions with what the request had, the split,
// the candidates and the policy.
func TestExplainHTMLInChromium(t *testing.T) {
	bin := requireChromium(t)
	byAddr, _, list := explainFleet(t)
	m := newMesh(t, rules.NewMemory([]byte(explainRules)), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}))
	admin := httptest.NewServer(m.StatusHandler())
	defer admin.Close()

	status := runChromium(t, bin, "status", "--dump-dom", admin.URL+"?format=html")
	if !strings.Contains(status, `<form id="explain" method="get">`) {
		t.Fatalf("the status page has no explain form:\n%s", status)
	}
	// What the form submits, empty fields included.
	target := admin.URL + "?explain=&service=user-api&method=&path=%2Fv1%2Fusers&grpc=&header=x-tenant%3Aacme&header=&format=html"
	dom := runChromium(t, bin, "explain", "--dump-dom", target)
	if strings.Contains(dom, "<script") {
		t.Errorf("the browser built a script element:\n%s", dom)
	}
	e := m.Explain(mesh.ExplainRequest{Service: "user-api", Path: "/v1/users", Header: http.Header{"X-Tenant": {"acme"}}})
	for _, want := range []string{
		`<title>lightmesh explain: user-api</title>`,
		`<span class="badge b-ok">routed</span> to <code id="instance">` + e.Instance + `</code> by route <code>split</code>`,
		`<td rowspan="1"><code>staging-lane</code></td><td><code>header x-env exact "staging"</code></td><td><span class="muted">absent</span></td><td><span class="no">✗</span></td>`,
		`<code>split</code> <span class="badge b-ok">match</span></td><td colspan="3"><span class="muted">no conditions: matches every call</span>`,
		`<tr><td>base</td><td>3</td><td>75%</td></tr>`,
		`<tr><td>chosen</td><td>` + e.Chosen.Name + `</td>`,
		`<code>X-Tenant: acme</code>`,
		`<dt>Rate limit</dt><dd>0.001/s, burst 40 (40.0 tokens now)</dd>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered explain view lacks %q:\n%s", want, dom)
		}
	}
	if byAddr[e.Instance] == "" {
		t.Errorf("explain named %q, not an instance", e.Instance)
	}
}
