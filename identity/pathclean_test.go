package identity_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/router"
)

// The guard decides on the path the handler will serve: handlers that
// clean the path themselves (http.FileServer, many routers) serve
// /public/../admin/secret as /admin/secret and //admin/secret as
// /admin/secret, so a path matched only as written let a caller past a
// deny rule, and past an allow list by a prefix it may use. A path that
// is not clean is served only when both it and its cleaned form are
// allowed.
func TestGuardDecidesOnCleanedPath(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	front, _ := workload(t, ca, "/front")
	dir := t.TempDir()
	for _, f := range []string{"public/a.txt", "admin/secret"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files := http.FileServer(http.Dir(dir))
	for _, c := range []struct {
		name   string
		policy router.Authorization
	}{
		{"deny rule", router.Authorization{Rules: []router.AuthorizationRule{
			{Action: "deny", Paths: []string{"/admin*"}},
		}}},
		{"allow list", router.Authorization{Default: "deny", Rules: []router.AuthorizationRule{
			{Action: "allow", Callers: []string{"spiffe://example.org/front"}, Paths: []string{"/public/*"}},
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			policy, err := identity.NewPolicy(c.policy, nil)
			if err != nil {
				t.Fatal(err)
			}
			guard, err := identity.NewGuard(policy, identity.GuardOptions{Service: "api"})
			if err != nil {
				t.Fatal(err)
			}
			addr, _ := serve(t, api, identity.Strict, guard.Handler(files))
			cl := mtlsClient(front, "spiffe://example.org/api", true)
			if code, body, err := get(t, cl, "https://"+addr+"/public/a.txt"); err != nil || code != 200 || body != "public/a.txt" {
				t.Fatalf("/public/a.txt: %d %q %v; want 200", code, body, err)
			}
			for _, p := range []string{"/public/../admin/secret", "//admin/secret", "/./admin/secret", "/public/%2e%2e/admin/secret"} {
				code, body, err := get(t, cl, "https://"+addr+p)
				if err != nil || code != http.StatusForbidden {
					t.Errorf("%s: %d %q %v; want 403", p, code, body, err)
				}
			}
		})
	}
}
