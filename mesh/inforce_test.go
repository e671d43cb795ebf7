package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// writeDocs writes per-service documents, name → content, into a new
// directory and returns it.
func writeDocs(t *testing.T, docs map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, doc := range docs {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestDefaultTimeoutTurnedOff: a service whose document says timeout: off
// runs its calls without the fleet's default timeout (a stream is not cut),
// while a service without a timeout of its own takes the default.
func TestDefaultTimeoutTurnedOff(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		fmt.Fprint(w, "done")
	}))
	defer slow.Close()
	u, _ := url.Parse(slow.URL)
	in := []discovery.Instance{{Address: u.Host}}
	dir := writeDocs(t, map[string]string{
		rules.DefaultsName: "apiVersion: lightmesh/v1\ndefaults: {timeout: 100ms}\n",
		"stream-api":       "apiVersion: lightmesh/v1\nservices:\n  stream-api: {timeout: off}\n",
	})
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRuleCatalog(rules.NewDir(dir, 0)), mesh.WithServices("stream-api", "plain-api"),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"stream-api": in, "plain-api": in})))
	})
	client := &http.Client{Transport: m.Transport(nil)}
	ctx := context.Background()
	start := time.Now()
	if body, err := meshtest.Get(ctx, client, "http://stream-api/watch", nil); err != nil || body != "done" {
		t.Errorf("stream-api (timeout: off) after %v: %q, %v; want the whole response", time.Since(start), body, err)
	}
	_, err := meshtest.Get(ctx, client, "http://plain-api/watch", nil)
	var ce *mesh.CallError
	if !errors.As(err, &ce) || ce.Reason != "timeout" {
		t.Errorf("plain-api (the default 100ms timeout): %v, want a timeout", err)
	}
}

// splitsDoc is the document of service with 40 distinct weighted splits
// of about 65,000 schedule steps each (weights from 65000-off down): 2.6
// million steps, within the document budget alone.
func splitsDoc(service string, off int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: lightmesh/v1\nservices:\n  %s:\n    subsets: {a: {labels: {v: a}}, b: {labels: {v: b}}}\n    routes:\n", service)
	for i := range 40 {
		fmt.Fprintf(&b, "      - match: {headers: {x-n: {exact: \"%d\"}}}\n        destinations: [{subset: a, weight: 1}, {subset: b, weight: %d}]\n", i, 65000-off-i)
	}
	return b.String()
}

// TestPerServiceDocumentsHaveTheirOwnBudgets: two teams' documents, each
// within the budgets of a document, both apply, although together they
// hold more than one document may.
func TestPerServiceDocumentsHaveTheirOwnBudgets(t *testing.T) {
	dir := writeDocs(t, map[string]string{"user-api": splitsDoc("user-api", 0), "order-api": splitsDoc("order-api", 40)})
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRuleCatalog(rules.NewDir(dir, 0)), mesh.WithServices("user-api", "order-api"),
			mesh.WithDiscovery(discovery.NewStatic(nil)))
	})
	for _, d := range m.Status().Documents {
		if d.Name != rules.DefaultsName && d.State != mesh.DocumentApplied {
			t.Errorf("document %s: %s (%+v)", d.Name, d.State, d.LastRejection)
		}
	}
}
