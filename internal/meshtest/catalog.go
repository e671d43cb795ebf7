package meshtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// CatalogPlane is a control plane holding rules in the per-service
// layout, for RunCatalogSuite. Its documents must start empty: each run
// uses a catalog of its own (a fresh directory, etcd prefix or Nacos
// group).
type CatalogPlane struct {
	// Catalog is the catalog under test.
	Catalog rules.Catalog
	// Put publishes doc as the document called name.
	Put func(name, doc string) error
	// Delete removes the document called name.
	Delete func(name string) error
	// Unreachable returns a catalog that names its documents as Catalog
	// does but whose control plane does not answer, and a function that
	// releases it.
	Unreachable func() (rules.Catalog, func())
	// Settle bounds how long a published change may take to apply.
	Settle time.Duration
}

// SlowCatalog is a real catalog whose every watch begins Delay late, as
// a catalog far away answers.
type SlowCatalog struct {
	rules.Catalog
	Delay time.Duration
}

// Watch implements rules.Catalog.
func (c SlowCatalog) Watch(ctx context.Context, name string, update func(rules.Document)) error {
	select {
	case <-time.After(c.Delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.Catalog.Watch(ctx, name, update)
}

// ClosedAddr returns a loopback address nothing listens on: a control
// plane that does not answer.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// catalogDefaults is the defaults document of RunCatalogSuite: every
// service without a timeout of its own gives up after 300 ms.
const catalogDefaults = "apiVersion: lightmesh/v1\ndefaults:\n  timeout: 300ms\n"

// RunCatalogSuite holds the promises of the per-service layout against
// plane, through a real mesh and real HTTP backends:
//   - two documents published at the same moment, one valid and one
//     broken: the valid one applies, the broken one is rejected with its
//     path, and each service serves by its own last good rules;
//   - a document describing another service is rejected; reverted, its
//     rejection is history, and published again it is rejected again;
//   - an emptied document is deleted, not rejected;
//   - a deleted document keeps its last good rules serving;
//   - a service without a document takes the defaults (its calls time
//     out by the default timeout), as does one found on first use;
//   - a restart with the control plane down starts each document from the
//     local snapshot and routes as before.
func RunCatalogSuite(t *testing.T, plane CatalogPlane) {
	_, instances := Fleet(t, "base-user", "staging-user", "base-order", "staging-order")
	// Both answer after 2 s, when a call has not given up before.
	slowInstance := func() discovery.Instance {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(srv.Close)
		return discovery.Instance{Address: strings.TrimPrefix(srv.URL, "http://")}
	}
	disc := discovery.NewStatic(map[string][]discovery.Instance{
		"user-api":     instances[0:2],
		"order-api":    instances[2:4],
		"slow-api":     {slowInstance()},
		"found-on-use": {slowInstance()},
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(plane.Put(rules.DefaultsName, catalogDefaults))
	must(plane.Put("user-api", LaneRules("user-api")))
	must(plane.Put("order-api", LaneRules("order-api")))
	snapshots := t.TempDir()
	options := func(cat rules.Catalog, extra ...mesh.Option) []mesh.Option {
		return append([]mesh.Option{mesh.WithRuleCatalog(cat), mesh.WithDiscovery(disc),
			mesh.WithServices("user-api", "order-api", "slow-api"), mesh.WithMeshServices("found-*"),
			mesh.WithSnapshotDir(snapshots)}, extra...)
	}
	reg := prometheus.NewRegistry()
	m := Start(t, 20*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, options(plane.Catalog, mesh.WithStartTimeout(15*time.Second), mesh.WithRegisterer(reg))...)
	})
	client := &http.Client{Transport: m.Transport(nil)}
	lanes := func(when string) {
		t.Helper()
		ExpectOnly(t, client, "user-api", "", 5, "base-user")
		ExpectOnly(t, client, "user-api", "staging", 5, "staging-user")
		if t.Failed() {
			t.Fatalf("user-api lost its lane rules %s", when)
		}
	}
	lanes("at start")
	ExpectOnly(t, client, "order-api", "staging", 5, "staging-order")
	ExpectOnly(t, client, "order-api", "", 5, "base-order")
	doc := func(name string) mesh.DocumentStatus {
		for _, d := range m.Status().Documents {
			if d.Name == name {
				return d
			}
		}
		return mesh.DocumentStatus{}
	}
	for _, name := range []string{rules.DefaultsName, "user-api", "order-api"} {
		if st := doc(name); st.State != mesh.DocumentApplied || st.Source != plane.Catalog.Describe(name) {
			t.Fatalf("document %s: %+v, want applied from %s", name, st, plane.Catalog.Describe(name))
		}
	}

	// One valid and one broken document at the same moment.
	var wg sync.WaitGroup
	var putErr [2]error
	wg.Add(2)
	go func() { defer wg.Done(); putErr[0] = plane.Put("user-api", BrokenRules("user-api")) }()
	go func() { defer wg.Done(); putErr[1] = plane.Put("order-api", MovedRules("order-api")) }()
	wg.Wait()
	must(errors.Join(putErr[:]...))
	WaitFor(t, plane.Settle, "order-api's valid update applied", func() bool {
		name, err := Call(client, "order-api", "")
		return err == nil && name == "staging-order"
	})
	WaitFor(t, plane.Settle, "user-api's broken update rejected", func() bool { return doc("user-api").LastRejection != nil })
	ExpectOnly(t, client, "order-api", "", 10, "staging-order")
	lanes("after its broken update")
	rej := doc("user-api").LastRejection
	if !strings.Contains(rej.Error, "services.user-api.routes[0].destinations[0].weight") {
		t.Errorf("user-api's rejection does not name the place: %q", rej.Error)
	}
	if st := doc("order-api"); st.LastRejection != nil || st.State != mesh.DocumentApplied {
		t.Errorf("order-api: %+v, want applied without a rejection", st)
	}

	// The status page shows each document, what it takes from the
	// defaults and its rejection.
	rec := httptest.NewRecorder()
	m.StatusHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status?format=html", nil))
	page := rec.Body.String()
	for _, want := range []string{`<tr id="doc-user-api">`, `<tr id="doc-_defaults">`, "services.user-api.routes[0].destinations[0].weight",
		`<td>timeout</td>`, `<span class="badge b-ok">applied</span>`} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}

	// The metrics count per document.
	if got := Metric(t, reg, "lightmesh_rule_document_updates_total", map[string]string{"document": "user-api", "result": "rejected"}); got != 1 {
		t.Errorf("user-api's rejections counted %v, want 1", got)
	}
	if got := Metric(t, reg, "lightmesh_rule_document_updates_total", map[string]string{"document": "order-api", "result": "rejected"}); got != -1 {
		t.Errorf("order-api's rejections counted %v, want none", got)
	}
	orderVersion := doc("order-api").Version
	if got := Metric(t, reg, "lightmesh_rule_document_info", map[string]string{"document": "order-api", "version": orderVersion}); got != 1 {
		t.Errorf("lightmesh_rule_document_info{order-api, %s} = %v, want 1", orderVersion, got)
	}

	// A document that describes another service.
	must(plane.Put("user-api", MovedRules("order-api")))
	WaitFor(t, plane.Settle, "user-api's document for order-api rejected", func() bool {
		r := doc("user-api").LastRejection
		return r != nil && strings.Contains(r.Error, `may describe only "user-api"`)
	})
	lanes("after a document for another service")

	// Reverted to its good content: the rejection turns into history.
	// The broken document published again is rejected again, loudly.
	must(plane.Put("user-api", LaneRules("user-api")))
	WaitFor(t, plane.Settle, "user-api's revert to its good content", func() bool {
		d := doc("user-api")
		return d.State == mesh.DocumentApplied && d.LastRejection != nil && d.LastRejection.At.Before(d.AppliedAt)
	})
	must(plane.Put("user-api", MovedRules("order-api")))
	WaitFor(t, plane.Settle, "user-api's broken document rejected again after the revert", func() bool {
		return Metric(t, reg, "lightmesh_rule_document_updates_total", map[string]string{"document": "user-api", "result": "rejected"}) == 3
	})
	lanes("after the broken document came back")

	// Emptied: the same as deleted, not a rejection. (Nacos refuses to
	// publish empty content; its catalog reports a deleted item.)
	if err := plane.Put("user-api", ""); err != nil {
		t.Logf("the control plane refuses an empty document (%v): deleting is its only way to empty one", err)
	} else {
		WaitFor(t, plane.Settle, "user-api emptied, seen as deleted", func() bool { return doc("user-api").State == mesh.DocumentDeleted })
		if got := Metric(t, reg, "lightmesh_rule_document_updates_total", map[string]string{"document": "user-api", "result": "rejected"}); got != 3 {
			t.Errorf("user-api's rejections after it was emptied: %v, want still 3", got)
		}
		lanes("after it was emptied")
		must(plane.Put("user-api", LaneRules("user-api")))
		WaitFor(t, plane.Settle, "user-api published again", func() bool { return doc("user-api").State == mesh.DocumentApplied })
	}

	// Deleted: the last good rules keep serving.
	must(plane.Delete("order-api"))
	WaitFor(t, plane.Settle, "order-api's deletion seen", func() bool { return doc("order-api").State == mesh.DocumentDeleted })
	ExpectOnly(t, client, "order-api", "", 5, "staging-order")

	// No document: the defaults' 300 ms timeout applies.
	for _, target := range []string{"slow-api", "found-on-use"} {
		start := time.Now()
		_, err := Call(client, target, "")
		if took := time.Since(start); err == nil || took > 1500*time.Millisecond {
			t.Errorf("%s without a document: err %v after %v, want the defaults' 300ms timeout", target, err, took)
		}
	}
	if st := doc("slow-api"); st.State != mesh.DocumentMissing || len(st.Defaulted) != 1 || st.Defaulted[0] != "timeout" {
		t.Errorf("slow-api: %+v, want missing, taking the timeout from the defaults", st)
	}
	if d := doc("user-api").Defaulted; len(d) != 1 || d[0] != "timeout" {
		t.Errorf("user-api takes %v from the defaults, want [timeout]", d)
	}
	must(m.Close())

	// Restart with the control plane down: each document from the
	// snapshot.
	down, release := plane.Unreachable()
	defer release()
	m2 := Start(t, 20*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, options(down, mesh.WithStartTimeout(2*time.Second))...)
	})
	m = m2
	client = &http.Client{Transport: m.Transport(nil)}
	lanes("after a restart from the snapshot")
	ExpectOnly(t, client, "order-api", "", 5, "staging-order")
	for _, name := range []string{rules.DefaultsName, "user-api", "order-api", "slow-api"} {
		if st := doc(name); !st.FromSnapshot {
			t.Errorf("document %s after the restart: %+v, want from the snapshot", name, st)
		}
	}
	start := time.Now()
	if _, err := Call(client, "slow-api", ""); err == nil || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("slow-api after the restart: err %v after %v, want the saved defaults' timeout", err, time.Since(start))
	}
}
