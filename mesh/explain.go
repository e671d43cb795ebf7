package mesh

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/internal/textdist"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// ExplainRequest describes a call for Explain.
type ExplainRequest struct {
	// Service is the logical name called.
	Service string
	// Method and Path are the HTTP method (GET when empty) and URL path.
	Method, Path string
	// GRPCMethod, for a gRPC call, is its full method name
	// (/pkg.Service/Method): the path routes match, with method POST.
	GRPCMethod string
	// Header holds the call's headers or gRPC metadata, in any case.
	Header http.Header
	// Caller is the SPIFFE ID of the caller, for the service's
	// authorization ("none" or "" for a caller without a certificate).
	// The explanation's Authorization says whether the service serves it
	// and which rule decided; without a Caller only for a service with an
	// authorization section.
	Caller string
}

// Explanation is a call's decision with its trace: every route tried and
// why it did or did not match, the split, the candidates at each step
// (with the labels, healthy, not ejected), the fallback and why, the
// instance (the embedded router.Explanation), the policy in force with
// the live state it reads, and the rules' version. WriteText prints it
// for a person; its JSON form is for tools.
type Explanation struct {
	*router.Explanation
	// Rules names the rule versions the explanation rests on (see
	// Mesh.Explain) and Source where they come from.
	Rules  string `json:"rules,omitempty"`
	Source string `json:"source,omitempty"`
	// Policy is what the matched route applies, every setting filled in
	// (router.Rules.InForce: the route's own sections, else the
	// service's, else the defaults'); nil for a service the mesh does
	// not know.
	Policy *PolicyInForce `json:"policy,omitempty"`
	// GRPC says the call explained is a gRPC call: its retry conditions
	// are shown as gRPC codes.
	GRPC bool `json:"grpc,omitempty"`
	// Breaker is the state of the service breaker ("" without one) and
	// Ejected the candidates whose instance breaker refuses calls now.
	Breaker string            `json:"breaker,omitempty"`
	Ejected []EjectedInstance `json:"ejected,omitempty"`
	// Tokens is what the route's rate limit holds now; nil without one.
	Tokens *float64 `json:"tokens,omitempty"`
	// Reason is the short name of why the call would be refused
	// (no_route, no_instance, circuit_open, rate_limited), "" when it
	// would be sent.
	Reason string `json:"reason,omitempty"`
}

// PolicyInForce is the protection a call gets, every setting filled in:
// router.PolicyInForce, which router.Rules.InForce computes.
type PolicyInForce = router.PolicyInForce

// EjectedInstance is an instance whose breaker refuses calls: State is
// "open" or "half-open, probe slots taken", OpenUntil when an open
// breaker lets a probe through.
type EjectedInstance struct {
	Address   string    `json:"address"`
	State     string    `json:"state"`
	OpenUntil time.Time `json:"openUntil,omitzero"`
}

// WriteText writes e for a person: one line per step.
func (e *Explanation) WriteText(w io.Writer) error { return e.engine().WriteText(w) }

// explanationOf gives the engine's explanation as this package's type.
func explanationOf(ee *engine.Explanation) *Explanation {
	e := &Explanation{Explanation: ee.Explanation, Policy: ee.Policy, Rules: ee.Rules, Source: ee.Source, GRPC: ee.GRPC, Breaker: ee.Breaker, Tokens: ee.Tokens, Reason: ee.Reason}
	for _, ej := range ee.Ejected {
		e.Ejected = append(e.Ejected, EjectedInstance(ej))
	}
	return e
}

// engine gives e as the engine's type, the inverse of explanationOf.
func (e *Explanation) engine() *engine.Explanation {
	ee := &engine.Explanation{Explanation: e.Explanation, Policy: e.Policy, Rules: e.Rules, Source: e.Source, GRPC: e.GRPC, Breaker: e.Breaker, Tokens: e.Tokens, Reason: e.Reason}
	for _, ej := range e.Ejected {
		ee.Ejected = append(ee.Ejected, engine.EjectedInstance(ej))
	}
	return ee
}

// Explain returns the decision a call described by req would get now, on
// the rules and instances in force, with its trace. It sends nothing and
// touches nothing: no breaker admits a call, no token is taken, no budget
// or rotation moves, so the instance named is the one the next call takes
// if no other comes first. The status page's explain view and the
// lightmesh command call it; the request path never builds a trace.
//
// The explanation's Rules names the versions it rests on: the document's
// with WithRules; with WithRuleCatalog the service's own document
// (user-api@v7) and the defaults it takes (+ _defaults@v3), never
// another service's. A service that no rule and no discovery entry names
// is explained as such, with the closest known name when it looks like a
// typo (did you mean "user-api"?).
func (m *Mesh) Explain(req ExplainRequest) *Explanation {
	rr := &router.Request{Method: req.Method, Path: req.Path, Metadata: make(map[string][]string, len(req.Header))}
	if rr.Method == "" {
		rr.Method = http.MethodGet
	}
	if req.GRPCMethod != "" {
		rr.Method, rr.Path = http.MethodPost, req.GRPCMethod
	}
	for k, v := range req.Header {
		k = strings.ToLower(k)
		rr.Metadata[k] = append(rr.Metadata[k], v...)
	}
	snap := m.eng.Load()
	e := explanationOf(snap.Explain(req.Service, rr, time.Now()))
	e.Rules, e.Source = m.rulesOf(req.Service), m.source
	e.GRPC = req.GRPCMethod != ""
	caller := req.Caller
	if caller == "none" {
		caller = ""
	}
	rs := snap.Table().Rules()
	if in := rs.InForce(req.Service); e.Explanation != nil && (req.Caller != "" || in != nil && in.Authorization != nil) {
		e.Authorization = rs.ExplainAuthorization(req.Service, caller, rr.Method, rr.Path)
	}
	if !e.Known {
		e.Error = fmt.Sprintf("no rule and no discovery entry names %s", req.Service)
		if best := textdist.Closest(req.Service, snap.Table().Services(), 2); best != "" {
			e.Error += fmt.Sprintf("; did you mean %q?", best)
		}
	}
	return e
}

// explainRequest reads the call the explain view describes from q.
func explainRequest(q url.Values) (ExplainRequest, error) {
	req := ExplainRequest{Service: q.Get("service"), Method: q.Get("method"), Path: q.Get("path"), GRPCMethod: q.Get("grpc"), Header: http.Header{}, Caller: q.Get("caller")}
	if req.Service == "" {
		return req, errors.New("service= is required (the logical name called)")
	}
	if err := CheckCaller(req.Caller); err != nil {
		return req, fmt.Errorf("caller=%q: %v", req.Caller, err)
	}
	for _, kv := range q["header"] {
		if kv == "" {
			continue // an empty field of the status page's form
		}
		k, v, ok := strings.Cut(kv, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return req, fmt.Errorf("header=%q: want name:value", kv)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if req.Path == "" {
		req.Path = "/"
	}
	return req, nil
}

// rulesOf names the rule versions an explanation of service rests on:
// with WithRules the document's version; with a catalog the service's
// own document (name@version) and the defaults it takes, never another
// service's document.
func (m *Mesh) rulesOf(service string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.whole {
		return m.status.Rules.Version
	}
	var parts []string
	for _, name := range []string{service, rules.DefaultsName} {
		if st, ok := m.docStatus[name]; ok && st.Version != "" {
			parts = append(parts, name+"@"+st.Version)
		}
	}
	return strings.Join(parts, " + ")
}

// CheckCaller reports whether caller is what ExplainRequest.Caller takes:
// a SPIFFE ID, "none" or "".
func CheckCaller(caller string) error {
	if caller == "" || caller == "none" {
		return nil
	}
	if _, err := spiffeid.FromString(caller); err != nil {
		return fmt.Errorf("want a SPIFFE ID (spiffe://domain/path) or none: %v", err)
	}
	return nil
}
