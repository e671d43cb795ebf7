package identity

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Policy is the authorization of one local service: rules tried in order,
// the first that matches decides; when none matches, Default decides.
type Policy struct {
	// Rules are tried in order.
	Rules []Rule `json:"rules,omitempty" yaml:"rules,omitempty"`
	// Default is "allow" or "deny" (default-deny); empty means "allow".
	Default string `json:"default,omitempty" yaml:"default,omitempty"`
}

// Rule allows or denies the calls it matches. Every non-empty list must
// match (any of its entries); an empty list matches everything.
type Rule struct {
	// Action is "allow" or "deny".
	Action string `json:"action" yaml:"action"`
	// Callers are SPIFFE IDs: "spiffe://td/path" matches exactly,
	// "spiffe://td/prefix/*" matches IDs under the prefix,
	// "spiffe://td" matches the whole trust domain, and "none" matches a
	// caller without a certificate (plaintext in permissive mode).
	Callers []string `json:"callers,omitempty" yaml:"callers,omitempty"`
	// Paths are URL paths or full gRPC methods ("/pkg.Svc/Method"); a
	// trailing "*" matches by prefix.
	Paths []string `json:"paths,omitempty" yaml:"paths,omitempty"`
	// Methods are HTTP methods (GET, POST, …); gRPC calls are POST.
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

// Authorizer is a compiled Policy. Its Decide allocates nothing. The zero
// value and nil allow every call.
type Authorizer struct {
	rules         []compiledRule
	defaultAllow  bool
	defaultReason string
}

// Decision is the outcome of Authorizer.Decide.
type Decision struct {
	// Allowed says whether the call may proceed.
	Allowed bool
	// Rule is the index of the deciding rule, or -1 for the default.
	Rule int
	// Reason says, for a caller, why: which rule or the default decided.
	Reason string
}

// Compile validates p and compiles it. Errors name the place in the
// policy, as rules[2].callers[0].
func Compile(p Policy) (*Authorizer, error) {
	a := &Authorizer{defaultAllow: true}
	switch p.Default {
	case "", "allow":
		a.defaultReason = "allowed by default"
	case "deny":
		a.defaultAllow = false
		a.defaultReason = "denied by default: no authorization rule allows this caller"
	default:
		return nil, fmt.Errorf("default: %q is neither allow nor deny", p.Default)
	}
	for i, r := range p.Rules {
		var c compiledRule
		switch r.Action {
		case "allow":
			c.allow = true
		case "deny":
		default:
			return nil, fmt.Errorf("rules[%d].action: %q is neither allow nor deny", i, r.Action)
		}
		for j, s := range r.Callers {
			m, err := compileID(s)
			if err != nil {
				return nil, fmt.Errorf("rules[%d].callers[%d]: %w", i, j, err)
			}
			c.callers = append(c.callers, m)
		}
		for j, s := range r.Paths {
			if !strings.HasPrefix(s, "/") {
				return nil, fmt.Errorf("rules[%d].paths[%d]: %q does not start with /", i, j, s)
			}
			if k := strings.IndexByte(s, '*'); k >= 0 && k != len(s)-1 {
				return nil, fmt.Errorf("rules[%d].paths[%d]: %q: * is allowed only at the end", i, j, s)
			}
			if p, ok := strings.CutSuffix(s, "*"); ok {
				c.paths = append(c.paths, strMatcher{s: p, prefix: true})
			} else {
				c.paths = append(c.paths, strMatcher{s: s})
			}
		}
		for j, s := range r.Methods {
			if s == "" || strings.ToUpper(s) != s {
				return nil, fmt.Errorf("rules[%d].methods[%d]: %q is not an upper-case HTTP method", i, j, s)
			}
			c.methods = append(c.methods, s)
		}
		verb := "denied"
		if c.allow {
			verb = "allowed"
		}
		c.reason = fmt.Sprintf("%s by authorization rule %d", verb, i)
		a.rules = append(a.rules, c)
	}
	return a, nil
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
// path with method. It allocates nothing; a nil Authorizer allows all.
func (a *Authorizer) Decide(caller, method, path string) Decision {
	if a == nil {
		return Decision{Allowed: true, Rule: -1, Reason: "no authorization policy"}
	}
	for i := range a.rules {
		r := &a.rules[i]
		if !r.matches(caller, method, path) {
			continue
		}
		return Decision{Allowed: r.allow, Rule: i, Reason: r.reason}
	}
	return Decision{Allowed: a.defaultAllow, Rule: -1, Reason: a.defaultReason}
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
		for _, m := range r.methods {
			if m == method {
				return true
			}
		}
		return false
	}
	return true
}

// Guard holds the authorization policy in force and swaps it atomically.
// Requests load it once; a policy that does not compile never replaces
// the one in force.
type Guard struct {
	cur    atomic.Pointer[Authorizer]
	logger *slog.Logger
	denied *prometheus.CounterVec
}

// GuardOptions configure a Guard. The zero value is usable.
type GuardOptions struct {
	// Logger receives rejected policies; nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives lightmesh_authz_denied_total{service,rule};
	// nil means no metric is registered.
	Registerer prometheus.Registerer
	// Service names the local service in the metric.
	Service string
}

// NewGuard returns a Guard enforcing p. It fails when p does not compile.
func NewGuard(p Policy, o GuardOptions) (*Guard, error) {
	a, err := Compile(p)
	if err != nil {
		return nil, fmt.Errorf("identity: authorization.%w", err)
	}
	g := &Guard{logger: o.Logger}
	if g.logger == nil {
		g.logger = slog.Default()
	}
	g.denied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "lightmesh_authz_denied_total",
		Help:        "Calls refused by the authorization policy, by deciding rule (-1: the default).",
		ConstLabels: prometheus.Labels{"service": o.Service},
	}, []string{"rule"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(g.denied); err != nil {
			return nil, fmt.Errorf("identity: registering metrics: %w", err)
		}
	}
	g.cur.Store(a)
	return g, nil
}

// Update compiles p and puts it in force for the next request. When p
// does not compile, the error names the place and the previous policy
// stays in force.
func (g *Guard) Update(p Policy) error {
	a, err := Compile(p)
	if err != nil {
		err = fmt.Errorf("identity: authorization.%w", err)
		g.logger.Error("identity: authorization policy rejected; the previous policy stays in force", "error", err)
		return err
	}
	g.cur.Store(a)
	return nil
}

// Decide decides with the policy in force and counts refusals.
func (g *Guard) Decide(caller, method, path string) Decision {
	d := g.cur.Load().Decide(caller, method, path)
	if !d.Allowed {
		g.denied.WithLabelValues(ruleLabel(d.Rule)).Inc()
	}
	return d
}

// ruleLabel formats a rule index; strconv does not allocate below 100.
func ruleLabel(i int) string { return strconv.Itoa(i) }

// Handler returns next behind the guard: it puts the caller's SPIFFE ID
// in the request context (CallerID) and answers 403 with the reason when
// the policy refuses the call. A nil Guard only sets the ID.
func (g *Guard) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := RequestCallerID(r)
		caller := ""
		if ok {
			caller = id.String()
			r = r.WithContext(WithCallerID(r.Context(), id))
		}
		if g != nil {
			if d := g.Decide(caller, r.Method, r.URL.Path); !d.Allowed {
				if caller == "" {
					caller = "a caller without a certificate"
				}
				http.Error(w, fmt.Sprintf("403 forbidden: %s may not %s %s: %s", caller, r.Method, r.URL.Path, d.Reason), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
