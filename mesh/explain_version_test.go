package mesh_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestExplainNamesThatServicesDocument: in a per-service layout an
// explanation is stamped with the version of the explained service's own
// document, not with whichever document was applied last; a typo in the
// service answers with the closest known name.
func TestExplainNamesThatServicesDocument(t *testing.T) {
	_, list := fleet(t)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "user-api.yaml"), userAPIPart)
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRuleCatalog(rules.NewDir(dir, 10*time.Millisecond)), mesh.WithServices("user-api", "order-api"),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"user-api": list, "order-api": list})))
	})
	// order-api's document arrives after user-api's.
	write(t, filepath.Join(dir, "order-api.yaml"), strings.ReplaceAll(userAPIPart, "user-api", "order-api"))
	doc := func(name string) mesh.DocumentStatus {
		for _, d := range m.Status().Documents {
			if d.Name == name {
				return d
			}
		}
		return mesh.DocumentStatus{}
	}
	meshtest.WaitFor(t, 5*time.Second, "order-api's document", func() bool { return doc("order-api").State == mesh.DocumentApplied })
	e := m.Explain(mesh.ExplainRequest{Service: "user-api", Path: "/"})
	if want := "user-api@" + doc("user-api").Version; !strings.Contains(e.Rules, want) {
		t.Errorf("explanation of user-api stamped %q, want %q (its own document's version)", e.Rules, want)
	}
	if strings.Contains(e.Rules, "order-api") {
		t.Errorf("explanation of user-api stamped with order-api's document: %q", e.Rules)
	}

	typo := m.Explain(mesh.ExplainRequest{Service: "user-ap", Path: "/"})
	if typo.Known || !strings.Contains(typo.Error, `did you mean "user-api"?`) {
		t.Errorf("explain of user-ap: known=%v error=%q; want a did-you-mean for user-api", typo.Known, typo.Error)
	}
}
