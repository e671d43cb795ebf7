package grpcidentity_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/grpcidentity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// The gRPC interceptors fail closed as Guard.Handler does: before the
// first rule document (mesh.WithStartEmpty) and while the rules in force
// do not name the guarded service, every call (unary and stream) ends
// Unavailable saying why, and none reaches the handler; once the
// service's rules are in force they decide. The last round found both
// cases served every caller.
func TestInterceptorsFailClosedWithoutAuthorization(t *testing.T) {
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		t.Fatal(err)
	}
	api, front := workload(t, ca, "/api"), workload(t, ca, "/front")
	src := rules.NewMemory(nil)
	events := make(chan mesh.RulesEvent, 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithRules(src), mesh.WithLocalService("api"), mesh.WithStartEmpty(),
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
	addr, h := serve(t, api, identity.Strict, guard)
	creds := grpcidentity.ClientCredentials(front, spiffeid.RequireFromString("spiffe://example.org/api"))
	for _, c := range []struct{ doc, why string }{
		{"", "no rule document in force"},
		{"apiVersion: lightmesh/v1\nservices:\n  pay: {}\n", "the rules in force do not name this service"},
	} {
		if c.doc != "" {
			src.Set([]byte(c.doc))
			if e := <-events; e.Err != nil {
				t.Fatal(e.Err)
			}
		}
		for name, err := range map[string]error{"unary": call(t, addr, creds), "stream": watch(t, addr, creds)} {
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "service api cannot authorize calls: "+c.why) {
				t.Fatalf("%s, %s: %v; want Unavailable saying service api cannot authorize calls: %s", name, c.why, err, c.why)
			}
		}
	}
	if n := h.hits.Load(); n != 0 {
		t.Fatalf("%d calls reached the handler; want 0", n)
	}
	src.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  api:\n    authorization: {default: deny, rules: [{action: allow, callers: [spiffe://example.org/front]}]}\n"))
	if e := <-events; e.Err != nil {
		t.Fatal(e.Err)
	}
	if err := call(t, addr, creds); status.Code(err) != codes.Unknown || !strings.Contains(err.Error(), "caller=spiffe://example.org/front") {
		t.Fatalf("once api's rules are in force: %v; want front served", err)
	}
}
