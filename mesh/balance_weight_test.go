package mesh_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/rules"
)

// Under p2c-ewma (the built-in default) and least-request, discovery
// weights set the shares at equal load, as round-robin's: an instance
// of weight 1 beside one of 9 — a canary given a tenth in Nacos — got 1
// call of 1000 (its forced pick once a second), its weight dividing its
// cost making every comparison winner-take-all. Now it is drawn a tenth
// as often and compared by load alone: with 4 callers at once it got
// 16-20% (it wins the comparisons while it has fewer calls in flight;
// at most w² + 2·w·(1−w) = 19% at weight w = 0.1).
func TestLoadAwareBalancersKeepDiscoveryWeights(t *testing.T) {
	for _, lb := range []string{"p2c-ewma", "least-request"} {
		t.Run(lb, func(t *testing.T) {
			heavy, light := newFlaky(t, "heavy"), newFlaky(t, "light")
			heavy.delay.Store(int64(2 * time.Millisecond))
			light.delay.Store(int64(2 * time.Millisecond))
			h, l := heavy.instance(), light.instance()
			h.Weight, l.Weight = 9, 1
			m := newMesh(t, rules.NewMemory([]byte(svcDoc("    loadBalancer: "+lb+"\n"))),
				discovery.NewStatic(map[string][]discovery.Instance{"svc": {h, l}}))
			c := &http.Client{Transport: m.Transport(nil)}
			run := func(n int) {
				errs := make(chan error, 4)
				for range 4 {
					go func() {
						for range n / 4 {
							if code, _, err := send(c, "GET", "http://svc/"); err != nil || code != http.StatusOK {
								errs <- fmt.Errorf("%d %v", code, err)
								return
							}
						}
						errs <- nil
					}()
				}
				for range 4 {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
			}
			run(400) // warm up: connections made, first calls forgotten
			before := light.hits.Load()
			run(1000)
			got := light.hits.Load() - before
			t.Logf("weight 1 of 10: %d of 1000 calls", got)
			if got < 40 || got > 300 {
				t.Fatalf("the instance of weight 1 beside one of 9 got %d of 1000 calls, want about 100", got)
			}
		})
	}
}
