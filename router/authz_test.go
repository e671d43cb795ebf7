package router_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/router"
)

func twentyRules() router.Authorization {
	var p router.Authorization
	p.Default = "deny"
	for i := 0; i < 19; i++ {
		p.Rules = append(p.Rules, router.AuthorizationRule{Action: "allow", Callers: []string{fmt.Sprintf("spiffe://example.org/svc%d", i)}, Paths: []string{fmt.Sprintf("/api/v%d/*", i)}, Methods: []string{"GET", "POST"}})
	}
	p.Rules = append(p.Rules, router.AuthorizationRule{Action: "allow", Callers: []string{"spiffe://example.org/ops/*"}, Paths: []string{"/api/*"}})
	return p
}

func TestDecide(t *testing.T) {
	a, err := router.CompileAuthorization(router.Authorization{Default: "deny", Rules: []router.AuthorizationRule{
		{Action: "deny", Callers: []string{"spiffe://example.org/ops/intern"}},
		{Action: "allow", Callers: []string{"spiffe://example.org/ops/*"}},
		{Action: "allow", Callers: []string{"spiffe://partner.com"}, Methods: []string{"GET"}},
		{Action: "allow", Callers: []string{"none"}, Paths: []string{"/healthz"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		caller, method, path string
		allowed              bool
		rule                 int
	}{
		{"spiffe://example.org/ops/intern", "GET", "/x", false, 0},
		{"spiffe://example.org/ops/alice", "POST", "/x", true, 1},
		{"spiffe://example.org/opsx", "GET", "/x", false, -1},
		{"spiffe://partner.com/a/b", "GET", "/x", true, 2},
		{"spiffe://partner.com/a/b", "POST", "/x", false, -1},
		{"spiffe://partner.community/a", "GET", "/x", false, -1},
		{"", "GET", "/healthz", true, 3},
		{"", "GET", "/x", false, -1},
	} {
		d := a.Decide(c.caller, c.method, c.path)
		if d.Allowed != c.allowed || d.Rule != c.rule {
			t.Errorf("Decide(%q, %s, %s) = %+v; want allowed=%v rule=%d", c.caller, c.method, c.path, d, c.allowed, c.rule)
		}
	}
}

func TestCompileErrorsNamePlace(t *testing.T) {
	for _, c := range []struct {
		p    router.Authorization
		want string
	}{
		{router.Authorization{Default: "maybe"}, `default: "maybe"`},
		{router.Authorization{Rules: []router.AuthorizationRule{{Action: "permit"}}}, `rules[0].action`},
		{router.Authorization{Rules: []router.AuthorizationRule{{Action: "allow"}, {Action: "deny", Paths: []string{"api"}}}}, `rules[1].paths[0]`},
		{router.Authorization{Rules: []router.AuthorizationRule{{Action: "deny", Paths: []string{"/a*b"}}}}, `rules[0].paths[0]`},
		{router.Authorization{Rules: []router.AuthorizationRule{{Action: "deny", Methods: []string{"get"}}}}, `rules[0].methods[0]`},
		{router.Authorization{Rules: []router.AuthorizationRule{{Action: "deny", Callers: []string{"spiffe://x", "front"}}}}, `rules[0].callers[1]`},
	} {
		_, err := router.CompileAuthorization(c.p)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Compile(%+v) = %v; want an error starting %q", c.p, err, c.want)
		}
	}
}

// The decision over a 20-rule policy allocates nothing.
func TestDecideAllocatesNothing(t *testing.T) {
	a, err := router.CompileAuthorization(twentyRules())
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		a.Decide("spiffe://example.org/ops/bob", "GET", "/api/v3/x")
		a.Decide("spiffe://example.org/svc18", "POST", "/api/v18/y")
		a.Decide("", "GET", "/nope")
	}); n != 0 {
		t.Fatalf("Decide allocates %v times per run; want 0", n)
	}
}

func BenchmarkDecide20Rules(b *testing.B) {
	a, err := router.CompileAuthorization(twentyRules())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	// Serial: the figure is the time one request's decision takes (with
	// RunParallel, -cpu 2 would report half of it).
	for b.Loop() {
		a.Decide("spiffe://example.org/ops/bob", "GET", "/api/v3/x")
	}
}

// The authorization section of a service is validated with the rest of
// the document, its problems named by their place, and compiled with it.
func TestDocumentAuthorization(t *testing.T) {
	doc, err := router.Parse([]byte(`apiVersion: ` + router.APIVersion + `
services:
  api:
    authorization:
      default: deny
      rules:
        - action: allow
          callers: [spiffe://example.org/front]
          paths: [/orders*]
          methods: [GET]
  web: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := router.Compile(doc)
	if err != nil {
		t.Fatal(err)
	}
	a := rules.Authorizer("api")
	if v := a.Decide("spiffe://example.org/front", "GET", "/orders/1"); !v.Allowed || v.Rule != 0 {
		t.Fatalf("front GET /orders/1: %+v; want allowed by rule 0", v)
	}
	if v := a.Decide("spiffe://example.org/batch", "GET", "/orders/1"); v.Allowed {
		t.Fatalf("batch: %+v; want denied by default", v)
	}
	if rules.Authorizer("web") != nil {
		t.Fatal("a service without an authorization section has an Authorizer; want nil (everyone may call)")
	}
	// A service the rules do not name fails closed: a guard for it (a
	// typo, a document not published yet) serves nobody.
	if v := rules.Authorizer("other").Decide("spiffe://example.org/front", "GET", "/orders/1"); v.Allowed || !v.Unknown {
		t.Fatalf("a service the rules do not name: %+v; want refused as unknown", v)
	}

	_, err = router.Parse([]byte(`apiVersion: ` + router.APIVersion + `
services:
  api:
    authorization:
      rules:
        - action: allow
          callers: [front]
`))
	if err == nil {
		doc.Services["api"].Authorization.Rules[0].Callers[0] = "front"
		_, err = router.Compile(doc)
	}
	if err == nil || !strings.Contains(err.Error(), "services.api.authorization.rules[0].callers[0]") {
		t.Fatalf("invalid caller: %v; want an error naming services.api.authorization.rules[0].callers[0]", err)
	}
}

// A policy for the calls an orders service receives: front may read,
// the ops team may do anything, nobody else may call.
func ExampleCompileAuthorization() {
	a, err := router.CompileAuthorization(router.Authorization{
		Default: "deny",
		Rules: []router.AuthorizationRule{
			{Action: "allow", Callers: []string{"spiffe://example.org/front"}, Paths: []string{"/orders*"}, Methods: []string{"GET"}},
			{Action: "allow", Callers: []string{"spiffe://example.org/ops/*"}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(a.Decide("spiffe://example.org/front", "GET", "/orders/7").Reason)
	fmt.Println(a.Decide("spiffe://example.org/front", "DELETE", "/orders/7").Reason)
	fmt.Println(a.Decide("spiffe://example.org/ops/alice", "DELETE", "/orders/7").Reason)
	_, err = router.CompileAuthorization(router.Authorization{Rules: []router.AuthorizationRule{{Action: "allow", Callers: []string{"front"}}}})
	fmt.Println(err)
	// Output:
	// allowed by authorization rule 0
	// denied by default: no authorization rule allows this caller
	// allowed by authorization rule 1
	// rules[0].callers[0]: "front" is neither a SPIFFE ID (spiffe://domain/path, with /* for a prefix), a trust domain (spiffe://domain) nor none
}
