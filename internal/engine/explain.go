package engine

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// Explanation is a call's decision as the mesh would make it now, with its
// trace: the routing (router.Explanation), the protection in force and
// the live state it reads (breakers, the rate limit's tokens), and the
// rules' version. Its JSON form is what the status page and the lightmesh
// command print.
type Explanation struct {
	*router.Explanation
	// Rules and Source identify the rules in force.
	Rules  string `json:"rules,omitempty"`
	Source string `json:"source,omitempty"`
	// Policy is what the matched route applies, every setting filled in
	// (router.Rules.InForce: the route's own sections, else the
	// service's, else the defaults'); nil for a service the mesh does
	// not know.
	Policy *router.PolicyInForce `json:"policy,omitempty"`
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

// EjectedInstance is an instance whose breaker refuses calls.
type EjectedInstance struct {
	Address   string    `json:"address"`
	State     string    `json:"state"`
	OpenUntil time.Time `json:"openUntil,omitzero"`
}

// Explain returns the decision a call to service with req would get from
// s now, with its trace. It changes nothing: no breaker is asked to admit
// a call, no token is taken, no rotation advances.
func (s *State) Explain(service string, req *router.Request, now time.Time) *Explanation {
	svc := s.Service(service)
	var ejected []EjectedInstance
	accept := func(in *discovery.Instance) bool {
		if !svc.ejected(in) {
			return true
		}
		b := svc.instanceBreaker(in)
		for _, e := range ejected {
			if e.Address == in.Address {
				return false
			}
		}
		st := "half-open, probe slots taken"
		if b.PeekState() == breaker.StateOpen {
			st = "open"
		}
		ejected = append(ejected, EjectedInstance{Address: in.Address, State: st, OpenUntil: b.OpenUntil()})
		return false
	}
	e := &Explanation{Explanation: s.table.Explain(service, req, accept)}
	e.Ejected = ejected
	if svc != nil {
		e.Policy = s.table.Rules().InForce(service).ForRoute(e.RouteIndex)
		route := &svc.def
		if i := e.RouteIndex; i >= 0 && i < len(svc.routes) {
			route = &svc.routes[i]
		}
		if route.limiter != nil {
			tokens := route.limiter.TokensAt(now)
			e.Tokens = &tokens
		}
		if svc.breaker != nil {
			e.Breaker = svc.breaker.PeekState().String()
			if svc.breaker.Settings().Mode == breaker.ModeAdaptive {
				e.Breaker = fmt.Sprintf("%s, adaptive, refusing %.0f%% of calls", e.Breaker, 100*svc.breaker.DropRatio())
			}
		}
		switch {
		case e.Err() != nil:
		case e.Breaker == breaker.StateOpen.String():
			e.Reason, e.Error = ReasonCircuitOpen, (&CircuitOpenError{Service: service}).Error()
		case e.Tokens != nil && *e.Tokens < 1:
			e.Reason, e.Error = ReasonRateLimited, (&RateLimitError{Service: service, Route: routeScope(route)}).Error()
		}
	}
	if e.Reason == "" {
		e.Reason = RejectionReason(e.Err())
		if e.Err() != nil && len(e.Ejected) > 0 {
			// Every candidate is ejected: the call fails as Run fails it.
			coe := &CircuitOpenError{Service: service, Instances: len(e.Ejected)}
			if e.Chosen != nil {
				coe.Subset = e.Chosen.Name
			}
			if len(e.Ejected) == 1 {
				coe.Instance = e.Ejected[0].Address
			}
			e.Reason, e.Error = ReasonCircuitOpen, coe.Error()
		}
	}
	return e
}

func routeScope(r *Route) string {
	if r.policy == nil {
		return ""
	}
	return r.policy.Route
}

// WriteText writes e for a person: one line per step.
func (e *Explanation) WriteText(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	if e.Rules != "" {
		p("rules %s from %s", e.Rules, e.Source)
	}
	p("service %s", e.Service)
	if !e.Known {
		p("  unknown: no rule names it and discovery reports no instance")
	}
	for _, r := range e.Routes {
		verdict := "no match"
		if r.Matched {
			verdict = "MATCH"
		}
		p("  route %d %q: %s", r.Index, r.Name, verdict)
		for _, c := range r.Conditions {
			got := "absent"
			if c.Present {
				got = fmt.Sprintf("%q", c.Got)
			}
			mark := "✗"
			if c.Matched {
				mark = "✓"
			}
			p("    %s %s %s: got %s", mark, c.Field, c.Want, got)
		}
	}
	if e.Lane != nil {
		p("  %s", e.Lane.Decision)
	}
	if len(e.Split) > 1 {
		var parts []string
		for _, s := range e.Split {
			parts = append(parts, fmt.Sprintf("%s %d (%.0f%%)", s.Subset, s.Weight, s.Share*100))
		}
		p("  split: %s", strings.Join(parts, ", "))
	}
	step := func(role string, s *router.SubsetStep) {
		if s != nil {
			p("  %s subset %s (%s): %d with the labels → %d healthy → %d available", role, s.Name, labelList(s.Labels), s.Matching, s.Healthy, s.Available)
		}
	}
	step("chosen", e.Chosen)
	step("fallback", e.Fallback)
	for _, ej := range e.Ejected {
		until := ""
		if !ej.OpenUntil.IsZero() {
			until = " until " + ej.OpenUntil.UTC().Format(time.RFC3339)
		}
		p("  ejected %s: breaker %s%s", ej.Address, ej.State, until)
	}
	if e.FallbackUsed {
		p("  fallback taken: %s", e.Why)
	}
	if e.Breaker != "" {
		p("  service breaker: %s", e.Breaker)
	}
	if pol := e.Policy; pol != nil {
		from := func(setting string) string {
			switch {
			case slices.Contains(pol.FromDefaults, setting):
				return " (from defaults)"
			case slices.Contains(pol.Builtin, setting):
				return " (built-in default)"
			}
			return ""
		}
		if pol.Timeout.Std() != 0 {
			p("  timeout %s%s", pol.Timeout.Std(), from("timeout"))
		} else {
			p("  timeout none%s", from("timeout"))
		}
		if r := pol.Retry; r != nil {
			perTry := "the call's timeout"
			if r.PerTryTimeout.Std() != 0 {
				perTry = r.PerTryTimeout.Std().String()
			}
			p("  retry: %d attempts, per try %s, on %v, budget %g, backoff %s%s", r.Attempts, perTry, e.retryOn(r), r.Budget, r.Backoff.Std(), from("retry"))
		}
		if br := pol.Breaker; br != nil && br.Mode == breaker.ModeAdaptive.String() {
			p("  breaker: adaptive, k %g, window %s%s", br.K, br.Window.Std(), from("breaker"))
		} else if br != nil {
			p("  breaker: minRequests %d, failureRatio %g, window %s, open %s..%s%s", br.MinRequests, br.FailureRatio, br.Window.Std(), br.OpenBase.Std(), br.OpenMax.Std(), from("breaker"))
		}
		if od := pol.OutlierDetection; od != nil {
			p("  outlier detection: minRequests %d, failureRatio %g, window %s, open %s..%s, at most %d%% ejected%s", od.MinRequests, od.FailureRatio, od.Window.Std(), od.OpenBase.Std(), od.OpenMax.Std(), od.MaxEjectionPercent, from("outlierDetection"))
		}
		if lb := pol.LoadBalancer; lb != "" && lb != "round-robin" {
			p("  load balancer: %s%s", lb, from("loadBalancer"))
		}
		if ss := pol.SlowStart; ss != nil {
			p("  slow start: over %s from %d%%", ss.Window.Std(), ss.MinPercent)
		}
		if rl := pol.RateLimit; rl != nil {
			tokens := ""
			if e.Tokens != nil {
				tokens = fmt.Sprintf(", %.1f tokens now", *e.Tokens)
			}
			p("  rate limit: %g/s, burst %d%s%s", rl.RPS, rl.Burst, tokens, from("rateLimit"))
		}
	}
	if pol := e.Policy; pol != nil && pol.ServerID != "" {
		p("  server ID: %s (mutual TLS)", pol.ServerID)
	}
	if pol := e.Policy; pol != nil && pol.Authorization != nil {
		az := pol.Authorization
		p("  authorization: %d rules, default %s", len(az.Rules), az.Default)
		for i, r := range az.Rules {
			p("    rule %d: %s", i, r.Describe())
		}
	}
	if a := e.Authorization; a != nil {
		caller, verdict := a.Caller, "DENIED"
		if caller == "" {
			caller = "a caller without a certificate"
		}
		switch {
		case a.Allowed:
			verdict = "ALLOWED"
		case a.Unknown:
			verdict = "REFUSED as unavailable (503 / Unavailable): authorization unknown"
		}
		p("  caller %s, %s %s: %s, %s", caller, a.Method, a.Path, verdict, a.Reason)
	}
	switch {
	case e.Error != "":
		p("→ refused (%s): %s", e.Reason, e.Error)
	default:
		p("→ instance %s", e.Instance)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// labelList writes labels as k=v,k=v, sorted.
func labelList(labels map[string]string) string {
	if len(labels) == 0 {
		return "any labels"
	}
	parts := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// retryOn returns the conditions r retries on for the protocol of e.
func (e *Explanation) retryOn(r *router.RetryInForce) []string {
	if e.GRPC {
		return r.OnGRPC
	}
	return r.OnHTTP
}

// RetryOn returns the conditions the policy's retry retries on, for the
// protocol of the call explained; nil without a retry.
func (e *Explanation) RetryOn() []string {
	if e.Policy == nil || e.Policy.Retry == nil {
		return nil
	}
	return e.retryOn(e.Policy.Retry)
}
