package etcd

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// TestSoak runs meshtest.RunSoak against a real etcd for LIGHTMESH_SOAK
// (skipped without it):
//
//	LIGHTMESH_SOAK=10m go test -run TestSoak -timeout 20m -v ./discovery/etcd/
func TestSoak(t *testing.T) {
	d := meshtest.SoakDuration(t)
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const key, service = "/lightmesh-soak/rules", "soak-api"
	var rev atomic.Int64
	put(t, cli, key, meshtest.LaneRules(service))
	m := newMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)), mesh.WithServices(service))
	client := &http.Client{Transport: m.Transport(nil)}
	n := 0
	meshtest.RunSoak(t, d, client, service, meshtest.SoakPlane{
		Publish: func(doc string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := cli.Put(ctx, key, doc)
			if err == nil {
				rev.Store(resp.Header.Revision)
			}
			return err
		},
		Join: func(b *meshtest.Backend, env string) (func() error, error) {
			n++
			reg, err := Register(context.Background(), cli, testPrefix, service, b.Name+"-"+strconv.Itoa(n), b.Instance(env), 10*time.Second)
			if err != nil {
				return nil, err
			}
			return func() error { return reg.Close(context.Background()) }, nil
		},
		Applied: func(string) bool { return m.Status().Rules.Version == strconv.FormatInt(rev.Load(), 10) },
	})
}
