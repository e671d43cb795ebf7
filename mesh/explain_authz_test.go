package mesh_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

const authzRules = `apiVersion: lightmesh/v1
services:
  api:
    serverID: spiffe://example.org/api
    authorization:
      default: deny
      rules:
        - {action: deny, callers: [spiffe://example.org/front], paths: [/admin/*]}
        - {action: allow, callers: [spiffe://example.org/front, spiffe://example.org/batch/*], methods: [GET]}
        - {action: allow, callers: [none], paths: [/healthz]}
`

// Explain (the API, the status page's JSON and its text) shows the
// authorization in force for a service and, for a caller and a call, the
// decision and the rule that decided it; and that decision is the one a
// server guarded by the same rules gives the same call.
func TestExplainShowsAuthorizationDecision(t *testing.T) {
	m := newMesh(t, rules.NewMemory([]byte(authzRules)), discovery.NewStatic(map[string][]discovery.Instance{"api": {{Address: "127.0.0.1:1"}}}))
	g, err := identity.NewGuard(m, identity.GuardOptions{Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	// The server: the caller's ID as mutual TLS would put it in the
	// context (X-Test-Caller stands in for the certificate).
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c := r.Header.Get("X-Test-Caller"); c != "" {
			r = r.WithContext(identity.WithCallerID(r.Context(), spiffeid.RequireFromString(c)))
		}
		g.Handler(ok).ServeHTTP(w, r)
	}))
	defer server.Close()
	admin := httptest.NewServer(m.StatusHandler())
	defer admin.Close()

	for _, c := range []struct {
		caller, method, path string
		allowed              bool
		rule                 int
	}{
		{"spiffe://example.org/front", "GET", "/v1/users", true, 1},
		{"spiffe://example.org/front", "GET", "/admin/users", false, 0},
		{"spiffe://example.org/batch/nightly", "GET", "/v1/users", true, 1},
		{"spiffe://example.org/batch/nightly", "POST", "/v1/users", false, -1},
		{"", "GET", "/healthz", true, 2},
		{"spiffe://other.org/front", "GET", "/v1/users", false, -1},
	} {
		name := fmt.Sprintf("%s %s %s", c.caller, c.method, c.path)
		e := m.Explain(mesh.ExplainRequest{Service: "api", Method: c.method, Path: c.path, Caller: c.caller})
		a := e.Authorization
		if a == nil || a.Allowed != c.allowed || a.Rule != c.rule || a.Caller != c.caller {
			t.Errorf("%s: explain says %+v; want allowed=%v by rule %d", name, a, c.allowed, c.rule)
			continue
		}
		if c.rule >= 0 && (a.Decider == nil || a.Decider.Action == "") {
			t.Errorf("%s: explain names no deciding rule: %+v", name, a)
		}
		req, _ := http.NewRequest(c.method, server.URL+c.path, nil)
		if c.caller != "" {
			req.Header.Set("X-Test-Caller", c.caller)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if served := resp.StatusCode == http.StatusOK; served != c.allowed || !c.allowed && !strings.Contains(string(body), a.Reason) {
			t.Errorf("%s: the server answered %d %q; explain said allowed=%v, %q", name, resp.StatusCode, body, a.Allowed, a.Reason)
		}
	}

	// The status page: the policy in force and the decision, by caller=.
	js := explainJSON(t, admin.URL, "service=api&method=POST&path=/v1/users&caller=spiffe://example.org/front")
	if js.Authorization == nil || js.Authorization.Allowed || js.Authorization.Rule != -1 {
		t.Errorf("status page explain: authorization %+v; want denied by the default", js.Authorization)
	}
	if p := js.Policy; p == nil || p.ServerID != "spiffe://example.org/api" || p.Authorization == nil || p.Authorization.Default != "deny" || len(p.Authorization.Rules) != 3 {
		t.Errorf("status page explain: policy %+v; want serverID and the 3-rule default-deny authorization", p)
	}
	resp, err := http.Get(admin.URL + "?explain&service=api&caller=front")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `caller="front"`) {
		t.Errorf("caller=front: %d %q; want 400 naming the caller", resp.StatusCode, body)
	}
	for query, want := range map[string]string{
		"format=html": "deny callers [spiffe://example.org/front] paths [/admin/*]",
		"format=html&explain&service=api&path=/admin/x&caller=spiffe://example.org/front": "not authorized",
	} {
		resp, err := http.Get(admin.URL + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) || !strings.Contains(string(body), "spiffe://example.org/api") {
			t.Errorf("status page %s: %d; want the server ID and %q in\n%s", query, resp.StatusCode, want, body)
		}
	}
	st := m.Status()
	found := false
	for _, s := range st.Services {
		if s.Name == "api" && s.InForce != nil && s.InForce.Authorization != nil && s.InForce.Authorization.Default == "deny" && s.InForce.ServerID == "spiffe://example.org/api" {
			found = true
		}
	}
	if !found {
		t.Errorf("status: api's in-force policy shows no authorization or server ID")
	}

	var text bytes.Buffer
	e := m.Explain(mesh.ExplainRequest{Service: "api", Method: "GET", Path: "/admin/x", Caller: "spiffe://example.org/front"})
	if err := e.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"authorization: 3 rules, default deny",
		"rule 0: deny callers [spiffe://example.org/front] paths [/admin/*]",
		"caller spiffe://example.org/front, GET /admin/x: DENIED, denied by authorization rule 0",
		"server ID: spiffe://example.org/api",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("explain text lacks %q:\n%s", want, text.String())
		}
	}
}
