package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportIstioAuthorization: AuthorizationPolicies and a
// PeerAuthentication converted to an authorization section decide every
// call as Istio would (checked with explain --caller on the converted
// document): STRICT refuses callers without a certificate, DENY rules
// before ALLOW rules, the default deny once an ALLOW policy selects the
// service; what has no equivalent fails closed and is reported with its
// place: an ALLOW rule with a when condition or a suffix principal is left
// out, a DENY rule's notPrincipals is dropped (it denies more).
func TestImportIstioAuthorization(t *testing.T) {
	code, doc, stderr := lightmesh(t, nil, "import", "istio", "testdata/istio/reviews-security.yaml")
	if code != 0 {
		t.Fatalf("import: %d\n%s", code, stderr)
	}
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesFile, []byte(doc), 0o644)
	if code, out, _ := lightmesh(t, nil, "validate", rulesFile); code != 0 {
		t.Fatalf("the converted document does not validate:\n%s\n%s", out, doc)
	}
	decide := func(caller, method, path string) (bool, int) {
		t.Helper()
		code, out, stderr := lightmesh(t, nil, "explain", "-o", "json", "-f", rulesFile, "--instance", "reviews=10.1.0.1:9080",
			"--service", "reviews", "--caller", caller, "--method", method, "--path", path)
		if code != 0 {
			t.Fatalf("explain: %d %s", code, stderr)
		}
		var e struct {
			Authorization *struct {
				Allowed bool
				Rule    int
			}
		}
		if err := json.Unmarshal([]byte(out), &e); err != nil || e.Authorization == nil {
			t.Fatalf("explain: %v, no authorization in\n%s", err, out)
		}
		return e.Authorization.Allowed, e.Authorization.Rule
	}
	const td = "spiffe://cluster.local/ns/"
	for _, c := range []struct {
		caller, method, path string
		allowed              bool
	}{
		{td + "bookinfo/sa/bookinfo-productpage", "GET", "/reviews/0", true},
		{td + "bookinfo/sa/bookinfo-productpage", "GET", "/health", true},
		{td + "bookinfo/sa/bookinfo-productpage", "POST", "/reviews/0", false}, // not GET
		{td + "bookinfo/sa/bookinfo-productpage", "GET", "/internal/x", false}, // DENY first
		{td + "ops/sa/deployer", "POST", "/anything", true},                    // namespace ops
		{td + "ops/sa/deployer", "DELETE", "/reviews/0", false},                // notPrincipals dropped: DELETE denied to all
		{td + "ops/sa/admin", "DELETE", "/reviews/0", false},                   // ... even to the one Istio lets (fail closed)
		{td + "bookinfo/sa/bookinfo-ratings", "GET", "/reviews/0", false},      // its rule had a when: left out
		{td + "bookinfo/sa/bookinfo-details", "GET", "/reviews/0", false},      // suffix principal: left out
		{"none", "GET", "/health", false},                                      // STRICT
		{"spiffe://other.org/x", "GET", "/reviews/0", false},                   // default deny
	} {
		if got, rule := decide(c.caller, c.method, c.path); got != c.allowed {
			t.Errorf("%s %s %s: allowed=%v (rule %d); Istio: %v\n%s", c.caller, c.method, c.path, got, rule, c.allowed, doc)
		}
	}
	for _, want := range []string{
		"PeerAuthentication bookinfo/reviews-strict spec.mtls.mode: STRICT is the first authorization rule of reviews, deny callers [none]",
		"AuthorizationPolicy bookinfo/reviews-deny-internal spec.rules[1].from[0].source.notPrincipals: lightmesh authorizes by the caller's SPIFFE ID only, with no negation, JWT or address; dropped from this DENY rule, which so denies more (fail closed)",
		"AuthorizationPolicy bookinfo/reviews-viewer spec.rules[2].when: conditions on request attributes have no lightmesh equivalent; this ALLOW rule is left out, so it allows nothing (fail closed)",
		`AuthorizationPolicy bookinfo/reviews-viewer spec.rules[3].from[0].source.principals: "*/sa/bookinfo-details": lightmesh matches a SPIFFE ID exactly`,
		"AuthorizationPolicy bookinfo/audit-all spec.action: AUDIT only logs",
		"spec.rules[1].from[0].source.namespaces: matched by the SPIFFE IDs of trust domain cluster.local",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if code, _, _ := lightmesh(t, nil, "import", "istio", "--strict", "testdata/istio/reviews-security.yaml"); code == 0 {
		t.Errorf("import --strict of policies with fields left out: exit 0")
	}
}
