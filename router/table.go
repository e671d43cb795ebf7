package router

import (
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/shardmap"
)

// Table joins compiled Rules with the instances of each service: the
// immutable routing snapshot the request path reads. Build it with
// NewTable and derive updated copies with WithRules and WithInstances.
type Table struct {
	rules *Rules
	// Sharded, so that WithInstances copies one shard, not every service.
	instances shardmap.Map[[]discovery.Instance]
	services  shardmap.Map[*serviceTable]
}

type serviceTable struct {
	rules   *serviceRules       // nil: the service has no rules
	subsets []*discovery.Picker // parallel to rules.subsets
	all     *discovery.Picker   // every available instance
	lanes   *laneTable          // nil: the service has no lanes
}

// Result says where one call goes.
type Result struct {
	Service string
	// Route is the name of the matched route ("" when the service has no
	// routes) and RouteIndex its position in the service's routes (-1 when
	// none); Subset is the subset that serves the call ("" when none).
	Route      string
	RouteIndex int
	Subset     string
	// Fallback is true when the route's fallback subset was used.
	Fallback bool
	// Lane is the lane value the call carries under the service's Lanes
	// rule ("" when none); Subset is LaneSubset when an instance of that
	// lane serves the call, and otherwise names where the call fell back.
	Lane string
	// Instance is the picked instance; it points into the Table and must
	// not be modified.
	Instance *discovery.Instance
}

// NewTable builds a table from rules (nil means no rules) and the instance
// lists of services, keyed by service name. Unhealthy instances are left
// out. The table keeps the lists: callers must not modify them.
func NewTable(rules *Rules, instances map[string][]discovery.Instance) *Table {
	if rules == nil {
		rules = noDocument()
	}
	return newTable(rules, shardmap.From(instances))
}

func newTable(rules *Rules, instances shardmap.Map[[]discovery.Instance]) *Table {
	services := make(map[string]*serviceTable, len(rules.services)+instances.Len())
	for name, sr := range rules.services {
		list, _ := instances.Get(name)
		services[name] = buildService(sr, rules.defaultLanes, list)
	}
	for name, list := range instances.All() {
		if _, ok := services[name]; !ok {
			services[name] = buildService(nil, rules.defaultLanes, list)
		}
	}
	return &Table{rules: rules, instances: instances, services: shardmap.From(services)}
}

// noDocument returns the rules of a table made without a rule document:
// nothing named, and authorization not known (Rules.Authorizer).
func noDocument() *Rules {
	return &Rules{doc: &Document{APIVersion: APIVersion}, services: map[string]*serviceRules{}, none: true}
}

// WithRules returns a table with the same instances and new rules.
func (t *Table) WithRules(rules *Rules) *Table {
	if rules == nil {
		rules = noDocument()
	}
	return newTable(rules, t.instances)
}

// WithInstances returns a table in which service has the instances list
// (nil removes the service's instances); the other services are shared
// with t, and the cost does not grow with their number.
func (t *Table) WithInstances(service string, list []discovery.Instance) *Table {
	next := &Table{rules: t.rules}
	if list == nil {
		next.instances = t.instances.Without(service)
	} else {
		next.instances = t.instances.With(service, list)
	}
	sr := t.rules.services[service]
	if sr == nil && list == nil {
		next.services = t.services.Without(service)
	} else {
		next.services = t.services.With(service, buildService(sr, t.rules.defaultLanes, list))
	}
	return next
}

// Rules returns the table's compiled rules.
func (t *Table) Rules() *Rules { return t.rules }

// Has reports whether the table knows service, from rules or discovery.
func (t *Table) Has(service string) bool { _, ok := t.services.Get(service); return ok }

// Services returns the names of every known service, sorted.
func (t *Table) Services() []string { return t.services.Keys() }

// Instances returns the instances of service, all of them or those of
// subset when subset is not empty. Callers must not modify the result.
func (t *Table) Instances(service, subset string) []discovery.Instance {
	st, _ := t.services.Get(service)
	if st == nil {
		return nil
	}
	if subset == "" {
		return st.all.Instances()
	}
	if st.rules != nil {
		for i := range st.rules.subsets {
			if st.rules.subsets[i].name == subset {
				return st.subsets[i].Instances()
			}
		}
	}
	return nil
}

// Subsets returns the subset names of service, sorted.
func (t *Table) Subsets(service string) []string {
	st, _ := t.services.Get(service)
	if st == nil || st.rules == nil {
		return nil
	}
	names := make([]string, len(st.rules.subsets))
	for i := range st.rules.subsets {
		names[i] = st.rules.subsets[i].name
	}
	return names
}

// buildService builds the table of a service from its rules (nil: none)
// and instances; a service without rules takes the default lanes (nil:
// none).
func buildService(sr *serviceRules, defaultLanes *laneRule, list []discovery.Instance) *serviceTable {
	healthy := make([]discovery.Instance, 0, len(list))
	for _, in := range list {
		if !in.Unhealthy {
			healthy = append(healthy, in)
		}
	}
	st := &serviceTable{rules: sr, all: discovery.NewPicker(healthy)}
	if sr == nil {
		if defaultLanes != nil {
			st.lanes = buildLanes(defaultLanes, healthy)
		}
		return st
	}
	if sr.lanes != nil {
		st.lanes = buildLanes(sr.lanes, healthy)
	}
	st.subsets = make([]*discovery.Picker, len(sr.subsets))
	for i, sub := range sr.subsets {
		st.subsets[i] = discovery.NewPicker(subsetMembers(sr.lanes, sub.labels, healthy))
	}
	return st
}

// Decision is where a call goes before an instance is picked: the
// service, the route that matched and the subset it chose (by weight),
// with the route's fallback. Table.Match makes it; Table.Pick picks an
// instance for it, as often as a call needs (each retry picks again within
// the same subset). A Decision is a small value tied to the Table that
// made it.
type Decision struct {
	st *serviceTable
	// Service is the service called.
	Service string
	// Route is the name of the matched route ("" when the service has no
	// routes) and RouteIndex its position (-1 when none).
	Route      string
	RouteIndex int
	subset     int // chosen subset index; -1: every instance of the service
	fallback   int // fallback subset index; -1: none
	lane       string
	lanePk     *discovery.Picker // the lane's instances; nil: none
}

// Subset returns the name of the chosen subset ("" when the service has
// no subsets: any instance will do).
func (d *Decision) Subset() string {
	if d.subset < 0 || d.st == nil {
		return ""
	}
	return d.st.rules.subsets[d.subset].name
}

// Fallback returns the name of the route's fallback subset, or "".
func (d *Decision) Fallback() string {
	if d.fallback < 0 || d.fallback == d.subset || d.st == nil {
		return ""
	}
	return d.st.rules.subsets[d.fallback].name
}

// Match decides which route and subset a call to service takes, into d:
// the first route whose match accepts req chooses a subset by weight. It
// returns ErrUnknownService (unwrapped) for a service the table does not
// know and a *NoRouteError when no route matches. A nil req is an empty
// request. Match does not allocate on success.
func (t *Table) Match(service string, req *Request, d *Decision) error {
	st, _ := t.services.Get(service)
	if st == nil {
		return ErrUnknownService
	}
	*d = Decision{st: st, Service: service, RouteIndex: -1, subset: -1, fallback: -1}
	if req == nil {
		req = &emptyRequest
	}
	if st.lanes != nil {
		st.matchLane(req, d)
	}
	if st.rules == nil || len(st.rules.routes) == 0 {
		return nil
	}
	i := 0 // a first route without conditions takes every call: no header lookups
	if !st.rules.routes[0].unconditional() {
		var hc headerCache
		i = st.rules.match(req, &hc)
	}
	if i < 0 {
		return &NoRouteError{Service: service}
	}
	rt := &st.rules.routes[i]
	d.Route, d.RouteIndex, d.fallback = rt.name, i, rt.fallback
	switch len(rt.dests) {
	case 0:
	case 1:
		// No split: skip the shared counter, a contended atomic.
		d.subset = rt.dests[0]
	default:
		d.subset = rt.dests[rt.schedule.At(rt.next.Add(1)-1)]
	}
	return nil
}

// Pick picks an instance for d for which accept returns true (nil accepts
// any): from the call's lane, else from the chosen subset, else from the
// route's fallback subset. It
// returns a *NoInstanceError when neither has one. Pick does not allocate
// on success.
func (t *Table) Pick(d *Decision, accept func(*discovery.Instance) bool) (Result, error) {
	res := Result{Service: d.Service, Route: d.Route, RouteIndex: d.RouteIndex, Subset: d.Subset(), Lane: d.lane}
	if res.Instance = t.PickLane(d, accept); res.Instance != nil {
		res.Subset = LaneSubset
		return res, nil
	}
	if res.Instance = t.PickChosen(d, accept); res.Instance != nil {
		return res, nil
	}
	if res.Instance = t.PickFallback(d, accept); res.Instance != nil {
		res.Subset, res.Fallback = d.Fallback(), true
		return res, nil
	}
	// The error is built only here, so that a call served by the
	// fallback does not allocate it.
	return res, &NoInstanceError{Service: d.Service, Subset: res.Subset, Fallback: d.Fallback()}
}

// PickChosen picks an instance accept accepts from d's chosen subset (any
// instance of the service when it has no routes), or returns nil. It is
// Pick without the fallback, for callers that decide themselves when to
// fall back.
func (t *Table) PickChosen(d *Decision, accept func(*discovery.Instance) bool) *discovery.Instance {
	switch st := d.st; {
	case st == nil:
		return nil
	case d.RouteIndex < 0 && st.lanes != nil:
		return st.lanes.base.Pick(accept)
	case d.RouteIndex < 0:
		return st.all.Pick(accept)
	case d.subset >= 0:
		return st.subsets[d.subset].Pick(accept)
	}
	return nil
}

// PickFallback picks an instance accept accepts from d's fallback subset,
// or returns nil (also when the route has no fallback).
func (t *Table) PickFallback(d *Decision, accept func(*discovery.Instance) bool) *discovery.Instance {
	if d.st == nil || d.fallback < 0 || d.fallback == d.subset {
		return nil
	}
	return d.st.subsets[d.fallback].Pick(accept)
}

// Candidates returns the instances Pick chooses from for d after those
// of its lane (LaneCandidates): those of the chosen subset, and then those
// of the fallback subset. Callers must not modify the lists.
func (t *Table) Candidates(d *Decision) (chosen, fallback []discovery.Instance) {
	if p := t.ChosenPicker(d); p != nil {
		chosen = p.Instances()
	}
	if st := d.st; st != nil && d.RouteIndex >= 0 {
		if fb := d.fallback; fb >= 0 && fb != d.subset {
			fallback = st.subsets[fb].Instances()
		}
	}
	return chosen, fallback
}

// ChosenPicker returns the picker over the instances of d's chosen subset
// (Candidates' chosen list), nil when there is none.
func (t *Table) ChosenPicker(d *Decision) *discovery.Picker {
	st := d.st
	switch {
	case st == nil:
		return nil
	case d.RouteIndex < 0 && st.lanes != nil:
		return st.lanes.base
	case d.RouteIndex < 0:
		return st.all
	case d.subset >= 0:
		return st.subsets[d.subset]
	}
	return nil
}

// Route decides where a call to service goes: Match, then Pick. It returns
// ErrUnknownService (unwrapped) for a service the table does not know, a
// *NoRouteError when no route matches and a *NoInstanceError when no
// instance is available. A nil req is an empty request. Route does not
// allocate on success.
func (t *Table) Route(service string, req *Request, accept func(*discovery.Instance) bool) (Result, error) {
	var d Decision
	switch err := t.Match(service, req, &d); {
	case err == ErrUnknownService:
		return Result{}, err
	case err != nil:
		return Result{Service: service, RouteIndex: -1}, err
	}
	return t.Pick(&d, accept)
}
