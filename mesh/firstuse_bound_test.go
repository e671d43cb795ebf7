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

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// TestFirstUseMissLeavesNothingBehind: a host named by request data that
// discovery does not know is logged as a miss, and leaves no metric
// series and no snapshot file once the lookup is over: misses of ever
// new names cannot grow the registry or the disk without bound.
func TestFirstUseMissLeavesNothingBehind(t *testing.T) {
	_, list := fleet(t)
	rulesDir, snapDir := t.TempDir(), t.TempDir()
	reg := prometheus.NewRegistry()
	var logs meshtest.LogBuffer
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRuleCatalog(rules.NewDir(rulesDir, 10*time.Millisecond)),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": list})),
			mesh.WithMeshServices("*"), mesh.WithStrictServices(), mesh.WithRegisterer(reg),
			mesh.WithSnapshotDir(snapDir), mesh.WithLogger(logs.Logger()))
	})
	client := &http.Client{Transport: m.Transport(nil)}
	const host = "user-ap1"
	_, err := client.Get("http://" + host + "/")
	if !errors.Is(err, router.ErrUnknownService) {
		t.Fatalf("call to an unknown host: %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), host) {
		t.Errorf("the first-use miss of %s is not logged as a warning:\n%s", host, logs.String())
	}
	leftovers := func() []string {
		var out []string
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			for _, mt := range f.GetMetric() {
				for _, lp := range mt.GetLabel() {
					if lp.GetValue() == host {
						out = append(out, f.GetName())
					}
				}
			}
		}
		filepath.WalkDir(snapDir, func(path string, d os.DirEntry, err error) error {
			if err == nil && strings.Contains(d.Name(), host) {
				out = append(out, path)
			}
			return nil
		})
		return out
	}
	if !waitUntil(5*time.Second, func() bool { return len(leftovers()) == 0 }) {
		t.Fatalf("left behind by a miss: %v", leftovers())
	}
	time.Sleep(300 * time.Millisecond) // the snapshot writer's delay: nothing is written late either
	if left := leftovers(); len(left) > 0 {
		t.Fatalf("left behind by a miss: %v", left)
	}
}

// waitUntil polls cond until it holds or d passed, and reports whether
// it held.
func waitUntil(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
