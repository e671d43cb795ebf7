package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Policies without a selector apply, in Istio, to every workload of their
// namespace (and in the root namespace istio-system, of the mesh): the
// form Istio's docs give for STRICT mutual TLS and for deny lists. The
// import left them out, so the converted document let plaintext callers
// and denied calls through. They now apply to every service of their
// namespace that the import converts; a policy for a namespace with no
// converted service is still listed as left out. A CUSTOM policy (an
// external authorizer lightmesh cannot ask) was left out too, letting
// through every call it could refuse; its calls are now denied.
func TestImportIstioNamespaceWidePolicies(t *testing.T) {
	code, doc, stderr := lightmesh(t, nil, "import", "istio", "testdata/istio/namespace-security.yaml")
	if code != 0 {
		t.Fatalf("import: %d\n%s", code, stderr)
	}
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	decide := func(service, caller, path string) bool {
		t.Helper()
		code, out, stderr := lightmesh(t, nil, "explain", "-o", "json", "-f", rulesFile, "--instance", service+"=10.1.0.1:9080",
			"--service", service, "--caller", caller, "--path", path)
		if code != 0 {
			t.Fatalf("explain: %d %s", code, stderr)
		}
		var e struct{ Authorization *struct{ Allowed bool } }
		if err := json.Unmarshal([]byte(out), &e); err != nil || e.Authorization == nil {
			t.Fatalf("explain: %v, no authorization in\n%s", err, out)
		}
		return e.Authorization.Allowed
	}
	const td = "spiffe://cluster.local/ns/"
	for _, c := range []struct {
		service, caller, path string
		allowed               bool
	}{
		{"reviews", td + "bookinfo/sa/productpage", "/reviews/1", true},
		{"reviews", "none", "/reviews/1", false},                       // bookinfo STRICT
		{"reviews", td + "bookinfo/sa/productpage", "/admin/x", false}, // bookinfo DENY
		{"reviews", td + "quarantine/sa/x", "/reviews/1", false},       // mesh-wide DENY
		{"orders", "none", "/orders/1", false},                         // a port's STRICT: the whole service
		{"orders", td + "shop/sa/front", "/admin/x", true},             // bookinfo's DENY is not shop's
		{"orders", td + "quarantine/sa/x", "/orders/1", false},         // mesh-wide DENY
		{"orders", td + "shop/sa/front", "/pay/1", false},              // CUSTOM: refused, not let through
	} {
		if got := c.allowed; decide(c.service, c.caller, c.path) != got {
			t.Errorf("%s: %s %s: allowed=%v; want %v\n%s", c.service, c.caller, c.path, !got, got, doc)
		}
	}
	if !strings.Contains(stderr, "applies to every workload of namespace bookinfo: to the services of it converted here, reviews") {
		t.Errorf("stderr does not say where the namespace-wide policy went:\n%s", stderr)
	}
}

// A policy's namespaces match the SPIFFE IDs of the mesh's trust domain:
// with another than Istio's default cluster.local (--trust-domain), a
// DENY by namespace converted for cluster.local matched no caller.
func TestImportIstioTrustDomain(t *testing.T) {
	code, doc, stderr := lightmesh(t, nil, "import", "istio", "--trust-domain", "example.com", "testdata/istio/namespace-security.yaml")
	if code != 0 {
		t.Fatalf("import: %d\n%s", code, stderr)
	}
	if !strings.Contains(doc, "spiffe://example.com/ns/quarantine/*") || strings.Contains(doc, "spiffe://cluster.local/ns/quarantine/*") {
		t.Fatalf("namespaces not in trust domain example.com:\n%s", doc)
	}
}
