package router

import (
	"fmt"
	pathpkg "path"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Authorization is the authorization of calls a local service receives: rules tried in order,
// the first that matches decides; when none matches, Default decides.
type Authorization struct {
	// Rules are tried in order.
	Rules []AuthorizationRule `json:"rules,omitempty" yaml:"rules,omitempty"`
	// Default is "allow" or "deny" (default-deny); empty means "allow".
	Default string `json:"default,omitempty" yaml:"default,omitempty"`
}

// AuthorizationRule allows or denies the calls it matches. Every non-empty list must
// match (any of its entries); an empty list matches everything.
type AuthorizationRule struct {
	// Action is "allow" or "deny".
	Action string `json:"action" yaml:"action"`
	// Callers are SPIFFE IDs: "spiffe://td/path" matches exactly,
	// "spiffe://td/prefix/*" matches IDs under the prefix,
	// "spiffe://td" matches the whole trust domain, and "none" matches a
	// caller without a certificate (plaintext in permissive mode).
	Callers []string `yaml:"callers,omitempty" json:"callers,omitempty"`
	// Paths are URL paths or full gRPC methods ("/pkg.Svc/Method"); a
	// trailing "*" matches by prefix.
	Paths []string `json:"paths,omitempty" yaml:"paths,omitempty"`
	// Methods are HTTP methods (GET, POST, …), matched in any case;
	// gRPC calls are POST. GET also matches HEAD, which net/http serves
	// with GET handlers.
	Methods []string `json:"methods,omitempty" yaml:"methods,omitempty"`
}

type idMatcher struct {
	none   bool
	exact  string // full ID
	prefix string // "spiffe://td/prefix/" or "spiffe://td/" for a trust domain
}

type strMatcher struct {
	s      string
	prefix bool
}

type compiledRule struct {
	allow   bool
	callers []idMatcher
	paths   []strMatcher
	methods []string
	reason  string
}

// Authorizer is a compiled Authorization. Its Decide allocates nothing. The zero
// value and nil allow every call.
type Authorizer struct {
	rules []compiledRule
	// general holds, in order, the indexes of the rules that can match
	// a caller whose ID no rule names exactly: those without callers or
	// naming one by prefix or trust domain. byCaller holds, for each ID
	// some rule names exactly (none as ""), general merged in order with
	// the rules naming it. A
	// decision tries only its caller's list: with a rule per calling
	// service, a 20-rule policy is one map read and a rule or two, not 20
	// rules (see BenchmarkDecide20Rules).
	general       []int32
	byCaller      map[string][]int32
	defaultAllow  bool
	defaultReason string
	// unknown: the authorization is not known; every call is refused
	// (Verdict.Unknown).
	unknown bool
	// doc is the section as written, for InForce.
	doc Authorization
}

// Verdict is the outcome of Authorizer.Decide.
type Verdict struct {
	// Allowed says whether the call may proceed.
	Allowed bool
	// Rule is the index of the deciding rule, or -1 for the default.
	Rule int
	// Reason says, for a caller, why: which rule or the default decided.
	Reason string
	// Unknown says the call is refused because the authorization of the
	// service is not known (no rule document in force yet, or the rules
	// in force do not name the service), not because of who calls:
	// guards answer 503 / Unavailable, which a caller may retry
	// elsewhere or later.
	Unknown bool
}

// Authorizers that refuse every call because the authorization of the
// service is not known. Never modified.
var (
	noRules = &Authorizer{unknown: true, defaultReason: "no rule document in force yet"}
	unnamed = &Authorizer{unknown: true, defaultReason: "the rules in force do not name this service"}
)

// CompileAuthorization validates p and compiles it, as Compile does with
// the authorization section of a service. The error is a *FieldError
// whose path is relative to the section (rules[2].callers[0]).
func CompileAuthorization(p Authorization) (*Authorizer, error) {
	c := &compiler{}
	a := c.authorization("", &p)
	if len(c.problems) > 0 {
		return nil, c.problems[0]
	}
	return a, nil
}

// authorization compiles the section at path; problems go to c.
func (c *compiler) authorization(path string, p *Authorization) *Authorizer {
	at := func(s string) string {
		if path == "" {
			return s
		}
		return path + "." + s
	}
	a := &Authorizer{defaultAllow: true, doc: Authorization{Default: p.Default, Rules: slices.Clone(p.Rules)}}
	switch p.Default {
	case "", "allow":
		a.defaultReason = "allowed by default"
	case "deny":
		a.defaultAllow = false
		a.defaultReason = "denied by default: no authorization rule allows this caller"
	default:
		c.fail(at("default"), "%s is neither allow nor deny", quote(p.Default))
	}
	if len(p.Rules) > MaxRoutes {
		c.fail(at("rules"), "%d rules, over the limit of %d", len(p.Rules), MaxRoutes)
		return a
	}
	for i, r := range p.Rules {
		var cr compiledRule
		switch r.Action {
		case "allow":
			cr.allow = true
		case "deny":
		default:
			c.fail(at(fmt.Sprintf("rules[%d].action", i)), "%s is neither allow nor deny", quote(r.Action))
		}
		for j, s := range r.Callers {
			m, err := compileID(s)
			if err != nil {
				c.fail(at(fmt.Sprintf("rules[%d].callers[%d]", i, j)), "%s", err)
				continue
			}
			cr.callers = append(cr.callers, m)
		}
		for j, s := range r.Paths {
			if !strings.HasPrefix(s, "/") {
				c.fail(at(fmt.Sprintf("rules[%d].paths[%d]", i, j)), "%s does not start with /", quote(s))
				continue
			}
			if k := strings.IndexByte(s, '*'); k >= 0 && k != len(s)-1 {
				c.fail(at(fmt.Sprintf("rules[%d].paths[%d]", i, j)), "%s: * is allowed only at the end", quote(s))
				continue
			}
			if p, ok := strings.CutSuffix(s, "*"); ok {
				cr.paths = append(cr.paths, strMatcher{s: p, prefix: true})
			} else {
				cr.paths = append(cr.paths, strMatcher{s: s})
			}
		}
		for j, s := range r.Methods {
			if s == "" || strings.ToUpper(s) != s {
				c.fail(at(fmt.Sprintf("rules[%d].methods[%d]", i, j)), "%s is not an upper-case HTTP method", quote(s))
				continue
			}
			cr.methods = append(cr.methods, s)
		}
		verb := "denied"
		if cr.allow {
			verb = "allowed"
		}
		cr.reason = fmt.Sprintf("%s by authorization rule %d", verb, i)
		a.rules = append(a.rules, cr)
	}
	a.index()
	return a
}

// index builds general and byCaller from rules. Every rule that can
// match a caller is on that caller's list: a rule naming callers only by
// exact ID (or none) matches only those IDs, and is on their lists; any
// other rule is on every list.
func (a *Authorizer) index() {
	exactOnly := func(r *compiledRule) bool {
		if len(r.callers) == 0 {
			return false
		}
		for _, m := range r.callers {
			if !m.none && m.exact == "" {
				return false
			}
		}
		return true
	}
	a.general, a.byCaller = nil, nil
	for i := range a.rules {
		r := &a.rules[i]
		if !exactOnly(r) {
			a.general = append(a.general, int32(i))
			for id := range a.byCaller {
				a.byCaller[id] = append(a.byCaller[id], int32(i))
			}
			continue
		}
		for _, m := range r.callers {
			id := m.exact // "" for none
			if a.byCaller == nil {
				a.byCaller = map[string][]int32{}
			}
			l, ok := a.byCaller[id]
			if !ok {
				l = slices.Clone(a.general)
			}
			if n := len(l); n == 0 || l[n-1] != int32(i) { // an ID named twice in one rule
				l = append(l, int32(i))
			}
			a.byCaller[id] = l
		}
	}
}

func compileID(s string) (idMatcher, error) {
	if s == "none" {
		return idMatcher{none: true}, nil
	}
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return idMatcher{}, fmt.Errorf("%q is neither a SPIFFE ID (spiffe://domain/path, with /* for a prefix), a trust domain (spiffe://domain) nor none", s)
	}
	if p, ok := strings.CutSuffix(s, "/*"); ok {
		id, err := spiffeid.FromString(p)
		if err != nil {
			return idMatcher{}, fmt.Errorf("%q: %w", s, err)
		}
		return idMatcher{prefix: id.String() + "/"}, nil
	}
	if !strings.Contains(rest, "/") {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return idMatcher{}, fmt.Errorf("%q: %w", s, err)
		}
		return idMatcher{prefix: td.IDString() + "/"}, nil
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return idMatcher{}, fmt.Errorf("%q: %w", s, err)
	}
	return idMatcher{exact: id.String()}, nil
}

func (m *idMatcher) match(caller string) bool {
	switch {
	case m.none:
		return caller == ""
	case m.exact != "":
		return caller == m.exact
	default:
		return caller != "" && strings.HasPrefix(caller, m.prefix)
	}
}

// Decide says whether caller (a SPIFFE ID string, "" for none) may call
// path with method. It allocates nothing for a clean path; a nil
// Authorizer allows all.
//
// A path that is not clean (//a, /./a, /b/../a; see path.Clean) is
// allowed only when both it and its cleaned form are: handlers that clean
// the path themselves (http.FileServer, many routers) serve the cleaned
// one, which a rule matched against the path as written would not have
// decided.
func (a *Authorizer) Decide(caller, method, path string) Verdict {
	if a == nil {
		return Verdict{Allowed: true, Rule: -1, Reason: "no authorization policy"}
	}
	v := a.decide(caller, method, path)
	if !v.Allowed {
		return v
	}
	if c, ok := cleanPath(path); !ok {
		return a.decide(caller, method, c)
	}
	return v
}

// cleanPath returns p cleaned as path.Clean does, keeping a trailing
// slash, and whether p was clean already (then without allocating).
func cleanPath(p string) (string, bool) {
	if p == "" || p[0] != '/' {
		return p, true // "*" (OPTIONS *), or no path: nothing to clean
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p, true // what Clean would change starts with one of those
	}
	c := pathpkg.Clean(p)
	if c == p || (len(p) == len(c)+1 && p[len(p)-1] == '/' && p[:len(c)] == c) {
		return p, true
	}
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c, false
}

func (a *Authorizer) decide(caller, method, path string) Verdict {
	candidates := a.general
	if l, ok := a.byCaller[caller]; ok {
		candidates = l
	}
	for _, i := range candidates {
		r := &a.rules[i]
		if !r.matches(caller, method, path) {
			continue
		}
		return Verdict{Allowed: r.allow, Rule: int(i), Reason: r.reason}
	}
	return Verdict{Allowed: a.defaultAllow, Rule: -1, Reason: a.defaultReason, Unknown: a.unknown}
}

func (r *compiledRule) matches(caller, method, path string) bool {
	if len(r.callers) > 0 {
		ok := false
		for i := range r.callers {
			if r.callers[i].match(caller) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.paths) > 0 {
		ok := false
		for _, p := range r.paths {
			if p.s == path || (p.prefix && strings.HasPrefix(path, p.s)) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.methods) > 0 {
		// In any case: net/http passes "get" on as written, and a
		// handler registered without a method serves it as GET.
		for _, m := range r.methods {
			if m == method || strings.EqualFold(m, method) || (m == "GET" && strings.EqualFold(method, "HEAD")) {
				return true
			}
		}
		return false
	}
	return true
}

// Authorizer returns the compiled authorization of the calls service
// receives, or nil (every call allowed) when the service's rules have no
// authorization section. It fails closed: when r is nil or stands for no
// rule document (a Table made without rules: none in force yet), or does
// not name the service, it returns an Authorizer refusing every call with
// Verdict.Unknown, so a guard never serves a caller it has no rules for.
func (r *Rules) Authorizer(service string) *Authorizer {
	if r.None() {
		return noRules
	}
	if sr := r.services[service]; sr != nil {
		return sr.authz
	}
	return unnamed
}

// None reports whether r stands for no rule document: nil, or the rules of
// a Table made without any (none in force yet).
func (r *Rules) None() bool { return r == nil || r.none }

// ServerID returns the SPIFFE ID the servers of service must present
// (its serverID), and false when calls to it need no mutual TLS.
func (r *Rules) ServerID(service string) (spiffeid.ID, bool) {
	if r == nil || !r.serverIDs {
		return spiffeid.ID{}, false
	}
	if sr := r.services[service]; sr != nil && !sr.serverID.IsZero() {
		return sr.serverID, true
	}
	return spiffeid.ID{}, false
}

// Describe writes r on one line as explain shows it:
// allow callers [spiffe://td/a] paths [/v1/*] methods [GET].
func (r AuthorizationRule) Describe() string {
	var b strings.Builder
	b.WriteString(r.Action)
	for _, l := range []struct {
		name string
		list []string
	}{{"callers", r.Callers}, {"paths", r.Paths}, {"methods", r.Methods}} {
		if len(l.list) > 0 {
			fmt.Fprintf(&b, " %s %v", l.name, l.list)
		}
	}
	if len(r.Callers)+len(r.Paths)+len(r.Methods) == 0 {
		b.WriteString(" every call")
	}
	return b.String()
}

// AuthorizationInForce is the authorization of the calls a service
// receives, as InForce shows it: the rules in order with the default
// written out.
type AuthorizationInForce struct {
	// Default is "allow" or "deny": what decides a call no rule matches.
	Default string `json:"default"`
	// Rules are tried in order; the first that matches decides.
	Rules []AuthorizationRule `json:"rules,omitempty"`
}

// inForce returns a as InForce shows it; nil for nil and for an unknown
// authorization (a service the rules do not name has no section to show).
func (a *Authorizer) inForce() *AuthorizationInForce {
	if a == nil || a.unknown {
		return nil
	}
	in := &AuthorizationInForce{Default: "allow", Rules: a.doc.Rules}
	if !a.defaultAllow {
		in.Default = "deny"
	}
	return in
}

// AuthorizationStep is an authorization decision as explain shows it:
// who called what, whether the service's authorization lets it, and the
// rule that decided.
type AuthorizationStep struct {
	// Caller is the caller's SPIFFE ID, "" for a caller without a
	// certificate.
	Caller string `json:"caller"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Allowed says whether the call would be served.
	Allowed bool `json:"allowed"`
	// Rule is the index of the deciding rule, -1 for the default (or no
	// authorization at all); Decider is that rule as written, nil for the
	// default.
	Rule    int                `json:"rule"`
	Decider *AuthorizationRule `json:"decider,omitempty"`
	// Reason is what the refused caller is told (403 / PermissionDenied).
	Reason string `json:"reason"`
	// Unknown is Verdict.Unknown: refused because the service's
	// authorization is not known (503 / Unavailable).
	Unknown bool `json:"unknown,omitempty"`
}

// ExplainAuthorization decides, as identity.Guard would on the rules r,
// whether caller ("" for none) may call path with method on service, and
// names the deciding rule. It is for tools: the request path calls
// Authorizer.Decide.
func (r *Rules) ExplainAuthorization(service, caller, method, path string) *AuthorizationStep {
	a := r.Authorizer(service)
	v := a.Decide(caller, method, path)
	st := &AuthorizationStep{Caller: caller, Method: method, Path: path, Allowed: v.Allowed, Rule: v.Rule, Reason: v.Reason, Unknown: v.Unknown}
	if a != nil && v.Rule >= 0 && v.Rule < len(a.doc.Rules) {
		st.Decider = &a.doc.Rules[v.Rule]
	}
	return st
}
