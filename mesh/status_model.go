package mesh

import (
	"slices"
	"time"

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

// ServiceStatus describes one service's routable instances.
type ServiceStatus struct {
	Name string `json:"name"`
	// Instances are the addresses of the service's healthy instances.
	Instances []string `json:"instances"`
	// Subsets maps each subset named by the rules to its instances.
	Subsets []SubsetStatus `json:"subsets,omitempty"`
}

// SubsetStatus lists the instances one subset selects.
type SubsetStatus struct {
	Name      string   `json:"name"`
	Instances []string `json:"instances"`
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
	// FromSnapshot is true while the rules in force came from the local
	// snapshot because the source was unreachable at startup (with
	// WithRuleCatalog: while any document in force did).
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
			st.Rules.State = docs[0].State
		} else {
			st.Documents = docs
		}
	}
	st.Services = serviceStatuses(snap.Table())
	st.Breakers = breakerStatuses(snap)
	return st
}

func serviceStatuses(t *router.Table) []ServiceStatus {
	addrs := func(list []discovery.Instance) []string {
		out := make([]string, len(list))
		for i := range list {
			out[i] = list[i].Address
		}
		return out
	}
	var out []ServiceStatus
	for _, name := range t.Services() {
		ss := ServiceStatus{Name: name, Instances: addrs(t.Instances(name, ""))}
		for _, sub := range t.Subsets(name) {
			ss.Subsets = append(ss.Subsets, SubsetStatus{Name: sub, Instances: addrs(t.Instances(name, sub))})
		}
		out = append(out, ss)
	}
	return out
}

func breakerStatuses(snap *engine.State) []BreakerStatus {
	var out []BreakerStatus
	for _, b := range snap.Breakers() {
		out = append(out, BreakerStatus{Service: b.Service, Instance: b.Instance, State: b.Breaker.State().String(),
			OpenUntil: b.Breaker.OpenUntil(), Trips: b.Breaker.Trips()})
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
