package etcd_test

import (
	"context"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery/etcd"
	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/rules"
)

// fleetEndpointEnv passes the etcd endpoint to the fleet's child
// processes.
const fleetEndpointEnv = "LIGHTMESH_FLEET_ETCD"

const fleetPrefix = "/fleet/rules"

func fleetPlane(endpoint string, put *clientv3.Client) meshtest.FleetPlane {
	_, port, _ := net.SplitHostPort(endpoint)
	p, _ := strconv.Atoi(port)
	return meshtest.FleetPlane{
		Name: "etcd",
		Put: func(name, doc string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := put.Put(ctx, fleetPrefix+"/"+name, doc)
			return err
		},
		Catalog: func() (rules.Catalog, func(), error) {
			cli, err := etcdtest.NewClient(endpoint)
			if err != nil {
				return nil, nil, err
			}
			return etcd.NewCatalog(cli, fleetPrefix), func() { cli.Close() }, nil
		},
		Port: p,
	}
}

// TestFleetChild is one process of BenchmarkFleet; it does nothing
// unless the benchmark started it.
func TestFleetChild(t *testing.T) {
	spec := os.Getenv(meshtest.FleetChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkFleet")
	}
	meshtest.RunFleetChild(fleetPlane(os.Getenv(fleetEndpointEnv), nil), spec)
}

// BenchmarkFleet publishes 1,000 per-service documents to a real etcd,
// starts 200 meshes in 4 processes (one catalog, so one connection, per
// process), each watching 20 documents, and times one document's update
// reaching every mesh; in every other round a broken version of another
// document that every mesh watches is published at the same moment. Run
// it as the README says:
//
//	go test -run '^$' -bench BenchmarkFleet -benchtime 20x -count 6 ./discovery/etcd/
func BenchmarkFleet(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := srv.Client(b)
	plane := fleetPlane(srv.Endpoint(), cli)
	meshtest.PublishFleet(b, plane, 1000, 16)
	b.Setenv(fleetEndpointEnv, srv.Endpoint())
	b.ResetTimer()
	res := meshtest.RunFleet(b, plane, meshtest.FleetConfig{Documents: 1000, Processes: 4, Meshes: 50, Watched: 20}, "TestFleetChild", b.N)
	b.StopTimer()
	meshtest.ReportFleet(b, plane, res)
}
