package router

import (
	"fmt"
	"strconv"

	"github.com/lightmesh/lightmesh/discovery"
)

// Explanation is one routing decision with the trace of how it was
// reached: every route tried in order and why it did or did not match, the
// split and the subset chosen, the candidates at each step, the fallback
// and the instance. Table.Explain makes it; the field names are its JSON
// form, which tools read.
type Explanation struct {
	Service string `json:"service"`
	// Known is false when the table knows nothing of the service: no rule
	// names it and discovery reports no instance.
	Known bool `json:"known"`
	// Routes are the routes tried, in order, up to and including the one
	// that matched (all of them when none did).
	Routes []RouteStep `json:"routes,omitempty"`
	// Route and RouteIndex name the route that matched ("" and -1 when the
	// service has no routes or none matched).
	Route      string `json:"route,omitempty"`
	RouteIndex int    `json:"routeIndex"`
	// Split lists the matched route's destinations with their weights.
	Split []SplitStep `json:"split,omitempty"`
	// Chosen is the subset the next call takes (by weight), with its
	// candidates; nil when the service has no routes (every instance
	// serves).
	Chosen *SubsetStep `json:"chosen,omitempty"`
	// Fallback is the route's fallback subset, nil when it has none;
	// FallbackUsed says whether the call goes there, and Why says why.
	Fallback     *SubsetStep `json:"fallback,omitempty"`
	FallbackUsed bool        `json:"fallbackUsed,omitempty"`
	Why          string      `json:"why,omitempty"`
	// Lane is the lane decision, nil when the service has no lanes; when
	// Lane.Used, the call goes to its lane's instance whatever the route
	// chose.
	Lane *LaneStep `json:"lane,omitempty"`
	// Instance is the address the next call goes to, "" when it fails.
	Instance string `json:"instance,omitempty"`
	// Error says why the call fails: no route, no instance; "" when it
	// is routed.
	Error string `json:"error,omitempty"`
	// Authorization is whether the service's authorization serves the
	// caller explained (Rules.ExplainAuthorization); nil when no caller
	// was given and the service has no authorization.
	Authorization *AuthorizationStep `json:"authorization,omitempty"`

	err error
}

// Err returns the error the call would fail with (a *NoRouteError, a
// *NoInstanceError or ErrUnknownService), nil when it is routed.
func (e *Explanation) Err() error { return e.err }

// RouteStep is one route tried: whether it matched and each of its
// conditions.
type RouteStep struct {
	Index      int             `json:"index"`
	Name       string          `json:"name"`
	Matched    bool            `json:"matched"`
	Conditions []ConditionStep `json:"conditions,omitempty"`
}

// ConditionStep is one condition of a route and how the request met it.
type ConditionStep struct {
	// Field is what the condition reads: "method", "path" or "header
	// x-env".
	Field string `json:"field"`
	// Want describes the condition: `exact "staging"`, `prefix "/v1/"`,
	// `one of [GET POST]`, `present`.
	Want string `json:"want"`
	// Got is the request's value, and Present whether it has one.
	Got     string `json:"got,omitempty"`
	Present bool   `json:"present"`
	Matched bool   `json:"matched"`
}

// SplitStep is one destination of a route.
type SplitStep struct {
	Subset string `json:"subset"`
	// Weight is the destination's weight as written, or 1 each when the
	// route splits equally; Share is its fraction of the traffic.
	Weight int     `json:"weight"`
	Share  float64 `json:"share"`
}

// SubsetStep counts a subset's candidates at each step of the pick.
type SubsetStep struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Matching counts the instances with the subset's labels, Healthy
	// those of them discovery reports healthy, and Available those the
	// caller's accept function takes (not ejected).
	Matching  int `json:"matching"`
	Healthy   int `json:"healthy"`
	Available int `json:"available"`
}

// Explain decides where a call to service would go, as Route does, and
// returns that decision with its trace. It changes nothing: the weighted
// split and the round-robin are read at their current position, not
// advanced, so the instance named is the one the next call would take if
// no other call came first. accept is as for Pick (nil accepts any).
// Explain evaluates the same conditions as Match, in the same order, and
// is for tools and the status page: the request path never builds a
// trace.
func (t *Table) Explain(service string, req *Request, accept func(*discovery.Instance) bool) *Explanation {
	e := &Explanation{Service: service, RouteIndex: -1}
	st, _ := t.services.Get(service)
	if st == nil {
		e.err, e.Error = ErrUnknownService, ErrUnknownService.Error()
		return e
	}
	e.Known = true
	if req == nil {
		req = &emptyRequest
	}
	if e.Lane = explainLane(st, service, req, accept); e.Lane != nil && e.Lane.Used {
		defer func() {
			e.Instance, e.FallbackUsed, e.Why, e.err, e.Error = e.Lane.instance, false, "", nil, ""
		}()
	}
	if st.rules == nil || len(st.rules.routes) == 0 {
		all := st.all
		if st.lanes != nil {
			all = st.lanes.base
		}
		if in := all.Peek(accept); in != nil {
			e.Instance = in.Address
			return e
		}
		e.err = &NoInstanceError{Service: service}
		e.Error = e.err.Error()
		return e
	}
	sr := st.rules
	var hc headerCache
	matched := -1
	for i := range sr.routes {
		step := explainRoute(&sr.routes[i], i, req, &hc)
		e.Routes = append(e.Routes, step)
		if step.Matched {
			matched = i
			break
		}
	}
	if matched < 0 {
		e.err = &NoRouteError{Service: service}
		e.Error = e.err.Error()
		return e
	}
	rt := &sr.routes[matched]
	e.Route, e.RouteIndex = rt.name, matched
	e.Split = t.split(service, matched, rt)

	subset := -1
	switch len(rt.dests) {
	case 0:
	case 1:
		subset = rt.dests[0]
	default:
		subset = rt.dests[rt.schedule.At(rt.next.Load())]
	}
	list, _ := t.instances.Get(service)
	if subset >= 0 {
		e.Chosen = subsetStep(&sr.subsets[subset], st.subsets[subset], list, accept)
		if in := st.subsets[subset].Peek(accept); in != nil {
			e.Instance = in.Address
		}
	}
	if fb := rt.fallback; fb >= 0 && fb != subset {
		e.Fallback = subsetStep(&sr.subsets[fb], st.subsets[fb], list, accept)
		if e.Instance == "" {
			if in := st.subsets[fb].Peek(accept); in != nil {
				e.Instance, e.FallbackUsed = in.Address, true
			}
			e.Why = fmt.Sprintf("subset %q has no available instance", e.Chosen.Name)
		}
	}
	if e.Instance == "" {
		nie := &NoInstanceError{Service: service}
		if e.Chosen != nil {
			nie.Subset = e.Chosen.Name
		}
		if e.Fallback != nil {
			nie.Fallback = e.Fallback.Name
		}
		e.err, e.Error = nie, nie.Error()
	}
	return e
}

// explainRoute evaluates every condition of rt against r, as matches does
// but without stopping at the first that fails.
func explainRoute(rt *route, i int, r *Request, hc *headerCache) RouteStep {
	step := RouteStep{Index: i, Name: rt.name, Matched: true}
	add := func(c ConditionStep) {
		step.Conditions = append(step.Conditions, c)
		step.Matched = step.Matched && c.Matched
	}
	if len(rt.methods) > 0 {
		ok := false
		for _, m := range rt.methods {
			ok = ok || m == r.Method
		}
		add(ConditionStep{Field: "method", Want: fmt.Sprintf("one of %v", rt.methods), Got: r.Method, Present: r.Method != "", Matched: ok})
	}
	if rt.path != nil {
		add(ConditionStep{Field: "path", Want: rt.path.describe(), Got: r.Path, Present: true, Matched: rt.path.match(r.Path, true)})
	}
	for j := range rt.headers {
		h := &rt.headers[j]
		v, ok := hc.header(r, h)
		add(ConditionStep{Field: "header " + h.lower, Want: h.cond.describe(), Got: v, Present: ok, Matched: h.cond.match(v, ok)})
	}
	return step
}

// describe writes the condition as Explain shows it.
func (c *stringCond) describe() string {
	switch c.kind {
	case condExact:
		return "exact " + strconv.Quote(c.value)
	case condPrefix:
		return "prefix " + strconv.Quote(c.value)
	case condRegex:
		return "regex " + strconv.Quote(c.value)
	case condPresent:
		return "present"
	}
	return "absent"
}

// split returns the destinations of route i of service with the weights
// of the document.
func (t *Table) split(service string, i int, rt *route) []SplitStep {
	doc := t.rules.doc.Services[service]
	if i >= len(doc.Routes) {
		return nil
	}
	dests := doc.Routes[i].Destinations
	out := make([]SplitStep, len(dests))
	total := 0
	for j, d := range dests {
		w := 1
		if d.Weight != nil {
			w = *d.Weight
		}
		out[j] = SplitStep{Subset: d.Subset, Weight: w}
		total += w
	}
	for j := range out {
		if total > 0 {
			out[j].Share = float64(out[j].Weight) / float64(total)
		}
	}
	return out
}

// subsetStep counts the candidates of one subset.
func subsetStep(sub *subsetRule, p *discovery.Picker, all []discovery.Instance, accept func(*discovery.Instance) bool) *SubsetStep {
	s := &SubsetStep{Name: sub.name, Labels: sub.labels, Healthy: p.Len()}
	for i := range all {
		if all[i].HasLabels(sub.labels) {
			s.Matching++
		}
	}
	for i := range p.Instances() {
		if accept == nil || accept(&p.Instances()[i]) {
			s.Available++
		}
	}
	return s
}
