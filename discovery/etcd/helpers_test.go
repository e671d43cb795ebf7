package etcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

const testPrefix = "/lightmesh-test/services"

// The rule documents for user-api, the service these tests route: lanes
// by X-Env, everything moved to staging, and a document to reject.
var (
	laneRules   = meshtest.LaneRules("user-api")
	movedRules  = meshtest.MovedRules("user-api")
	brokenRules = meshtest.BrokenRules("user-api")
)

// events collects the mesh's rule events.
type events chan mesh.RulesEvent

func (ch events) hook() mesh.Option {
	return mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
		select {
		case ch <- ev:
		default: // a test that stopped reading must not stall the mesh
		}
	})
}

// wait returns the event for version, skipping others.
func (ch events) wait(t testing.TB, version string) mesh.RulesEvent {
	t.Helper()
	return meshtest.Next(t, ch, 10*time.Second, "rules event for version "+version,
		func(ev mesh.RulesEvent) bool { return ev.Version == version })
}

func newMesh(t testing.TB, opts ...mesh.Option) *mesh.Mesh {
	t.Helper()
	return meshtest.Start(t, 15*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, append([]mesh.Option{mesh.WithReconnectBackoff(50*time.Millisecond, time.Second)}, opts...)...)
	})
}

// hasInstance reports whether the mesh routes service to addr.
func hasInstance(m *mesh.Mesh, service, addr string) bool {
	for _, in := range m.Table().Instances(service, "") {
		if in.Address == addr {
			return true
		}
	}
	return false
}

// waitInstances waits until the mesh knows n instances of user-api.
func waitInstances(t testing.TB, m *mesh.Mesh, n int) {
	t.Helper()
	meshtest.WaitFor(t, 10*time.Second, fmt.Sprintf("%d instances of user-api", n), func() bool {
		return len(m.Table().Instances("user-api", "")) == n
	})
}

// deregisterOnCleanup closes reg when the test ends. The revoke is
// bounded: with etcd down it would otherwise retry, and the test hang,
// for good.
func deregisterOnCleanup(t testing.TB, reg *Registration) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		reg.Close(ctx)
	})
}
