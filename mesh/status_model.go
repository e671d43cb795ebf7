package mesh

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/router"
)

// Status is what the mesh is running, for ops: see Mesh.Status.
type Status struct {
	Rules         RulesStatus `json:"rules"`
	LastRejection *Rejection  `json:"lastRejection,omitempty"`
	// Documents lists, in a per-service layout (WithRuleCatalog), every
	// document the mesh watches, by name.
	Documents []DocumentStatus `json:"documents,omitempty"`
	// Watcher is the rule source's connection (waiting, without one).
	Watcher WatcherStatus `json:"watcher"`
	// Discovery is the discovery source's connection, over all its
	// service watches; nil without WithDiscovery.
	Discovery *WatcherStatus `json:"discovery,omitempty"`
	// Services lists every known service with its subsets and instances.
	Services []ServiceStatus `json:"services,omitempty"`
	// Breakers lists every circuit breaker: per service, then per
	// instance, sorted.
	Breakers []BreakerStatus `json:"breakers,omitempty"`
	// Snapshot describes the local snapshot writer; nil without
	// WithSnapshotDir.
	Snapshot *SnapshotStatus `json:"snapshot,omitempty"`
	// Inbound describes the local service's inbound shedding; nil
	// without WithLocalService.
	Inbound *InboundStatus `json:"inbound,omitempty"`
}

// SnapshotStatus describes the writes of the local snapshot.
type SnapshotStatus struct {
	Dir string `json:"dir"`
	// Writes counts the files written (rules and instance lists); bursts
	// of changes are gathered into one write per file.
	Writes    int       `json:"writes"`
	LastWrite time.Time `json:"lastWrite,omitzero"`
	LastError string    `json:"lastError,omitempty"`
}

// ServiceStatus describes one service as the mesh routes it now: its
// route table with the weights in force, its instances with their labels,
// weight and state, the settings it takes from the defaults, and its
// traffic.
type ServiceStatus struct {
	Name string `json:"name"`
	// Instances are the service's routable instances (healthy in
	// discovery), by address.
	Instances []InstanceStatus `json:"instances"`
	// Subsets maps each subset named by the rules to the addresses of
	// its instances.
	Subsets []SubsetStatus `json:"subsets,omitempty"`
	// Lanes are the service's lanes now, from its instances' labels,
	// with their instance counts; nil without a lanes rule.
	Lanes *LanesStatus `json:"lanes,omitempty"`
	// Routes is the route table, in the order routes are tried; empty
	// when no rule names the service (every instance serves).
	Routes []RouteStatus `json:"routes,omitempty"`
	// InForce is what applies to the service's calls, as explain and
	// lightmesh diff show it: its rules composed with the defaults and
	// the built-in defaults, every setting filled in, and the settings
	// taken from the defaults (InForce.FromDefaults). Nil before the
	// first rules.
	InForce *router.InForce `json:"inForce,omitempty"`
	// Traffic is the outbound traffic to the service, per subset; empty
	// without metrics (WithRegisterer with a prometheus.Gatherer such as
	// a *prometheus.Registry).
	Traffic []TrafficStatus `json:"traffic,omitempty"`
}

// LanesStatus is the lanes of a service: the instance label that names
// them, and each lane value its instances carry with their number.
type LanesStatus struct {
	Label string             `json:"label"`
	Lanes []router.LaneCount `json:"lanes"`
}

// The states of an instance (InstanceStatus.State).
const (
	// InstanceServing: the instance takes calls.
	InstanceServing = "serving"
	// InstanceEjected: its outlier-detection breaker is open; it takes
	// no call until the open period ends.
	InstanceEjected = "ejected"
	// InstanceProbing: its breaker is half-open; a bounded number of
	// calls probe it.
	InstanceProbing = "probing"
	// InstanceKept: its outlier-detection breaker is open, but more of the
	// service's instances are open than outlierDetection's
	// maxEjectionPercent lets go: it is kept, and takes calls when no
	// healthy instance of its subset does.
	InstanceKept = "kept"
)

// InstanceStatus describes one instance of a service.
type InstanceStatus struct {
	Address string            `json:"address"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Weight is the instance's share within its subset (1 when discovery
	// gives none).
	Weight int `json:"weight"`
	// State is InstanceServing, InstanceEjected, InstanceKept or
	// InstanceProbing.
	State string `json:"state"`
}

// SubsetStatus lists the instances one subset selects.
type SubsetStatus struct {
	Name      string   `json:"name"`
	Instances []string `json:"instances"`
}

// RouteStatus is one route of a service's table.
type RouteStatus struct {
	Name string `json:"name"`
	// Match is the route's conditions, in words ("header x-env exact
	// staging; path prefix /v1"); empty: every request.
	Match string `json:"match,omitempty"`
	// Destinations are the subsets the route splits its calls over,
	// with the share each gets.
	Destinations []DestinationStatus `json:"destinations"`
	// Fallback is the subset calls go to when the chosen one has no
	// available instance; empty: none.
	Fallback string `json:"fallback,omitempty"`
}

// DestinationStatus is one destination of a route with its share in
// force: an omitted weight is an equal split.
type DestinationStatus struct {
	Subset string `json:"subset"`
	Weight int    `json:"weight"`
	// Percent is Weight's share of the route's total weight.
	Percent float64 `json:"percent"`
}

// TrafficStatus is the outbound traffic to one subset of a service
// ("" for calls routed without a subset): totals since the mesh started
// and rates per second over Window, the time since the oldest of the
// status reads of the last minute (0, and no rates, on the first read).
type TrafficStatus struct {
	Subset string `json:"subset"`
	// Requests counts calls that reached an instance; Errors those of
	// them that failed (HTTP 5xx, no response, or a gRPC code that
	// counts as a failure: Unavailable, DeadlineExceeded, ...).
	Requests    float64       `json:"requests"`
	Errors      float64       `json:"errors"`
	RequestRate float64       `json:"requestRate"`
	ErrorRate   float64       `json:"errorRate"`
	Window      time.Duration `json:"window"`
}

// BreakerStatus describes one circuit breaker.
type BreakerStatus struct {
	Service string `json:"service"`
	// Instance is the instance address for an outlier-detection breaker,
	// empty for the service's breaker.
	Instance  string    `json:"instance,omitempty"`
	State     string    `json:"state"`
	OpenUntil time.Time `json:"openUntil,omitzero"`
	// Trips counts consecutive trips; each makes the open period longer.
	Trips int `json:"trips,omitempty"`
	// Mode is the breaker's mode, window or adaptive.
	Mode string `json:"mode"`
	// DropRatio is the share of calls the breaker refuses now: for an
	// adaptive breaker its throttling probability, for a window breaker
	// 1 while open and 0 otherwise.
	DropRatio float64 `json:"dropRatio"`
}

// RulesStatus describes the rules in force.
type RulesStatus struct {
	Source    string    `json:"source,omitempty"`
	Version   string    `json:"version,omitempty"`
	AppliedAt time.Time `json:"appliedAt,omitzero"`
	// State is the state of the rule document of WithRules (DocumentApplied,
	// DocumentRejected, ...: the states a DocumentStatus has); empty with
	// WithRuleCatalog, whose documents each have theirs in
	// Status.Documents.
	State string `json:"state,omitempty"`
	// History is the last changes of the rule document of WithRules, as
	// DocumentStatus.History; empty with WithRuleCatalog.
	History []DocumentEvent `json:"history,omitempty"`
	// FromSnapshot is true while the rules in force came from the local
	// snapshot because the source gave no valid document at startup
	// (unreachable, or holding a rejected or an emptied one), until it
	// delivers one (with WithRuleCatalog: while any document in force
	// did).
	// With WithRuleCatalog, Version is the last document applied, as
	// name@version.
	FromSnapshot bool `json:"fromSnapshot,omitempty"`
}

// Rejection describes the last rule document that failed validation.
type Rejection struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// Status returns a copy of the mesh's current status.
func (m *Mesh) Status() Status {
	m.mu.Lock()
	st := m.status
	if st.LastRejection != nil {
		r := *st.LastRejection
		st.LastRejection = &r
	}
	m.mu.Unlock()
	st.Watcher = m.rulesConn.status()
	if m.cfg.discovery != nil {
		d := m.discoveryConn.status()
		st.Discovery = &d
	}
	if m.saver != nil {
		ss := m.saver.status()
		ss.Dir = m.cfg.snapshotDir
		st.Snapshot = &ss
	}
	snap := m.eng.Load()
	if m.cat != nil {
		docs := m.documentStatuses(snap.Table().Rules())
		st.Rules.FromSnapshot = slices.ContainsFunc(docs, func(d DocumentStatus) bool { return d.FromSnapshot })
		if m.whole {
			st.Rules.State, st.Rules.History = docs[0].State, docs[0].History
		} else {
			st.Documents = docs
		}
	}
	st.Services = serviceStatuses(snap, m.traffic.read(time.Now()))
	st.Breakers = breakerStatuses(snap)
	st.Inbound = inboundStatus(snap, m.cfg.local)
	return st
}

// serviceStatuses describes every service snap knows, with the traffic
// traffic gives (nil: none).
func serviceStatuses(snap *engine.State, traffic map[trafficKey]TrafficStatus) []ServiceStatus {
	t := snap.Table()
	addrs := func(list []discovery.Instance) []string {
		out := make([]string, len(list))
		for i := range list {
			out[i] = list[i].Address
		}
		return out
	}
	states := map[[2]string]string{} // service, address -> state
	for _, b := range snap.Breakers() {
		switch {
		case b.Instance == "":
		case b.Breaker.State() == breaker.StateOpen && snap.KeptByEjectionCap(b.Service, b.Instance, b.Breaker):
			states[[2]string{b.Service, b.Instance}] = InstanceKept
		case b.Breaker.State() == breaker.StateOpen:
			states[[2]string{b.Service, b.Instance}] = InstanceEjected
		case b.Breaker.State() == breaker.StateHalfOpen:
			states[[2]string{b.Service, b.Instance}] = InstanceProbing
		}
	}
	rules := t.Rules()
	var out []ServiceStatus
	for _, name := range t.Services() {
		ss := ServiceStatus{Name: name, Instances: []InstanceStatus{}}
		for _, in := range t.Instances(name, "") {
			st := states[[2]string{name, in.Address}]
			if st == "" {
				st = InstanceServing
			}
			ss.Instances = append(ss.Instances, InstanceStatus{Address: in.Address, Labels: in.Labels, Weight: max(in.Weight, 1), State: st})
		}
		for _, sub := range t.Subsets(name) {
			ss.Subsets = append(ss.Subsets, SubsetStatus{Name: sub, Instances: addrs(t.Instances(name, sub))})
		}
		if label, lanes := t.Lanes(name); label != "" {
			ss.Lanes = &LanesStatus{Label: label, Lanes: lanes}
		}
		if doc := rules.Document(); doc != nil {
			for _, r := range doc.Services[name].Routes {
				ss.Routes = append(ss.Routes, routeStatus(r, len(ss.Routes)))
			}
		}
		ss.InForce = rules.InForce(name)
		for k, tr := range traffic {
			if k.service == name {
				ss.Traffic = append(ss.Traffic, tr)
			}
		}
		slices.SortFunc(ss.Traffic, func(a, b TrafficStatus) int { return strings.Compare(a.Subset, b.Subset) })
		out = append(out, ss)
	}
	return out
}

// routeStatus describes route number i of a document.
func routeStatus(r router.Route, i int) RouteStatus {
	rs := RouteStatus{Name: r.Name, Fallback: r.Fallback}
	if rs.Name == "" {
		rs.Name = fmt.Sprintf("routes[%d]", i)
	}
	total := 0
	for _, d := range r.Destinations {
		w := 1 // an omitted weight: an equal split
		if d.Weight != nil {
			w = *d.Weight
		}
		rs.Destinations = append(rs.Destinations, DestinationStatus{Subset: d.Subset, Weight: w})
		total += w
	}
	for i := range rs.Destinations {
		if total > 0 {
			rs.Destinations[i].Percent = math.Round(float64(rs.Destinations[i].Weight)*10000/float64(total)) / 100
		}
	}
	if m := r.Match; m != nil {
		var conds []string
		for _, h := range slices.Sorted(maps.Keys(m.Headers)) {
			conds = append(conds, "header "+h+" "+stringMatch(m.Headers[h]))
		}
		if m.Path != nil {
			conds = append(conds, "path "+stringMatch(*m.Path))
		}
		if len(m.Methods) > 0 {
			conds = append(conds, "method "+strings.Join(m.Methods, "|"))
		}
		rs.Match = strings.Join(conds, "; ")
	}
	return rs
}

// stringMatch says a condition in words: exact v, prefix v, regex v,
// present, absent.
func stringMatch(m router.StringMatch) string {
	switch {
	case m.Exact != nil:
		return "exact " + strconv.Quote(*m.Exact)
	case m.Prefix != nil:
		return "prefix " + strconv.Quote(*m.Prefix)
	case m.Regex != nil:
		return "regex " + strconv.Quote(*m.Regex)
	case m.Present != nil && *m.Present:
		return "present"
	case m.Present != nil:
		return "absent"
	}
	return "any"
}

func breakerStatuses(snap *engine.State) []BreakerStatus {
	var out []BreakerStatus
	for _, b := range snap.Breakers() {
		out = append(out, BreakerStatus{Service: b.Service, Instance: b.Instance, State: b.Breaker.State().String(),
			OpenUntil: b.Breaker.OpenUntil(), Trips: b.Breaker.Trips(),
			Mode: b.Breaker.Settings().Mode.String(), DropRatio: b.Breaker.DropRatio()})
	}
	return out
}

// LastRejection returns the last rule document rejected, a
// *RejectionError, or nil when none was. A later valid document does not
// clear it: compare its At with Status().Rules.AppliedAt (or the
// document's AppliedAt) to tell history from the current state.
func (m *Mesh) LastRejection() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastRejection == nil {
		return nil
	}
	return m.lastRejection
}
