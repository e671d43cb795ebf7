package mesh_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// closingRules is a memory rule source that counts its Close calls.
type closingRules struct {
	*rules.Memory
	name   string
	closed *atomic.Int32
}

func (c closingRules) String() string { return c.name }
func (c closingRules) Close() error   { c.closed.Add(1); return nil }

// TestSecondSourceIsAnError: a second WithRules or WithDiscovery makes New
// fail with an error naming both, instead of silently dropping the
// first, and every source given is closed (the mesh owns them).
func TestSecondSourceIsAnError(t *testing.T) {
	var closed atomic.Int32
	a := closingRules{rules.NewMemory([]byte("apiVersion: lightmesh/v1\n")), "team-a", &closed}
	b := closingRules{rules.NewMemory([]byte("apiVersion: lightmesh/v1\n")), "team-b", &closed}
	_, err := mesh.New(context.Background(), mesh.WithRules(a), mesh.WithRules(b))
	if err == nil || !strings.Contains(err.Error(), "WithRules given twice (team-a, then team-b)") {
		t.Fatalf("New with two rule sources: %v; want an error naming both", err)
	}
	if n := closed.Load(); n != 2 {
		t.Errorf("%d of the 2 rule sources closed", n)
	}

	d := discovery.NewStatic(nil)
	_, err = mesh.New(context.Background(), mesh.WithDiscovery(d), mesh.WithDiscovery(discovery.NewStatic(nil)))
	if err == nil || !strings.Contains(err.Error(), "WithDiscovery given twice (*discovery.Static, then *discovery.Static)") {
		t.Fatalf("New with two discovery sources: %v; want an error naming both", err)
	}

	// One of each is fine, and nil options are still ignored.
	m, err := mesh.New(context.Background(), mesh.WithRules(a), mesh.WithRules(nil), mesh.WithDiscovery(d), mesh.WithDiscovery(nil))
	if err != nil {
		t.Fatalf("New with one source of each: %v", err)
	}
	m.Close()
}
