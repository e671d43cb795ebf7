// Package workload gives identity a Source from the SPIFFE Workload API
// (a SPIRE agent's socket, as SPIRE and Istio deployments provide). It is
// a package of its own because the Workload API client links grpc-go,
// which HTTP-only binaries do without.
package workload

import (
	"context"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/lightmesh/lightmesh/identity"
)

var _ identity.Source = (*workloadapi.X509Source)(nil)

// NewSource connects to the SPIFFE Workload API at addr (for
// example "unix:///run/spire/agent.sock"; empty means the
// SPIFFE_ENDPOINT_SOCKET environment variable) and returns a Source kept
// current by the agent's stream. It blocks until the first SVID arrives
// or ctx ends. Close the returned source when done.
func NewSource(ctx context.Context, addr string) (*workloadapi.X509Source, error) {
	var opts []workloadapi.X509SourceOption
	if addr != "" {
		opts = append(opts, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	}
	src, err := workloadapi.NewX509Source(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("workload: workload API %q: %w", addr, err)
	}
	return src, nil
}
