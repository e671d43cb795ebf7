package identity_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/router"
)

// net/http passes a method on as the client wrote it ("get"), and a
// handler registered without a method serves it as it serves GET: a rule
// about GET decides "get" too, or a deny on GET is walked past in lower
// case.
func TestGuardMethodRuleIgnoresCase(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	batch, _ := workload(t, ca, "/batch")
	policy, err := identity.NewPolicy(router.Authorization{Rules: []router.AuthorizationRule{
		{Action: "deny", Callers: []string{"spiffe://example.org/batch"}, Paths: []string{"/admin*"}, Methods: []string{"GET"}},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	guard, err := identity.NewGuard(policy, identity.GuardOptions{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	var adminRuns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/admin/users", func(w http.ResponseWriter, r *http.Request) { adminRuns.Add(1) })
	addr, _ := serve(t, api, identity.Strict, guard.Handler(mux))
	c := mtlsClient(batch, "spiffe://example.org/api", true)
	for _, method := range []string{"GET", "get", "Get"} {
		resp, err := c.Do(must(http.NewRequest(method, "https://"+addr+"/admin/users", nil)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s /admin/users by batch: %d; want 403 (denied for GET)", method, resp.StatusCode)
		}
	}
	if n := adminRuns.Load(); n != 0 {
		t.Fatalf("the handler ran %d times for a caller denied GET; want 0", n)
	}
}
