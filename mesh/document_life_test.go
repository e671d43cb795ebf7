package mesh_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// userAPIPart is user-api's own document in a per-service layout.
const userAPIPart = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - destinations: [{subset: base}]
`

// layoutCase runs one of the two rule layouts over files a test rewrites.
type layoutCase struct {
	name string
	good string
	// file is the file holding the document the test changes.
	file func(dir string) string
	opt  func(dir string) mesh.Option
	// doc returns the status of the document the test changes.
	doc func(st mesh.Status) mesh.DocumentStatus
}

func (lc layoutCase) history(st mesh.Status) []mesh.DocumentEvent { return lc.doc(st).History }

func layouts() []layoutCase {
	return []layoutCase{
		{
			name: "WithRules",
			good: laneRules,
			file: func(dir string) string { return filepath.Join(dir, "rules.yaml") },
			opt: func(dir string) mesh.Option {
				return mesh.WithRules(rules.NewFile(filepath.Join(dir, "rules.yaml"), 10*time.Millisecond))
			},
			doc: func(st mesh.Status) mesh.DocumentStatus {
				return mesh.DocumentStatus{State: st.Rules.State, Version: st.Rules.Version, AppliedAt: st.Rules.AppliedAt,
					LastRejection: st.LastRejection, History: st.Rules.History}
			},
		},
		{
			name: "WithRuleCatalog",
			good: userAPIPart,
			file: func(dir string) string { return filepath.Join(dir, "user-api.yaml") },
			opt:  func(dir string) mesh.Option { return mesh.WithRuleCatalog(rules.NewDir(dir, 10*time.Millisecond)) },
			doc: func(st mesh.Status) mesh.DocumentStatus {
				for _, d := range st.Documents {
					if d.Name == "user-api" {
						return d
					}
				}
				return mesh.DocumentStatus{}
			},
		},
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	// A new modification time for every write, even within the clock's
	// granularity, so the poller sees each one.
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Duration(time.Now().UnixNano()%1000+1) * time.Millisecond)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// TestBrokenDocumentAgainAfterRevert: a broken document, reverted to the
// good one and then published again, is rejected again, loudly (event,
// log, counted rejected, not unchanged), in both layouts; and after the
// revert the rejection shows as history, not as the current state.
func TestBrokenDocumentAgainAfterRevert(t *testing.T) {
	for _, lc := range layouts() {
		t.Run(lc.name, func(t *testing.T) {
			_, list := fleet(t)
			dir := t.TempDir()
			path := lc.file(dir)
			write(t, path, lc.good)
			var logs meshtest.LogBuffer
			events := make(chan mesh.RulesEvent, 64)
			reg := prometheus.NewRegistry()
			m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
				return mesh.New(ctx, lc.opt(dir), mesh.WithServices("user-api"), mesh.WithLogger(logs.Logger()), mesh.WithRegisterer(reg),
					mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": list})),
					mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
			})
			bad := strings.Replace(lc.good, "{subset: base}]", "{subset: bsae}]", 1)
			rejected := func() mesh.RulesEvent {
				return meshtest.Next(t, events, 5*time.Second, "the rejection", func(ev mesh.RulesEvent) bool { return ev.Err != nil })
			}

			write(t, path, bad)
			rejected()
			write(t, path, lc.good)
			meshtest.WaitFor(t, 5*time.Second, "the revert to show the rejection as history", func() bool {
				d := lc.doc(m.Status())
				return d.State == mesh.DocumentApplied && d.LastRejection != nil && d.LastRejection.At.Before(d.AppliedAt)
			})
			if lc.name == "WithRules" {
				page := statusHTML(t, m)
				if strings.Contains(page, `class="alert"`) || !strings.Contains(page, `<div class="history" id="last-rejection">`) {
					t.Errorf("after the revert the page still alerts on the old rejection:\n%s", page)
				}
				if !strings.Contains(page, `<details id="rules-history">`) {
					t.Errorf("the page shows no history of the rule document:\n%s", page)
				}
			}
			write(t, path, bad)
			ev := rejected()
			if !strings.Contains(ev.Err.Error(), "bsae") {
				t.Fatalf("second rejection: %v", ev.Err)
			}
			if n := logs.Count("rule document rejected"); n != 2 {
				t.Errorf("rejections logged: %d, want 2\n%s", n, logs.String())
			}
			if got := meshtest.Metric(t, reg, "lightmesh_rule_updates_total", map[string]string{"result": "rejected"}); got != 2 {
				t.Errorf("rejections counted: %v, want 2", got)
			}
			d := lc.doc(m.Status())
			if d.LastRejection == nil || d.LastRejection.At.Before(d.AppliedAt) {
				t.Errorf("status after the second rejection: %+v; want a current rejection", d)
			}
			var states []string
			for _, ev := range lc.history(m.Status()) {
				states = append(states, ev.State)
			}
			if got, want := strings.Join(states, " "), "applied rejected applied rejected"; got != want {
				t.Errorf("history: %s, want %s", got, want)
			}
		})
	}
}

// TestEmptiedDocumentIsDeleted: emptying a document means what deleting
// it means, in both layouts: state deleted, the last good rules keep
// serving, and publishing it again applies it.
func TestEmptiedDocumentIsDeleted(t *testing.T) {
	for _, lc := range layouts() {
		t.Run(lc.name, func(t *testing.T) {
			backends, list := fleet(t)
			_ = backends
			dir := t.TempDir()
			path := lc.file(dir)
			write(t, path, strings.Replace(lc.good, "{subset: base}]", "{subset: staging}]", 1))
			var logs meshtest.LogBuffer
			m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
				return mesh.New(ctx, lc.opt(dir), mesh.WithServices("user-api"), mesh.WithLogger(logs.Logger()),
					mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": list})))
			})
			client := &http.Client{Transport: m.Transport(nil)}
			write(t, path, "")
			meshtest.WaitFor(t, 5*time.Second, "the emptied document to read as deleted", func() bool {
				return lc.doc(m.Status()).State == mesh.DocumentDeleted
			})
			if d := lc.doc(m.Status()); d.LastRejection != nil {
				t.Errorf("an emptied document was rejected: %+v", d.LastRejection)
			}
			for range 4 {
				body, err := meshtest.Get(context.Background(), client, "http://user-api/", nil)
				if err != nil || !strings.HasPrefix(body, "staging-") {
					t.Fatalf("after emptying: %q, %v; the last good rules must keep serving", body, err)
				}
			}
			write(t, path, lc.good)
			meshtest.WaitFor(t, 5*time.Second, "the document published again to apply", func() bool {
				return lc.doc(m.Status()).State == mesh.DocumentApplied
			})
			meshtest.ExpectOnly(t, client, "user-api", "", 4, "base-1", "base-2")
		})
	}
}

func statusHTML(t *testing.T, m *mesh.Mesh) string {
	t.Helper()
	srv := httptest.NewServer(m.StatusHandler())
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestRevertUnderNewVersionIsInForce: the good content published again
// under a new version (as etcd gives every put a new revision) after a
// rejection shows that version in force.
func TestRevertUnderNewVersionIsInForce(t *testing.T) {
	_, list := fleet(t)
	src := rules.NewMemory([]byte(laneRules))
	events := make(chan mesh.RulesEvent, 16)
	reg := prometheus.NewRegistry()
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }), mesh.WithRegisterer(reg))
	src.Set([]byte(strings.Replace(laneRules, "{subset: base}]", "{subset: bsae}]", 1))) // version 2
	meshtest.Next(t, events, 5*time.Second, "the rejection", func(ev mesh.RulesEvent) bool { return ev.Err != nil })
	src.Set([]byte(laneRules)) // version 3, the content in force
	meshtest.WaitFor(t, 5*time.Second, "version 3 in force", func() bool {
		st := m.Status()
		return st.Rules.Version == "3" && st.Rules.State == mesh.DocumentApplied
	})
	if v := meshtest.Metric(t, reg, "lightmesh_rules_info", map[string]string{"version": "3"}); v != 1 {
		t.Errorf("lightmesh_rules_info{version=\"3\"} = %v, want 1: the metric must name the version in force", v)
	}
}

// TestSnapshotForgetsServicesNoLongerWatched: when the rules stop naming
// a service, its instance snapshot file is removed, so a restart never
// routes to it from a stale list.
func TestSnapshotForgetsServicesNoLongerWatched(t *testing.T) {
	_, list := fleet(t)
	dir := t.TempDir()
	src := rules.NewMemory([]byte(laneRules))
	disc := discovery.NewStatic(map[string][]discovery.Instance{"user-api": list, "order-api": list})
	m := newMesh(t, src, disc, mesh.WithSnapshotDir(dir))
	saved := func(service string) bool {
		_, err := os.Stat(filepath.Join(dir, "instances", "svc-"+service+".json"))
		return err == nil
	}
	meshtest.WaitFor(t, 5*time.Second, "user-api's instances saved", func() bool { return saved("user-api") })
	src.Set([]byte(strings.ReplaceAll(laneRules, "user-api:", "order-api:")))
	meshtest.WaitFor(t, 5*time.Second, "order-api's instances saved", func() bool { return saved("order-api") })
	meshtest.WaitFor(t, 5*time.Second, "user-api's snapshot removed", func() bool { return !saved("user-api") })
	_ = m
}
