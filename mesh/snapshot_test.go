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

// silentDiscovery never reports any instance: a registry that is down.
type silentDiscovery struct{}

func (silentDiscovery) Watch(ctx context.Context, _ string, _ func([]discovery.Instance)) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestStartFromSnapshotWhenControlPlaneIsDown(t *testing.T) {
	_, list := fleet(t)
	snapDir := t.TempDir()
	ruleFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(laneRules), 0o644); err != nil {
		t.Fatal(err)
	}

	// A first run with everything up leaves a snapshot behind.
	first := newMesh(t, rules.NewFile(ruleFile, 10*time.Millisecond), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}),
		mesh.WithSnapshotDir(snapDir))
	version := first.Status().Rules.Version
	first.Close()

	// Restart with the rule file gone and discovery silent: New starts from
	// the snapshot within the start timeout and routes to the saved
	// instances.
	if err := os.Remove(ruleFile); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(ruleFile, 10*time.Millisecond)),
		mesh.WithDiscovery(silentDiscovery{}), mesh.WithSnapshotDir(snapDir), mesh.WithStartTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatalf("start with control plane down and a snapshot: %v", err)
	}
	defer m.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("starting from the snapshot took %v", d)
	}
	st := m.Status()
	if !st.Rules.FromSnapshot || st.Rules.Version != version {
		t.Fatalf("status %+v, want rules version %s from the snapshot", st.Rules, version)
	}
	client := &http.Client{Transport: m.Transport(nil)}
	body, err := meshtest.Get(context.Background(), client, "http://user-api/", map[string]string{"X-Env": "staging"})
	if err != nil || !strings.HasPrefix(body, "staging-") {
		t.Fatalf("routing from the snapshot: %q, %v", body, err)
	}

	// The source comes back with the same document: the mesh converges and
	// no longer reports the snapshot.
	if err := os.WriteFile(ruleFile, []byte(laneRules), 0o644); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 5*time.Second, "the live source to take over", func() bool { return !m.Status().Rules.FromSnapshot })
}

func TestStartWithoutSnapshotFailsClearly(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "rules.yaml")
	_, err := mesh.New(context.Background(), mesh.WithRules(rules.NewFile(missing, 0)),
		mesh.WithSnapshotDir(t.TempDir()), mesh.WithStartTimeout(200*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "no usable snapshot") || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v, want a clear error naming the missing source and snapshot", err)
	}
}
