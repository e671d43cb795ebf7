package identity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A guard whose mesh cannot say what the authorization of its service is
// refuses every call, as unavailable (503), and none reaches the handler:
// before the first rule document (mesh.WithStartEmpty), and while the
// rules in force do not name the service (a typo in GuardOptions.Service,
// a per-service document not published yet). Once the document names the
// service, its authorization decides the next request. The last round
// found both cases served every caller.
func TestGuardFailsClosedWithoutAuthorization(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	front, _ := workload(t, ca, "/front")
	batch, _ := workload(t, ca, "/batch")
	src := rules.NewMemory(nil)
	events := make(chan mesh.RulesEvent, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(src), mesh.WithLocalService("api"), mesh.WithStartEmpty(),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: "127.0.0.1:1"}}})),
		mesh.WithStartTimeout(100*time.Millisecond),
		mesh.WithOnRulesChange(func(e mesh.RulesEvent) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	guard, err := identity.NewGuard(m, identity.GuardOptions{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	addr, hits := serve(t, api, identity.Strict, guard.Handler(echoCaller))
	c := mtlsClient(front, "spiffe://example.org/api", true)
	code, body, err := get(t, c, "https://"+addr+"/orders/1")
	if err != nil || code != 503 || !strings.Contains(body, "no rule document in force") {
		t.Fatalf("before the first document: %d %q %v; want 503 naming no rule document in force", code, body, err)
	}

	src.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  pay: {}\n"))
	if e := <-events; e.Err != nil {
		t.Fatal(e.Err)
	}
	code, body, err = get(t, c, "https://"+addr+"/orders/1")
	if err != nil || code != 503 || !strings.Contains(body, "do not name this service") {
		t.Fatalf("rules not naming api: %d %q %v; want 503 saying the rules do not name this service", code, body, err)
	}
	// explain tells an operator the same.
	if a := m.Explain(mesh.ExplainRequest{Service: "api", Caller: "spiffe://example.org/front", Path: "/orders/1"}).Authorization; a == nil || a.Allowed || !a.Unknown {
		t.Fatalf("explain: %+v; want refused as unknown, as the guard refuses", a)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("%d requests reached the server; want 2", n)
	}

	src.Set([]byte(apiRules))
	if e := <-events; e.Err != nil {
		t.Fatal(e.Err)
	}
	if code, body, err := get(t, c, "https://"+addr+"/orders/1"); err != nil || code != 200 || body != "spiffe://example.org/front" {
		t.Fatalf("front once api's rules are in force: %d %q %v; want 200", code, body, err)
	}
	if code, _, err := get(t, mtlsClient(batch, "spiffe://example.org/api", true), "https://"+addr+"/orders/1"); err != nil || code != 403 {
		t.Fatalf("batch once api's rules are in force: %d %v; want 403", code, err)
	}
}
