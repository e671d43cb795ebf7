package mesh_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

const inForceRules = `apiVersion: lightmesh/v1
defaults:
  timeout: 2s
  retry: {attempts: 1}
  breaker: {failureRatio: 0.6}
services:
  user-api:
    timeout: off
    subsets:
      base: {labels: {env: base}}
    routes:
      - name: slow
        match: {path: {prefix: /reports}}
        destinations: [{subset: base}]
        timeout: 5s
      - destinations: [{subset: base}]
`

// TestStatusShowsWhatIsInForce: the status page shows, for each service,
// what applies to its calls as explain and diff compute it (router's
// InForce): the defaults it takes with every built-in default filled in
// (the breaker's 10s window, not an empty section), its own timeout: off
// overriding the default timeout, a route's own timeout, and for a
// service no rule names the defaults alone.
func TestStatusShowsWhatIsInForce(t *testing.T) {
	inst := []discovery.Instance{{Address: "127.0.0.1:1", Labels: map[string]string{"env": "base"}}}
	m := newMesh(t, rules.NewMemory([]byte(inForceRules)), discovery.NewStatic(map[string][]discovery.Instance{"user-api": inst, "order-api": inst}),
		mesh.WithServices("order-api"))
	admin := httptest.NewServer(m.StatusHandler())
	defer admin.Close()
	// The mesh looks order-api up in the background: read until it is
	// there, for a bounded time.
	var st status
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		st = readStatus(t, admin.URL)
		if len(st.Services) == 2 || time.Now().After(deadline) {
			break
		}
	}
	inForce := map[string]map[string]any{}
	for _, s := range st.Services {
		inForce[s.Name] = s.InForce
	}
	get := func(service string, path ...any) any {
		var v any = inForce[service]
		for _, p := range path {
			switch p := p.(type) {
			case string:
				m, _ := v.(map[string]any)
				v = m[p]
			case int:
				l, _ := v.([]any)
				if p >= len(l) {
					return nil
				}
				v = l[p]
			}
		}
		return v
	}
	for _, c := range []struct {
		service string
		path    []any
		want    any
	}{
		{"user-api", []any{"fromDefaults"}, []any{"retry", "breaker"}},
		{"user-api", []any{"call", "timeout"}, "off"},
		{"user-api", []any{"call", "retry", "attempts"}, 1.0},
		{"user-api", []any{"routes", 0, "timeout"}, "5s"},
		{"user-api", []any{"breaker", "failureRatio"}, 0.6},
		{"user-api", []any{"breaker", "window"}, "10s"},
		{"user-api", []any{"breaker", "minRequests"}, 20.0},
		{"order-api", []any{"named"}, false},
		{"order-api", []any{"call", "timeout"}, "2s"},
		{"order-api", []any{"breaker", "window"}, "10s"},
	} {
		if got := get(c.service, c.path...); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s inForce %v = %#v, want %#v", c.service, c.path, got, c.want)
		}
	}

	req, _ := http.NewRequest("GET", admin.URL, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"window 10s, min 20 requests, failure ratio 0.6", "From the defaults: <code>retry</code>, <code>breaker</code>"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the HTML page lacks %q", want)
		}
	}
}

// status is the part of the status JSON TestStatusShowsWhatIsInForce
// reads: each service's inForce as the page writes it.
type status struct {
	Services []struct {
		Name    string         `json:"name"`
		InForce map[string]any `json:"inForce"`
	} `json:"services"`
}

func readStatus(t *testing.T, url string) status {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}
