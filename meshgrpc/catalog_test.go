package meshgrpc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/grpctest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A service a gRPC client dials, which the mesh watches only from the
// dial on, is routed by its own document from the first call: the
// first call waits for the catalog's answer rather than running on the
// defaults (round-robin over base and staging).
func TestDialedServiceUsesItsDocumentFromTheFirstCall(t *testing.T) {
	base, staging := grpctest.Start(t, "base"), grpctest.Start(t, "staging")
	static := discovery.NewStatic(map[string][]discovery.Instance{"echo": {instance(base, "base"), instance(staging, "staging")}})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.yaml"), []byte(laneRules), 0o600); err != nil {
		t.Fatal(err)
	}
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRuleCatalog(meshtest.SlowCatalog{Catalog: rules.NewDir(dir, 0), Delay: 300 * time.Millisecond}), mesh.WithDiscovery(static))
	})
	conn := dial(t, m, "echo")
	if got := counts(context.Background(), conn, 6); got["base"] != 6 {
		t.Fatalf("calls without metadata went to %v, want all on base as echo's document says", got)
	}
}
