package mesh_test

import (
	"context"
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

// dirPlane is a per-service layout in a directory, one file per document.
func dirPlane(t *testing.T) meshtest.CatalogPlane {
	dir := t.TempDir()
	const poll = 20 * time.Millisecond
	return meshtest.CatalogPlane{
		Catalog: rules.NewDir(dir, poll),
		Put: func(name, doc string) error {
			// Written whole and renamed, as config tools do.
			tmp := filepath.Join(dir, "."+name+".tmp")
			if err := os.WriteFile(tmp, []byte(doc), 0o600); err != nil {
				return err
			}
			return os.Rename(tmp, filepath.Join(dir, name+".yaml"))
		},
		Delete: func(name string) error { return os.Remove(filepath.Join(dir, name+".yaml")) },
		Unreachable: func() (rules.Catalog, func()) {
			// The same directory, gone: every watch fails.
			away := dir + ".away"
			if err := os.Rename(dir, away); err != nil {
				t.Fatal(err)
			}
			return rules.NewDir(dir, poll), func() { os.Rename(away, dir) }
		},
		Settle: 5 * time.Second,
	}
}

func TestCatalogFromDirectory(t *testing.T) { meshtest.RunCatalogSuite(t, dirPlane(t)) }

func TestCatalogAndRulesAreExclusive(t *testing.T) {
	ctx := context.Background()
	for _, opts := range [][]mesh.Option{
		{mesh.WithRules(rules.NewMemory(nil)), mesh.WithRuleCatalog(rules.NewDir(t.TempDir(), 0))},
		{mesh.WithRuleCatalog(rules.NewDir(t.TempDir(), 0)), mesh.WithRules(rules.NewMemory(nil))},
	} {
		m, err := mesh.New(ctx, opts...)
		if err == nil {
			m.Close()
			t.Fatal("New took both a rule catalog and a rule source")
		}
		if !strings.Contains(err.Error(), "both WithRuleCatalog (dir:") {
			t.Errorf("error %q does not name both", err)
		}
	}
	_, err := mesh.New(ctx, mesh.WithRuleCatalog(rules.NewDir("a", 0)), mesh.WithRuleCatalog(rules.NewDir("b", 0)))
	if err == nil || !strings.Contains(err.Error(), "WithRuleCatalog given twice (dir:a, then dir:b)") {
		t.Errorf("two catalogs: %v", err)
	}
	_, err = mesh.New(ctx, mesh.WithRuleCatalog(rules.NewDir("a", 0)), mesh.WithServices("user-api", rules.DefaultsName))
	if err == nil || !strings.Contains(err.Error(), `"_defaults" names the defaults document`) {
		t.Errorf("a service called _defaults: %v", err)
	}
}

// Without an answer and without a snapshot, New fails and names the
// documents it waited for.
func TestCatalogUnreachableWithoutSnapshotFails(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gone")
	_, err := mesh.New(context.Background(), mesh.WithRuleCatalog(rules.NewDir(missing, 0)),
		mesh.WithServices("user-api"), mesh.WithStartTimeout(300*time.Millisecond))
	if err == nil {
		t.Fatal("New succeeded without rules")
	}
	for _, want := range []string{"no rules from dir:" + missing, "no answer for _defaults, user-api", "no such file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// A service found on first use is routed by its own document from its
// first call; with the catalog down, by the document the snapshot saved;
// and once the catalog is back, nothing is reported as from the
// snapshot any more.
func TestCatalogFirstUseDocuments(t *testing.T) {
	plane := dirPlane(t)
	_, instances := meshtest.Fleet(t, "base-found", "staging-found", "base-missing")
	disc := discovery.NewStatic(map[string][]discovery.Instance{"found-api": instances[:2], "missing-api": instances[2:]})
	if err := plane.Put("found-api", meshtest.MovedRules("found-api")); err != nil {
		t.Fatal(err)
	}
	snapshots := t.TempDir()
	start := func(cat rules.Catalog, timeout time.Duration) *mesh.Mesh {
		return meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
			return mesh.New(ctx, mesh.WithRuleCatalog(cat), mesh.WithDiscovery(disc), mesh.WithMeshServices("*-api"),
				mesh.WithSnapshotDir(snapshots), mesh.WithStartTimeout(timeout))
		})
	}
	// The catalog answers 300 ms late, later than discovery.
	m := start(meshtest.SlowCatalog{Catalog: plane.Catalog, Delay: 300 * time.Millisecond}, 5*time.Second)
	client := &http.Client{Transport: m.Transport(nil)}
	// MovedRules sends every call to staging: the first call too.
	meshtest.ExpectOnly(t, client, "found-api", "", 6, "staging-found")
	meshtest.ExpectOnly(t, client, "missing-api", "", 2, "base-missing")
	meshtest.WaitFor(t, 5*time.Second, "snapshot written", func() bool {
		st := m.Status()
		return st.Snapshot != nil && st.Snapshot.Writes >= 3 // _defaults, found-api, missing-api
	})
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	down, release := plane.Unreachable()
	m = start(down, 300*time.Millisecond)
	client = &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, "found-api", "", 6, "staging-found")
	doc := func(name string) mesh.DocumentStatus {
		for _, d := range m.Status().Documents {
			if d.Name == name {
				return d
			}
		}
		return mesh.DocumentStatus{}
	}
	if st := doc("found-api"); st.State != mesh.DocumentApplied || !st.FromSnapshot {
		t.Fatalf("found-api with the catalog down: %+v, want applied from the snapshot", st)
	}
	meshtest.ExpectOnly(t, client, "missing-api", "", 2, "base-missing")
	if st := doc("missing-api"); st.State != mesh.DocumentMissing || !st.FromSnapshot {
		t.Fatalf("missing-api with the catalog down: %+v, want missing, from the snapshot", st)
	}
	release() // the directory is back
	meshtest.WaitFor(t, 10*time.Second, "the catalog answered again", func() bool {
		st := m.Status()
		return !st.Rules.FromSnapshot && !doc("found-api").FromSnapshot && !doc("missing-api").FromSnapshot &&
			doc(rules.DefaultsName).State == mesh.DocumentMissing
	})
}
