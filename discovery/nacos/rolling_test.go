package nacos

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/rollingtest"
	"github.com/lightmesh/lightmesh/lifecycle"
)

// TestRollingRestart restarts 3 instances of an HTTP and a gRPC service
// one after another, each stopped with lifecycle.Shutdown (deregister,
// wait lifecycle.DefaultSettle, drain), while a mesh discovering them in
// the real Nacos calls both at 200 requests a second each: no request
// may fail. Each instance is a process of its own as far as Nacos knows:
// one naming client (Discovery.Register) for its two services.
func TestRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts 3 instances under load")
	}
	cfg := testConfig(t)
	group := unique("lm-roll")
	callers, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { callers.Close() })
	rollingtest.Run(t, rollingtest.Plane{
		Name:      "nacos",
		Discovery: callers,
		Register: func(ins map[string]discovery.Instance) (func(context.Context) error, error) {
			self, err := NewDiscovery(cfg, group)
			if err != nil {
				return nil, err
			}
			// A new client's first connect can time out on a loaded
			// machine; a service would retry its registration.
			for deadline := time.Now().Add(settleBound); !self.client.ServerHealthy() && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			var regs []*Registration
			for service, in := range ins {
				r, err := self.Register(service, in)
				if err != nil {
					self.Close()
					return nil, err
				}
				regs = append(regs, r)
			}
			return func(context.Context) error {
				var errs []error
				for _, r := range regs {
					errs = append(errs, r.Close())
				}
				errs = append(errs, self.Close())
				return errors.Join(errs...)
			}, nil
		},
		Settle: lifecycle.DefaultSettle,
	}, unique("roll-http"), unique("roll-grpc"))
}
