package nacos

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/rules"
)

// fleetGroupEnv passes the fleet's Nacos group to its child processes.
const fleetGroupEnv = "LIGHTMESH_FLEET_NACOS_GROUP"

func fleetPlane(tb testing.TB, group string, pub *publisher) meshtest.FleetPlane {
	// pub is nil in the child processes, which only read.
	cfg := testConfig(tb)
	_, port, _ := net.SplitHostPort(cfg.Addresses[0])
	p, _ := strconv.Atoi(port)
	return meshtest.FleetPlane{
		Name: "nacos",
		Put: func(name, doc string) error {
			// Called from several goroutines: an error, not tb.Fatal.
			ok, err := pub.client.publish(vo.ConfigParam{DataId: name, Group: group, Content: doc, Type: "yaml"})
			if err == nil && !ok {
				err = fmt.Errorf("publish %s: refused", name)
			}
			return err
		},
		Catalog: func() (rules.Catalog, func(), error) {
			cat, err := NewCatalog(cfg, group)
			if err != nil {
				return nil, nil, err
			}
			return cat, func() { cat.Close() }, nil
		},
		Port: p + 1000, // the SDK talks gRPC, on the HTTP port + 1000
	}
}

// TestFleetChild is one process of BenchmarkFleet; it does nothing
// unless the benchmark started it.
func TestFleetChild(t *testing.T) {
	spec := os.Getenv(meshtest.FleetChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkFleet")
	}
	meshtest.RunFleetChild(fleetPlane(t, os.Getenv(fleetGroupEnv), nil), spec)
}

// BenchmarkFleet is etcd's BenchmarkFleet against the real Nacos in
// LIGHTMESH_NACOS_ADDR: 1,000 per-service documents in a group of the
// run's own, 200 meshes in 4 processes (one Catalog, so one gRPC
// connection, per process), each watching 20 documents:
//
//	LIGHTMESH_NACOS_ADDR=127.0.0.1:8848 go test -run '^$' -bench BenchmarkFleet -benchtime 20x -count 6 ./discovery/nacos/
func BenchmarkFleet(b *testing.B) {
	cfg := testConfig(b)
	group := unique("lm-fleet")
	pub := newPublisher(b, cfg, group)
	plane := fleetPlane(b, group, pub)
	meshtest.PublishFleet(b, plane, 1000, 16)
	b.Setenv(fleetGroupEnv, group)
	b.ResetTimer()
	res := meshtest.RunFleet(b, plane, meshtest.FleetConfig{Documents: 1000, Processes: 4, Meshes: 50, Watched: 20}, "TestFleetChild", b.N)
	b.StopTimer()
	meshtest.ReportFleet(b, plane, res)
	b.Cleanup(func() {
		// The server keeps what the run published: remove it.
		for i := range 1000 {
			pub.remove(b, meshtest.FleetName(i))
		}
	})
}
