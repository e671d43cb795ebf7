package mesh_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
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
