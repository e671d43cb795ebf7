package router_test

import (
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/router"
)

// Invalid lanes rules are rejected with their place in the document.
func TestLanesRejectedWithPath(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"services:\n  a:\n    lanes: {base: {labels: {env: base}}}\n", "services.a.lanes.label: required"},
		{"services:\n  a:\n    lanes: {label: env, header: \"x env\"}\n", `services.a.lanes.header: "x env" is not a header name`},
		{"services:\n  a:\n    lanes: {label: env, base: {labels: {}}}\n", "services.a.lanes.base.labels: at least one label is required"},
		{"defaults:\n  lanes: {header: x-env}\n", "defaults.lanes.label: required"},
		{"services:\n  a:\n    lanes: {label: env, lane: x}\n", "services.a.lanes.lane: unknown field"},
		{"services:\n  a:\n    lanes: {label: env, entry: [{header: x-a, cookie: b}]}\n", "services.a.lanes.entry[0]: set exactly one of header, cookie and query (2 set)"},
		{"services:\n  a:\n    lanes: {label: env, entry: [{query: q, percent: 5}]}\n", "services.a.lanes.entry[0].lane: required"},
		{"services:\n  a:\n    lanes: {label: env, entry: [{query: q, percent: 150, lane: f}]}\n", "services.a.lanes.entry[0].percent: must be in (0, 100]"},
		{"services:\n  a:\n    lanes: {label: env, entry: [{query: q, lane: f}]}\n", "services.a.lanes.entry[0].lane: only with percent"},
		{"services:\n  a:\n    lanes: {label: env, entry: [{query: q, percent: 5, lane: \"a,b\"}]}\n", "services.a.lanes.entry[0].lane: \"a,b\" is not a lane value"},
	} {
		_, err := router.Load([]byte("apiVersion: lightmesh/v1\n" + tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.doc, err, tc.want)
		}
	}
	if _, err := router.Load([]byte("apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env}\nservices:\n  a:\n    lanes: {label: lane, header: x-lane, base: {labels: {lane: base}}}\n")); err != nil {
		t.Fatal(err)
	}
}

// What is in force shows the lanes rule, the service's own or the
// defaults', with the header filled in.
func TestLanesInForce(t *testing.T) {
	rs, err := router.Load([]byte("apiVersion: lightmesh/v1\ndefaults:\n  lanes: {label: env}\nservices:\n  a:\n    lanes: {label: lane, header: x-lane, base: {labels: {lane: base}}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l := rs.InForce("a").Lanes; l == nil || l.Label != "lane" || l.Header != "x-lane" || l.Base["lane"] != "base" {
		t.Errorf("a: %+v", l)
	}
	if l := rs.InForce("unnamed").Lanes; l == nil || l.Label != "env" || l.Header != "x-env" || l.Base != nil {
		t.Errorf("unnamed: %+v", l)
	}
}
