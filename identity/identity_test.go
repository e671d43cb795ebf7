package identity_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// workload writes an SVID for path under a fresh directory and returns a
// FileSource watching it.
func workload(t *testing.T, ca *identitytest.CA, path string) (*identity.FileSource, string) {
	t.Helper()
	dir := t.TempDir()
	if _, err := ca.WriteFiles(dir, path); err != nil {
		t.Fatal(err)
	}
	src, err := identity.NewFileSource(context.Background(), identity.Files{
		Cert: dir + "/svid.pem", Key: dir + "/svid_key.pem", Bundle: dir + "/bundle.pem",
		Interval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src, dir
}

func newCA(t *testing.T) *identitytest.CA {
	t.Helper()
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// serve runs h on 127.0.0.1:0 behind identity.Listen and returns its
// address and how many requests reached h.
func serve(t *testing.T, src identity.Source, mode identity.Mode, h http.Handler) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h.ServeHTTP(w, r)
	})}
	// Strict servers read the caller once per connection; permissive ones
	// per request, so the tests go through both ways.
	if mode == identity.Strict {
		srv.ConnContext = identity.ConnContext
	}
	go srv.Serve(identity.Listen(ln, identity.ServerTLSConfig(src), mode))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), &hits
}

func mtlsClient(src identity.Source, want string, keepAlive bool) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   identity.ClientTLSConfig(src, spiffeid.RequireFromString(want)),
		DisableKeepAlives: !keepAlive,
	}}
}

func get(t *testing.T, c *http.Client, url string) (int, string, error) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

var apiPolicy = router.Authorization{
	Default: "deny",
	Rules: []router.AuthorizationRule{
		{Action: "allow", Callers: []string{"spiffe://example.org/front"}, Paths: []string{"/orders*"}, Methods: []string{"GET"}},
		{Action: "allow", Callers: []string{"none"}, Paths: []string{"/public*"}},
	},
}

// echoCaller answers with the caller's SPIFFE ID from the context.
var echoCaller = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	id, ok := identity.CallerID(r.Context())
	if !ok {
		io.WriteString(w, "anonymous")
		return
	}
	io.WriteString(w, id.String())
})

// Three workloads, one trust domain: front may GET /orders, batch may not,
// and a caller with no certificate is refused at the handshake in strict
// mode and served (where the policy allows "none") in permissive mode.
func TestHTTPThreeWorkloads(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	front, _ := workload(t, ca, "/front")
	batch, _ := workload(t, ca, "/batch")
	policy, err := identity.NewPolicy(apiPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	guard, err := identity.NewGuard(policy, identity.GuardOptions{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []identity.Mode{identity.Strict, identity.Permissive} {
		t.Run(mode.String(), func(t *testing.T) {
			addr, hits := serve(t, api, mode, guard.Handler(echoCaller))
			code, body, err := get(t, mtlsClient(front, "spiffe://example.org/api", true), "https://"+addr+"/orders/7")
			if err != nil || code != 200 || body != "spiffe://example.org/front" {
				t.Fatalf("front: %d %q %v; want 200 with its own ID in the context", code, body, err)
			}
			code, body, err = get(t, mtlsClient(batch, "spiffe://example.org/api", true), "https://"+addr+"/orders/7")
			if err != nil || code != 403 || !strings.Contains(body, "spiffe://example.org/batch may not GET /orders/7: denied by default") {
				t.Fatalf("batch: %d %q %v; want 403 naming the caller and the reason", code, body, err)
			}
			before := hits.Load()
			plain := &http.Client{Timeout: 5 * time.Second}
			code, body, err = get(t, plain, "http://"+addr+"/public/x")
			switch mode {
			case identity.Strict:
				if err == nil && code != http.StatusBadRequest {
					t.Fatalf("plaintext caller in strict mode: %d %q; want it refused", code, body)
				}
				if hits.Load() != before {
					t.Fatal("plaintext request reached the handler in strict mode")
				}
			case identity.Permissive:
				if err != nil || code != 200 || body != "anonymous" {
					t.Fatalf("plaintext caller in permissive mode: %d %q %v; want 200 without an ID", code, body, err)
				}
				code, _, _ = get(t, plain, "http://"+addr+"/orders/7")
				if code != 403 {
					t.Fatalf("plaintext caller to /orders: %d, want 403", code)
				}
			}
		})
	}
}

// A client expecting another server identity fails at the handshake with
// an error naming both IDs, and no request reaches the server.
func TestHTTPWrongServerID(t *testing.T) {
	ca := newCA(t)
	impostor, _ := workload(t, ca, "/impostor")
	front, _ := workload(t, ca, "/front")
	addr, hits := serve(t, impostor, identity.Strict, echoCaller)
	_, _, err := get(t, mtlsClient(front, "spiffe://example.org/api", true), "https://"+addr+"/orders")
	var mm *identity.MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("error %v; want *identity.MismatchError", err)
	}
	if !strings.Contains(err.Error(), "server presented spiffe://example.org/impostor, expected spiffe://example.org/api") {
		t.Fatalf("error %q does not name both IDs", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the server; want 0", n)
	}
}

const apiRules = `apiVersion: lightmesh/v1
services:
  api:
    authorization:
      default: deny
      rules:
        - action: allow
          callers: [spiffe://example.org/front]
          paths: [/orders*]
`

// The authorization section of the rule document in force decides: a
// rejected document leaves the previous policy in force, and a valid one
// decides the next request.
func TestGuardFollowsMeshRules(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	front, _ := workload(t, ca, "/front")
	batch, _ := workload(t, ca, "/batch")
	src := rules.NewMemory([]byte(apiRules))
	events := make(chan mesh.RulesEvent, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(src), mesh.WithLocalService("api"),
		mesh.WithOnRulesChange(func(e mesh.RulesEvent) { events <- e }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	<-events
	reg := prometheus.NewRegistry()
	guard, err := identity.NewGuard(m, identity.GuardOptions{Service: "api", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, api, identity.Strict, guard.Handler(echoCaller))
	c := mtlsClient(front, "spiffe://example.org/api", true)
	if code, _, err := get(t, c, "https://"+addr+"/orders/1"); err != nil || code != 200 {
		t.Fatalf("front under the first document: %d %v; want 200", code, err)
	}

	src.Set([]byte(strings.Replace(apiRules, "spiffe://example.org/front", "front", 1)))
	e := <-events
	if e.Err == nil || !strings.Contains(e.Err.Error(), "services.api.authorization.rules[0].callers[0]") {
		t.Fatalf("bad document: %v; want it rejected naming services.api.authorization.rules[0].callers[0]", e.Err)
	}
	if code, _, err := get(t, c, "https://"+addr+"/orders/1"); err != nil || code != 200 {
		t.Fatalf("after a rejected document: %d %v; want the previous policy (200)", code, err)
	}
	if code, _, err := get(t, mtlsClient(batch, "spiffe://example.org/api", true), "https://"+addr+"/orders/1"); err != nil || code != 403 {
		t.Fatalf("batch after a rejected document: %d %v; want the previous policy (403)", code, err)
	}

	src.Set([]byte(strings.Replace(apiRules, "action: allow", "action: deny", 1)))
	if e := <-events; e.Err != nil {
		t.Fatal(e.Err)
	}
	code, body, err := get(t, c, "https://"+addr+"/orders/1")
	if err != nil || code != 403 || !strings.Contains(body, "denied by authorization rule 0") {
		t.Fatalf("after a valid document: %d %q %v; want 403 by rule 0 on the next request", code, body, err)
	}
	want := `
# HELP lightmesh_authz_denied_total Calls refused by the authorization policy, by deciding rule (-1: the default; unknown: no authorization known for the service).
# TYPE lightmesh_authz_denied_total counter
lightmesh_authz_denied_total{rule="-1",service="api"} 1
lightmesh_authz_denied_total{rule="0",service="api"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "lightmesh_authz_denied_total"); err != nil {
		t.Fatal(err)
	}
}

// A fixed Policy refuses an update that does not compile, naming the
// place, and keeps deciding with the previous one.
func TestPolicyRejectedUpdateKeepsPrevious(t *testing.T) {
	p, err := identity.NewPolicy(apiPolicy, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := router.Authorization{Rules: []router.AuthorizationRule{{Action: "deny"}, {Action: "allow", Callers: []string{"http://front"}}}}
	err = p.Update(bad)
	if err == nil || !strings.Contains(err.Error(), "authorization.rules[1].callers[0]") {
		t.Fatalf("Update(bad) = %v; want an error naming authorization.rules[1].callers[0]", err)
	}
	if v := p.Authorizer("").Decide("spiffe://example.org/front", "GET", "/orders/1"); !v.Allowed {
		t.Fatalf("after a rejected update: %+v; want the previous policy", v)
	}
}
