package router

import (
	"math/rand/v2"
	"testing"
)

// TestAuthorizerIndexDecidesAsAScan checks the caller index against the
// plain first-match scan of every rule, on random policies over IDs named
// exactly, by prefix, by trust domain and none, with paths and methods:
// the index may only skip rules that cannot match.
func TestAuthorizerIndexDecidesAsAScan(t *testing.T) {
	ids := []string{"spiffe://a.org/x", "spiffe://a.org/y", "spiffe://a.org/x/z", "spiffe://b.org/x", "spiffe://b.org/q/r", "none"}
	patterns := append([]string{"spiffe://a.org/*", "spiffe://a.org/x/*", "spiffe://b.org"}, ids...)
	callers := []string{"", "spiffe://a.org/x", "spiffe://a.org/y", "spiffe://a.org/x/z", "spiffe://b.org/x", "spiffe://b.org/q/r", "spiffe://c.org/x", "spiffe://a.org/w"}
	methods := []string{"GET", "POST"}
	paths := []string{"/a", "/a/b", "/c"}
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 2000; n++ {
		var p Authorization
		p.Default = []string{"allow", "deny"}[rnd.IntN(2)]
		for range 1 + rnd.IntN(8) {
			r := AuthorizationRule{Action: []string{"allow", "deny"}[rnd.IntN(2)]}
			for range rnd.IntN(3) {
				r.Callers = append(r.Callers, patterns[rnd.IntN(len(patterns))])
			}
			if rnd.IntN(2) == 0 {
				r.Paths = []string{[]string{"/a*", "/a/b", "/c"}[rnd.IntN(3)]}
			}
			if rnd.IntN(3) == 0 {
				r.Methods = []string{methods[rnd.IntN(2)]}
			}
			p.Rules = append(p.Rules, r)
		}
		a, err := CompileAuthorization(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range callers {
			for _, m := range methods {
				for _, path := range paths {
					want := Verdict{Allowed: a.defaultAllow, Rule: -1, Reason: a.defaultReason}
					for i := range a.rules {
						if a.rules[i].matches(c, m, path) {
							want = Verdict{Allowed: a.rules[i].allow, Rule: i, Reason: a.rules[i].reason}
							break
						}
					}
					if got := a.decide(c, m, path); got != want {
						t.Fatalf("policy %+v, caller %q %s %s: index decided %+v, a scan %+v", p, c, m, path, got, want)
					}
				}
			}
		}
	}
}
