package mesh_test

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestPublicTypesAreMeshTypes: the error types a call returns and the
// explanation Explain returns are types of package mesh, with their
// fields and methods in its documentation, not aliases of internal ones
// that go doc shows without fields (the policy in force is router's
// public type); a refusal over HTTP is one of them.
func TestPublicTypesAreMeshTypes(t *testing.T) {
	const pkg = "github.com/lightmesh/lightmesh/mesh"
	for _, typ := range []reflect.Type{
		reflect.TypeFor[mesh.CallError](), reflect.TypeFor[mesh.CircuitOpenError](), reflect.TypeFor[mesh.RateLimitError](),
		reflect.TypeFor[mesh.Explanation](), reflect.TypeFor[mesh.EjectedInstance](),
	} {
		if typ.PkgPath() != pkg {
			t.Errorf("%s is declared in %s, want a type of package mesh", typ, typ.PkgPath())
		}
	}
	// The policy in force is router's own type (router.Rules.InForce
	// computes it), public with its fields, never an internal one.
	if typ := reflect.TypeFor[mesh.PolicyInForce](); typ.PkgPath() != "github.com/lightmesh/lightmesh/router" {
		t.Errorf("%s is declared in %s, want router's public type", typ, typ.PkgPath())
	}

	be := newFlaky(t, "b")
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    rateLimit: {rps: 0.01, burst: 1}\n"))),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}}))
	client := &http.Client{Transport: m.Transport(nil)}
	send(client, "GET", "http://svc/")
	_, _, err := send(client, "GET", "http://svc/")
	var rl *mesh.RateLimitError
	if !errors.As(err, &rl) || rl.Service != "svc" || !errors.Is(err, mesh.ErrRateLimited) || !errors.Is(err, breaker.ErrRateLimited) {
		t.Fatalf("over the limit: err = %v, want a *mesh.RateLimitError for svc", err)
	}
	if got := fmt.Sprintf("%T", errors.Unwrap(err)); got != "*mesh.RateLimitError" {
		t.Errorf("the transport returned a %s, want *mesh.RateLimitError", got)
	}
	if e := m.Explain(mesh.ExplainRequest{Service: "svc"}); e.Policy == nil || e.Policy.RateLimit == nil || e.Reason != "rate_limited" {
		t.Errorf("explain over the limit: %+v", e)
	}
}
