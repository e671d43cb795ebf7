package mesh_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// laneFleet starts base-1, base-2, feat1-1 (env=feat1), feat2-1
// (env=feat2) and canary-1 (env=base, track=canary) for service svc.
func laneFleet(t *testing.T) []discovery.Instance {
	t.Helper()
	_, list := meshtest.Fleet(t, "base-1", "base-2", "feat1-1", "feat2-1")
	canary := meshtest.NewBackend(t, "canary-1")
	in := canary.Instance("base")
	in.Labels["track"] = "canary"
	return append(list, in)
}

// Lanes combined with each other kind of rule, through the HTTP
// transport: the lane's instance when it has one, else what the rest of
// the rules say; never another lane's instance, and base traffic never
// on a lane instance.
func TestLanesCombineWithRoutes(t *testing.T) {
	for _, tc := range []struct {
		name string
		svc  string // the service's rules, below "  svc:\n"
		env  string
		want []string
	}{
		{"no routes, lane with instance", "    lanes: {label: env, base: {labels: {env: base}}}\n", "feat1", []string{"feat1-1"}},
		{"no routes, lane without instance goes to base", "    lanes: {label: env, base: {labels: {env: base}}}\n", "feat9", []string{"base-1", "base-2", "canary-1"}},
		{"no routes, no lane goes to base only", "    lanes: {label: env, base: {labels: {env: base}}}\n", "", []string{"base-1", "base-2", "canary-1"}},
		{"default base: instances without the label", "    lanes: {label: track}\n", "", []string{"base-1", "base-2", "feat1-1", "feat2-1"}},
		{"default base, lane canary", "    lanes: {label: track}\n", "canary", []string{"canary-1"}},
		{"weighted split: lane wins, split for the rest", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {all: {labels: {}}, canary: {labels: {track: canary}}}\n" +
			"    routes: [{destinations: [{subset: all, weight: 50}, {subset: canary, weight: 50}]}]\n", "feat2", []string{"feat2-1"}},
		{"weighted split never reaches lane instances", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {all: {labels: {}}, canary: {labels: {track: canary}}}\n" +
			"    routes: [{destinations: [{subset: all, weight: 50}, {subset: canary, weight: 50}]}]\n", "", []string{"base-1", "base-2", "canary-1"}},
		{"lane without instance takes the route's subset", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {canary: {labels: {track: canary}}}\n" +
			"    routes: [{destinations: [{subset: canary}]}]\n", "feat9", []string{"canary-1"}},
		{"route's fallback after the lane", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {gone: {labels: {track: gone}}, base: {labels: {env: base}}}\n" +
			"    routes: [{destinations: [{subset: gone}], fallback: base}]\n", "feat9", []string{"base-1", "base-2", "canary-1"}},
		{"static subset naming the lane label keeps its lane instances", "    lanes: {label: env, base: {labels: {env: base}}}\n" +
			"    subsets: {f2: {labels: {env: feat2}}}\n" +
			"    routes: [{destinations: [{subset: f2}]}]\n", "", []string{"feat2-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "apiVersion: lightmesh/v1\nservices:\n  svc:\n" + tc.svc
			if _, err := router.Load([]byte(doc)); err != nil {
				t.Fatal(err)
			}
			m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": laneFleet(t)}))
			c := &http.Client{Transport: m.Transport(nil)}
			meshtest.ExpectOnly(t, c, "svc", tc.env, 40, tc.want...)
		})
	}
}

// A lane instance is found again as soon as discovery reports it and
// left as soon as discovery removes it; the fallback counter counts the
// calls that carried the lane and went to base.
func TestLaneFollowsInstances(t *testing.T) {
	list := laneFleet(t)
	static := discovery.NewStatic(map[string][]discovery.Instance{"svc": list[:2]})
	doc := "apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env, base: {labels: {env: base}}}\n"
	m := newMesh(t, rules.NewMemory([]byte(doc)), static, mesh.WithServices("svc"))
	c := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, c, "svc", "feat1", 10, "base-1", "base-2")
	static.Set("svc", list[:3])
	meshtest.WaitFor(t, 5*time.Second, "feat1-1 known", func() bool { return len(m.Table().Instances("svc", "")) == 3 })
	meshtest.ExpectOnly(t, c, "svc", "feat1", 10, "feat1-1")
	meshtest.ExpectOnly(t, c, "svc", "", 10, "base-1", "base-2")
	static.Set("svc", list[:2])
	meshtest.WaitFor(t, 5*time.Second, "feat1-1 gone", func() bool { return len(m.Table().Instances("svc", "")) == 2 })
	meshtest.ExpectOnly(t, c, "svc", "feat1", 10, "base-1", "base-2")
}
