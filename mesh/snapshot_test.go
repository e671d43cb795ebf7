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
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// silentDiscovery never reports any instance: a registry that is down.
// String names it as name, like the registry it stands for.
type silentDiscovery struct{ name string }

func (silentDiscovery) Watch(ctx context.Context, _ string, _ func([]discovery.Instance)) error {
	<-ctx.Done()
	return ctx.Err()
}

func (s silentDiscovery) String() string { return s.name }

// namedDiscovery is a discovery source named by its String, as the Nacos
// and etcd adapters name theirs.
type namedDiscovery struct {
	discovery.Source
	name string
}

func (n namedDiscovery) String() string { return n.name }

func TestStartFromSnapshotWhenControlPlaneIsDown(t *testing.T) {
	_, list := fleet(t)
	snapDir := t.TempDir()
	ruleFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(ruleFile, []byte(laneRules), 0o644); err != nil {
		t.Fatal(err)
	}

	// A first run with everything up leaves a snapshot behind.
	first := newMesh(t, rules.NewFile(ruleFile, 10*time.Millisecond),
		namedDiscovery{discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}), "registry-prod"},
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
		mesh.WithDiscovery(silentDiscovery{"registry-prod"}), mesh.WithSnapshotDir(snapDir), mesh.WithStartTimeout(300*time.Millisecond))
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

// TestInstanceSnapshotOnlyForItsSource: instances saved from one
// discovery source (prod) are not restored for another (staging) that is
// down: calls fail with ErrNoInstance rather than go to prod.
func TestInstanceSnapshotOnlyForItsSource(t *testing.T) {
	_, list := fleet(t)
	snapDir := t.TempDir()
	first := newMesh(t, rules.NewMemory([]byte(laneRules)),
		namedDiscovery{discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}), "nacos{namespace=prod}"},
		mesh.WithSnapshotDir(snapDir))
	first.Close()

	var logs meshtest.LogBuffer
	m, err := mesh.New(context.Background(), mesh.WithRules(rules.NewMemory([]byte(laneRules))),
		mesh.WithDiscovery(silentDiscovery{"nacos{namespace=staging}"}), mesh.WithSnapshotDir(snapDir),
		mesh.WithStartTimeout(300*time.Millisecond), mesh.WithLogger(logs.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	client := &http.Client{Transport: m.Transport(nil)}
	body, err := meshtest.Get(context.Background(), client, "http://user-api/", nil)
	if !errors.Is(err, router.ErrNoInstance) {
		t.Fatalf("call with staging's discovery down: %q, %v; want ErrNoInstance, not prod's saved instances", body, err)
	}
	if !strings.Contains(logs.String(), "saved from another discovery source") || !strings.Contains(logs.String(), "namespace=prod") {
		t.Errorf("the refused snapshot is not logged:\n%s", logs.String())
	}
}
