package nacos

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/rules"
)

// TestCatalogThroughMesh holds the promises of the per-service layout
// (meshtest.RunCatalogSuite) with the documents in the real Nacos, in a
// group of the test's own.
func TestCatalogThroughMesh(t *testing.T) {
	cfg := testConfig(t)
	group := unique("lm-suite")
	pub := newPublisher(t, cfg, group)
	cat, err := NewCatalog(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cat.Close() })
	var mu sync.Mutex
	var published []string
	t.Cleanup(func() {
		for _, name := range published {
			pub.remove(t, name)
		}
	})
	meshtest.RunCatalogSuite(t, meshtest.CatalogPlane{
		Catalog: cat,
		Put: func(name, doc string) error {
			// Called from two goroutines at once: an error, not t.Fatal.
			ok, err := pub.client.publish(vo.ConfigParam{DataId: name, Group: group, Content: doc, Type: "yaml"})
			if err == nil && !ok {
				err = fmt.Errorf("publish %s: refused", name)
			}
			mu.Lock()
			published = append(published, name)
			mu.Unlock()
			return err
		},
		Delete: func(name string) error { pub.remove(t, name); return nil },
		Unreachable: func() (rules.Catalog, func()) {
			// The same group on an address nothing listens on.
			addr := meshtest.ClosedAddr(t)
			down := cfg
			down.Addresses = []string{addr}
			dead, err := NewCatalog(down, group)
			if err != nil {
				t.Fatal(err)
			}
			return dead, func() { dead.Close() }
		},
		Settle: 10 * time.Second,
	})
}
