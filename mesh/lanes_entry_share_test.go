package mesh_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A percent entry below the 0.01% resolution of the share puts (almost)
// no key into its lane; it never turns the key itself into a lane: a
// user id equal to another lane's name does not reach that lane.
func TestLaneEntryTinyPercentNeverMakesTheKeyALane(t *testing.T) {
	const doc = `apiVersion: lightmesh/v1
defaults:
  lanes: {label: env, base: {labels: {env: base}}}
services:
  edge:
    lanes:
      label: env
      base: {labels: {env: base}}
      entry:
        - {header: x-user-id, percent: 0.001, lane: feat2}
`
	m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": laneFleet(t)}),
		mesh.WithLocalService("edge"), mesh.WithServices("svc"))
	c := &http.Client{Transport: m.Transport(nil)}
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := meshtest.Get(r.Context(), c, "http://svc/", nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, body)
	})))
	t.Cleanup(srv.Close)
	for _, user := range []string{"feat1", "feat2", "user-7"} {
		for range 4 {
			got, err := meshtest.Get(context.Background(), http.DefaultClient, srv.URL, map[string]string{"X-User-Id": user})
			if err != nil {
				t.Fatal(err)
			}
			if got != "base-1" && got != "base-2" && got != "canary-1" {
				t.Fatalf("user %s reached %s, want base (a 0.001%% share, and the user id is no lane)", user, got)
			}
		}
	}
}

// A browser's Cookie header carries cookies net/http's strict parser
// refuses (a JSON value, a name without '='); the lane cookie among them
// still puts the call into its lane, as http.Request.Cookie finds it.
func TestLaneEntryCookieAmongOddCookies(t *testing.T) {
	srv, _ := edge(t)
	for _, line := range []string{
		`prefs={"a":1,"b":2}; lane=feat1`,
		`lane=feat1; novalue`,
		`_ga=GA1.2.3; lane="feat1"`,
	} {
		got, err := meshtest.Get(context.Background(), http.DefaultClient, srv.URL, map[string]string{"Cookie": line})
		if err != nil || got != "feat1-1" {
			t.Errorf("Cookie: %s: %q %v, want feat1-1", line, got, err)
		}
	}
}
