package identity_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/router"
)

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d discard) Header() http.Header       { return d.h }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// With ConnContext, the identity check and the decision of an allowed
// request through Guard.Handler allocate nothing.
func TestGuardAllowedRequestAllocatesNothing(t *testing.T) {
	ca := newCA(t)
	api, _ := workload(t, ca, "/api")
	front, _ := workload(t, ca, "/front")
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	server := tls.Server(c1, identity.ServerTLSConfig(api))
	client := tls.Client(c2, identity.ClientTLSConfig(front, spiffeid.RequireFromString("spiffe://example.org/api")))
	errc := make(chan error, 1)
	go func() { errc <- client.Handshake() }()
	if err := server.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var rules []router.AuthorizationRule
	for i := 0; i < 19; i++ {
		rules = append(rules, router.AuthorizationRule{Action: "deny", Callers: []string{"spiffe://example.org/batch"}, Paths: []string{"/admin*"}})
	}
	rules = append(rules, apiPolicy.Rules[0])
	policy, err := identity.NewPolicy(router.Authorization{Default: "deny", Rules: rules}, nil)
	if err != nil {
		t.Fatal(err)
	}
	guard, err := identity.NewGuard(policy, identity.GuardOptions{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	served := false
	h := guard.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served = true }))
	r := httptest.NewRequest("GET", "/orders/7", nil).WithContext(identity.ConnContext(context.Background(), server))
	w := discard{h: http.Header{}}
	h.ServeHTTP(w, r)
	if !served {
		t.Fatal("front's request was not served")
	}
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, r) }); n != 0 {
		t.Fatalf("an allowed request allocates %v times; want 0", n)
	}
}
