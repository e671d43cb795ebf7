package identity_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/identity"
)

func twentyRules() identity.Policy {
	var p identity.Policy
	p.Default = "deny"
	for i := 0; i < 19; i++ {
		p.Rules = append(p.Rules, identity.Rule{Action: "allow", Callers: []string{fmt.Sprintf("spiffe://example.org/svc%d", i)}, Paths: []string{fmt.Sprintf("/api/v%d/*", i)}, Methods: []string{"GET", "POST"}})
	}
	p.Rules = append(p.Rules, identity.Rule{Action: "allow", Callers: []string{"spiffe://example.org/ops/*"}, Paths: []string{"/api/*"}})
	return p
}

func TestDecide(t *testing.T) {
	a, err := identity.Compile(identity.Policy{Default: "deny", Rules: []identity.Rule{
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
		p    identity.Policy
		want string
	}{
		{identity.Policy{Default: "maybe"}, `default: "maybe"`},
		{identity.Policy{Rules: []identity.Rule{{Action: "permit"}}}, `rules[0].action`},
		{identity.Policy{Rules: []identity.Rule{{Action: "allow"}, {Action: "deny", Paths: []string{"api"}}}}, `rules[1].paths[0]`},
		{identity.Policy{Rules: []identity.Rule{{Action: "deny", Paths: []string{"/a*b"}}}}, `rules[0].paths[0]`},
		{identity.Policy{Rules: []identity.Rule{{Action: "deny", Methods: []string{"get"}}}}, `rules[0].methods[0]`},
		{identity.Policy{Rules: []identity.Rule{{Action: "deny", Callers: []string{"spiffe://x", "front"}}}}, `rules[0].callers[1]`},
	} {
		_, err := identity.Compile(c.p)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Compile(%+v) = %v; want an error starting %q", c.p, err, c.want)
		}
	}
}

// The decision over a 20-rule policy allocates nothing.
func TestDecideAllocatesNothing(t *testing.T) {
	a, err := identity.Compile(twentyRules())
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
	a, err := identity.Compile(twentyRules())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Decide("spiffe://example.org/ops/bob", "GET", "/api/v3/x")
		}
	})
}
