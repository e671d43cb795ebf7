package router

import (
	"maps"
	"slices"

	"github.com/lightmesh/lightmesh/discovery"
)

// Table joins compiled Rules with the instances of each service: the
// immutable routing snapshot the request path reads. Build it with
// NewTable and derive updated copies with WithRules and WithInstances.
type Table struct {
	rules     *Rules
	instances map[string][]discovery.Instance
	services  map[string]*serviceTable
}

type serviceTable struct {
	rules   *serviceRules       // nil: the service has no rules
	subsets []*discovery.Picker // parallel to rules.subsets
	all     *discovery.Picker   // every available instance
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
	// Instance is the picked instance; it points into the Table and must
	// not be modified.
	Instance *discovery.Instance
}

// NewTable builds a table from rules (nil means no rules) and the instance
// lists of services, keyed by service name. Unhealthy instances are left
// out. The table keeps the lists: callers must not modify them.
func NewTable(rules *Rules, instances map[string][]discovery.Instance) *Table {
	if rules == nil {
		rules = &Rules{doc: &Document{APIVersion: APIVersion}, services: map[string]*serviceRules{}}
	}
	t := &Table{rules: rules, instances: instances, services: make(map[string]*serviceTable)}
	for name, sr := range rules.services {
		t.services[name] = buildService(sr, instances[name])
	}
	for name, list := range instances {
		if _, ok := t.services[name]; !ok {
			t.services[name] = buildService(nil, list)
		}
	}
	return t
}

// WithRules returns a table with the same instances and new rules.
func (t *Table) WithRules(rules *Rules) *Table { return NewTable(rules, t.instances) }

// WithInstances returns a table in which service has the instances list
// (nil removes the service's instances); the other services are shared
// with t.
func (t *Table) WithInstances(service string, list []discovery.Instance) *Table {
	next := &Table{rules: t.rules, instances: maps.Clone(t.instances), services: maps.Clone(t.services)}
	if next.instances == nil {
		next.instances = make(map[string][]discovery.Instance)
	}
	if list == nil {
		delete(next.instances, service)
	} else {
		next.instances[service] = list
	}
	sr := t.rules.services[service]
	if sr == nil && list == nil {
		delete(next.services, service)
	} else {
		next.services[service] = buildService(sr, list)
	}
	return next
}

// Rules returns the table's compiled rules.
func (t *Table) Rules() *Rules { return t.rules }

// Has reports whether the table knows service, from rules or discovery.
func (t *Table) Has(service string) bool { _, ok := t.services[service]; return ok }

// Services returns the names of every known service, sorted.
func (t *Table) Services() []string { return slices.Sorted(maps.Keys(t.services)) }

// Instances returns the instances of service, all of them or those of
// subset when subset is not empty. Callers must not modify the result.
func (t *Table) Instances(service, subset string) []discovery.Instance {
	st := t.services[service]
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
	st := t.services[service]
	if st == nil || st.rules == nil {
		return nil
	}
	names := make([]string, len(st.rules.subsets))
	for i := range st.rules.subsets {
		names[i] = st.rules.subsets[i].name
	}
	return names
}

func buildService(sr *serviceRules, list []discovery.Instance) *serviceTable {
	healthy := make([]discovery.Instance, 0, len(list))
	for _, in := range list {
		if !in.Unhealthy {
			healthy = append(healthy, in)
		}
	}
	st := &serviceTable{rules: sr, all: discovery.NewPicker(healthy)}
	if sr == nil {
		return st
	}
	st.subsets = make([]*discovery.Picker, len(sr.subsets))
	for i, sub := range sr.subsets {
		var members []discovery.Instance
		for j := range healthy {
			if healthy[j].HasLabels(sub.labels) {
				members = append(members, healthy[j])
			}
		}
		st.subsets[i] = discovery.NewPicker(members)
	}
	return st
}

// Route decides where a call to service goes: the first route whose match
// accepts req chooses a subset (by weight), the subset's picker chooses an
// instance for which accept returns true (nil accepts any), and when the
// chosen subset has none the route's fallback subset is tried. It returns
// ErrUnknownService (unwrapped) for a service the table does not know, a
// *NoRouteError when no route matches and a *NoInstanceError when no
// instance is available. A nil req is an empty request. Route does not
// allocate on success.
func (t *Table) Route(service string, req *Request, accept func(*discovery.Instance) bool) (Result, error) {
	st := t.services[service]
	if st == nil {
		return Result{}, ErrUnknownService
	}
	if req == nil {
		req = &emptyRequest
	}
	res := Result{Service: service, RouteIndex: -1}
	if st.rules == nil || len(st.rules.routes) == 0 {
		if res.Instance = st.all.Pick(accept); res.Instance == nil {
			return res, &NoInstanceError{Service: service}
		}
		return res, nil
	}
	var hc headerCache
	if i := st.rules.match(req, &hc); i >= 0 {
		rt := &st.rules.routes[i]
		res.Route, res.RouteIndex = rt.name, i
		chosen := -1
		switch len(rt.dests) {
		case 0:
		case 1:
			// No split: skip the shared counter, a contended atomic.
			chosen = rt.dests[0]
		default:
			chosen = rt.dests[rt.schedule.At(rt.next.Add(1)-1)]
		}
		if chosen >= 0 {
			res.Subset = st.rules.subsets[chosen].name
			if res.Instance = st.subsets[chosen].Pick(accept); res.Instance != nil {
				return res, nil
			}
		}
		// The error is built only here, so that a call served by the
		// fallback does not allocate it.
		fallback := ""
		if fb := rt.fallback; fb >= 0 && fb != chosen {
			fallback = st.rules.subsets[fb].name
			if res.Instance = st.subsets[fb].Pick(accept); res.Instance != nil {
				res.Subset, res.Fallback = fallback, true
				return res, nil
			}
		}
		return res, &NoInstanceError{Service: service, Subset: res.Subset, Fallback: fallback}
	}
	return res, &NoRouteError{Service: service}
}
