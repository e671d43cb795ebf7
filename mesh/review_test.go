package mesh_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestEmptiedDocumentRestartsAlike: with the rule file emptied, a restart
// starts from the last good document of the snapshot, and so does the
// restart after it, with the source in the same state: starting from the
// snapshot must not overwrite it with "no document".
func TestEmptiedDocumentRestartsAlike(t *testing.T) {
	_, list := fleet(t)
	snapDir := t.TempDir()
	ruleFile := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, ruleFile, laneRules)
	disc := discovery.NewStatic(map[string][]discovery.Instance{"user-api": list})
	start := func(what string) *mesh.Mesh {
		t.Helper()
		m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(ruleFile, 10*time.Millisecond)),
			mesh.WithDiscovery(disc), mesh.WithSnapshotDir(snapDir), mesh.WithStartTimeout(2*time.Second))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return m
	}
	first := start("first start")
	version := first.Status().Rules.Version
	first.Close()

	write(t, ruleFile, "")
	for _, what := range []string{"restart with the document emptied", "second restart, nothing changed"} {
		m := start(what)
		st := m.Status()
		m.Close()
		if st.Rules.Version != version || !st.Rules.FromSnapshot {
			t.Fatalf("%s: rules %+v, want version %s from the snapshot", what, st.Rules, version)
		}
	}
	saved, err := os.ReadFile(filepath.Join(snapDir, "rules.json"))
	if err != nil || !strings.Contains(string(saved), "user-api") {
		t.Fatalf("snapshot after the restarts: %s, %v; want the last good document", saved, err)
	}
}

// TestCallerDeadlineStartsFromSnapshot: with the rule source down and a
// snapshot, New given a context whose deadline comes before the start
// timeout starts from the snapshot, as it does at the start timeout: the
// caller's deadline ends the wait, it does not switch the snapshot off.
func TestCallerDeadlineStartsFromSnapshot(t *testing.T) {
	_, list := fleet(t)
	snapDir := t.TempDir()
	ruleFile := filepath.Join(t.TempDir(), "rules.yaml")
	write(t, ruleFile, laneRules)
	disc := discovery.NewStatic(map[string][]discovery.Instance{"user-api": list})
	first, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(ruleFile, 10*time.Millisecond)),
		mesh.WithDiscovery(disc), mesh.WithSnapshotDir(snapDir))
	if err != nil {
		t.Fatal(err)
	}
	version := first.Status().Rules.Version
	first.Close()

	if err := os.Remove(ruleFile); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(rules.NewFile(ruleFile, 10*time.Millisecond)),
		mesh.WithDiscovery(silentDiscovery{}), mesh.WithSnapshotDir(snapDir)) // start timeout: the default 10s
	if err != nil {
		t.Fatalf("source down, snapshot present, caller's deadline before the start timeout: %v", err)
	}
	defer m.Close()
	if st := m.Status(); st.Rules.Version != version || !st.Rules.FromSnapshot {
		t.Fatalf("rules %+v, want version %s from the snapshot", st.Rules, version)
	}
}

// TestCallerDeadlineStartsWithSavedInstances: with discovery down, New
// given a context whose deadline comes before the start timeout starts
// with the saved instance lists, as it does at the start timeout, instead
// of failing although the rules serve.
func TestCallerDeadlineStartsWithSavedInstances(t *testing.T) {
	_, list := fleet(t)
	snapDir := t.TempDir()
	first := newMesh(t, rules.NewMemory([]byte(laneRules)),
		namedDiscovery{discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}), "registry-prod"},
		mesh.WithSnapshotDir(snapDir))
	first.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(laneRules))),
		mesh.WithDiscovery(silentDiscovery{"registry-prod"}), mesh.WithSnapshotDir(snapDir)) // start timeout: the default 10s
	if err != nil {
		t.Fatalf("discovery down, instances saved, caller's deadline before the start timeout: %v", err)
	}
	defer m.Close()
	client := &http.Client{Transport: m.Transport(nil)}
	if body, err := meshtest.Get(context.Background(), client, "http://user-api/", nil); err != nil || !strings.HasPrefix(body, "base-") {
		t.Fatalf("call with the saved instances: %q, %v", body, err)
	}
}

// credentialCatalog is a catalog whose document names carry a password,
// as a home-made catalog naming its server by URL would.
type credentialCatalog struct{ *rules.Dir }

func (c credentialCatalog) Describe(name string) string {
	return "etcd://root:s3cret@10.0.0.1:2379/rules/" + name
}

// TestCatalogDocumentNamesRedacted: the name of a catalog's document is
// shown with its credentials redacted wherever the mesh shows it: the
// log, Status, LastRejection (whose Source promises it).
func TestCatalogDocumentNamesRedacted(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "user-api.yaml"), strings.Replace(userAPIPart, "{subset: base}]", "{subset: bsae}]", 1))
	var logs meshtest.LogBuffer
	m, err := mesh.New(context.Background(), mesh.WithRuleCatalog(credentialCatalog{rules.NewDir(dir, 10*time.Millisecond)}),
		mesh.WithServices("user-api"), mesh.WithLogger(logs.Logger()), mesh.WithStartTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var rej *mesh.RejectionError
	if !errors.As(m.LastRejection(), &rej) {
		t.Fatalf("LastRejection() = %v, want the rejection of user-api", m.LastRejection())
	}
	shown := map[string]string{"RejectionError.Source": rej.Source, "log": logs.String()}
	for _, d := range m.Status().Documents {
		shown["Status().Documents "+d.Name] = d.Source
	}
	for where, s := range shown {
		if strings.Contains(s, "s3cret") {
			t.Errorf("%s shows the catalog's password: %s", where, s)
		}
	}
}

// TestDeletedThenBrokenIsNotDeleted: a document emptied (state deleted)
// and then published again in a broken version is no longer shown as
// deleted: the source holds a document, rejected, and the last good
// rules are in force, as after any rejection of an applied document.
func TestDeletedThenBrokenIsNotDeleted(t *testing.T) {
	for _, lc := range layouts() {
		t.Run(lc.name, func(t *testing.T) {
			_, list := fleet(t)
			dir := t.TempDir()
			path := lc.file(dir)
			write(t, path, lc.good)
			events := make(chan mesh.RulesEvent, 64)
			m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
				return mesh.New(ctx, lc.opt(dir), mesh.WithServices("user-api"),
					mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": list})),
					mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
			})
			write(t, path, "")
			meshtest.WaitFor(t, 5*time.Second, "the emptied document to read as deleted", func() bool {
				return lc.doc(m.Status()).State == mesh.DocumentDeleted
			})
			write(t, path, strings.Replace(lc.good, "{subset: base}]", "{subset: bsae}]", 1))
			meshtest.Next(t, events, 5*time.Second, "the rejection", func(ev mesh.RulesEvent) bool { return ev.Err != nil })
			if d := lc.doc(m.Status()); d.State != mesh.DocumentApplied || d.LastRejection == nil || d.LastRejection.At.Before(d.AppliedAt) {
				t.Errorf("after a broken version of a deleted document: state %s, last rejection %+v; want applied (the last good rules in force) with a current rejection",
					d.State, d.LastRejection)
			}
		})
	}
}

// TestOutageLogsWithoutFlooding: a rule source that keeps failing the
// same way is logged when it starts failing, not on every retry; the
// status keeps counting the attempts.
func TestOutageLogsWithoutFlooding(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "rules.yaml")
	var logs meshtest.LogBuffer
	m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(missing, 0)), mesh.WithStartEmpty(),
		mesh.WithStartTimeout(50*time.Millisecond), mesh.WithReconnectBackoff(time.Millisecond, 5*time.Millisecond),
		mesh.WithLogger(logs.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	meshtest.WaitFor(t, 5*time.Second, "30 failed attempts", func() bool { return m.Status().Watcher.Attempts >= 30 })
	if n := logs.Count("rule source failed"); n < 1 || n > 3 {
		t.Errorf("%d warnings for %d attempts failing alike, want the outage logged once, not every retry:\n%.2000s",
			n, m.Status().Watcher.Attempts, logs.String())
	}
}

// TestSnapshotWriteRetried: a snapshot write that fails (the disk full,
// the directory gone for a moment) is tried again, so a later restart
// with the control plane down starts from the rules in force, not from
// those before the failure.
func TestSnapshotWriteRetried(t *testing.T) {
	_, list := fleet(t)
	dir := filepath.Join(t.TempDir(), "snap")
	src := rules.NewMemory([]byte(laneRules))
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}), mesh.WithSnapshotDir(dir))
	saved := func() string {
		b, _ := os.ReadFile(filepath.Join(dir, "rules.json"))
		return string(b)
	}
	meshtest.WaitFor(t, 5*time.Second, "the first snapshot", func() bool { return strings.Contains(saved(), "user-api") })

	// The directory is not one for a while: the write of version 2 fails.
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	src.Set([]byte(strings.Replace(laneRules, "user-api:", "order-api:", 1)))
	meshtest.WaitFor(t, 5*time.Second, "the failed write in the status", func() bool {
		st := m.Status()
		return st.Snapshot != nil && st.Snapshot.LastError != ""
	})
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 10*time.Second, "version 2 in the snapshot once the directory is back", func() bool {
		return strings.Contains(saved(), "order-api")
	})
}

// TestFirstUseKeepsTheCallersDeadline: the first call to a host found on
// first use, with a catalog that does not answer for the host's document,
// ends at the call's own deadline, not after the mesh's 2 s wait for the
// catalog.
func TestFirstUseKeepsTheCallersDeadline(t *testing.T) {
	_, list := fleet(t)
	dir := filepath.Join(t.TempDir(), "rules")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRuleCatalog(rules.NewDir(dir, 10*time.Millisecond)), mesh.WithMeshServices("*-api"),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": list})),
			mesh.WithReconnectBackoff(time.Second, time.Second))
	})
	if err := os.RemoveAll(dir); err != nil { // the catalog stops answering
		t.Fatal(err)
	}
	client := &http.Client{Transport: m.Transport(nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := meshtest.Get(ctx, client, "http://user-api/", nil)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("a first call with a 200ms deadline took %v (err %v): it must end at its deadline", took, err)
	}
}
