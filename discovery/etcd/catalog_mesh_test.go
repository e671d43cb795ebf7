package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery/etcd"
	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/rules"
)

// TestCatalogThroughMesh holds the promises of the per-service layout
// (meshtest.RunCatalogSuite) with the documents in a real etcd.
func TestCatalogThroughMesh(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const prefix = "/lightmesh/rules"
	op := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return f(ctx)
	}
	meshtest.RunCatalogSuite(t, meshtest.CatalogPlane{
		Catalog: etcd.NewCatalog(cli, prefix),
		Put: func(name, doc string) error {
			return op(func(ctx context.Context) error { _, err := cli.Put(ctx, prefix+"/"+name, doc); return err })
		},
		Delete: func(name string) error {
			return op(func(ctx context.Context) error { _, err := cli.Delete(ctx, prefix+"/"+name); return err })
		},
		Unreachable: func() (rules.Catalog, func()) {
			// The same prefix on an address nothing listens on.
			addr := meshtest.ClosedAddr(t)
			dead, err := etcdtest.NewClient(addr)
			if err != nil {
				t.Fatal(err)
			}
			return etcd.NewCatalog(dead, prefix, etcd.WithRequestTimeout(500*time.Millisecond)), func() { dead.Close() }
		},
		Settle: 5 * time.Second,
	})
}
