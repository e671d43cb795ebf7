package etcd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/rollingtest"
	"github.com/lightmesh/lightmesh/lifecycle"
)

// TestRollingRestart restarts 3 instances of an HTTP and a gRPC service
// one after another, each stopped with lifecycle.Shutdown (deregister,
// wait, drain), while a mesh discovering them in the embedded etcd calls
// both at 200 requests a second each: no request may fail.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts 3 instances under load")
	}
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	var n int
	rollingtest.Run(t, rollingtest.Plane{
		Name:      "etcd",
		Discovery: NewDiscovery(cli, testPrefix),
		Register: func(ins map[string]discovery.Instance) (func(context.Context) error, error) {
			n++
			var regs []*Registration
			for service, in := range ins {
				r, err := Register(context.Background(), cli, testPrefix, service, fmt.Sprintf("i%d", n), in, 5*time.Second)
				if err != nil {
					return nil, err
				}
				regs = append(regs, r)
			}
			return func(ctx context.Context) error {
				var first error
				for _, r := range regs {
					if err := r.Close(ctx); err != nil && first == nil {
						first = err
					}
				}
				return first
			}, nil
		},
		// What users get. etcd's watches deliver a deletion within
		// milliseconds, but a loaded machine (-race, packages in
		// parallel) can take longer to carry it to the mesh's pickers.
		Settle: lifecycle.DefaultSettle,
	}, "roll-http", "roll-grpc")
}
