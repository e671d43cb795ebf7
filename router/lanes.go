package router

import (
	"fmt"
	"maps"
	"net/textproto"
	"slices"
	"strings"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/trace"
)

// DefaultLaneHeader is the request header (and gRPC metadata key) that
// carries a call's lane when a Lanes rule names none: the mesh's default
// lane key, x-env.
const DefaultLaneHeader = "x-env"

// LaneSubset is the Subset a Result and a Decision report for a call
// served by an instance of its own lane. It is one constant, not the lane
// value, so that metrics labelled by subset stay bounded however many
// lanes come and go; Result.Lane names the lane.
const LaneSubset = "(lane)"

// Lanes makes every value of one instance label a lane: a call carrying
// lane value V (in Header) goes to the service's instances whose Label is
// V, and to the base instances when none is available, keeping its lane
// for the next hop. Lanes appear and disappear with the instances that
// carry their label; no rule names them.
//
// How lanes combine with the rest of a service's rules:
//   - Routes still match first and give the call its policy (timeout,
//     retry, rate limit); a call whose lane has an available instance
//     goes to it whatever subset the route chose, weighted or not.
//   - A call without a lane, or whose lane has no available instance
//     here, goes where the route sends it (its chosen subset, then its
//     fallback), or to the base instances when the service has no routes.
//   - Lane instances (those with Label that Base does not select) are
//     left out of every subset, so splits and fallbacks never reach
//     them, except a subset whose labels name Label itself
//     ({env: feat-1}): such a rule allows it explicitly.
type Lanes struct {
	// Label is the instance label whose value names an instance's lane
	// (env: an instance labelled env=feat-123 serves lane feat-123).
	Label string `yaml:"label" json:"label"`
	// Header is the request header, gRPC metadata key and lane key that
	// carries a call's lane value; empty means x-env.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// Base selects the base instances, those serving calls without a lane
	// or whose lane has no instance here; nil means the instances without
	// Label.
	Base *Subset `yaml:"base,omitempty" json:"base,omitempty"`
	// Entry puts calls entering this service (as the edge) into a lane by
	// rule, tried in order; the first that yields a lane wins. A call that
	// already carries a lane keeps it.
	Entry []LaneEntry `yaml:"entry,omitempty" json:"entry,omitempty"`
}

// laneRule is a compiled Lanes.
type laneRule struct {
	label  string
	header headerCond
	base   map[string]string // nil: instances without label
	entry  []laneEntry
	src    *Lanes
}

func (c *compiler) lanes(path string, l *Lanes) *laneRule {
	if l == nil {
		return nil
	}
	switch {
	case l.Label == "":
		c.missing(path, "label")
	case len(l.Label) > discovery.MaxLabelKeyLen:
		c.fail(path+".label", "over %d bytes", discovery.MaxLabelKeyLen)
	}
	header := strings.ToLower(strings.TrimSpace(l.Header))
	if l.Header == "" {
		header = DefaultLaneHeader
	} else if !validHeaderName(header) {
		c.fail(path+".header", "%s is not a header name", quote(l.Header))
	} else if _, err := trace.NewLane(trace.Label{Key: header, Value: "x"}); err != nil {
		// The lane travels under this header as a lane key: one the
		// trace package refuses could never carry it.
		c.fail(path+".header", "%s cannot carry a lane: %v", quote(l.Header), err)
	}
	lr := &laneRule{src: l, label: l.Label, header: headerCond{canonical: textproto.CanonicalMIMEHeaderKey(header), lower: header, slot: headerCacheSize}}
	if l.Base != nil {
		if len(l.Base.Labels) == 0 {
			c.fail(path+".base.labels", "at least one label is required (omit base for the instances without %s)", quote(l.Label))
		}
		for _, k := range slices.Sorted(maps.Keys(l.Base.Labels)) {
			if k == "" || len(k) > discovery.MaxLabelKeyLen || len(l.Base.Labels[k]) > discovery.MaxLabelValueLen {
				c.fail(path+".base.labels", "label %.40q: key must be 1..%d bytes and value at most %d", k, discovery.MaxLabelKeyLen, discovery.MaxLabelValueLen)
			}
		}
		lr.base = maps.Clone(l.Base.Labels)
	}
	lr.entry = c.laneEntries(path, l.Entry)
	return lr
}

// isBase reports whether in is a base instance under lr.
func (lr *laneRule) isBase(in *discovery.Instance) bool {
	if lr.base == nil {
		_, has := in.Labels[lr.label]
		return !has
	}
	return in.HasLabels(lr.base)
}

// laneOf returns the lane in serves, or "" for a base instance or one
// that serves no lane.
func (lr *laneRule) laneOf(in *discovery.Instance) string {
	if lr.isBase(in) {
		return ""
	}
	return in.Labels[lr.label]
}

// laneTable is the lane index of one service, built with its table: its
// instances by lane value, so that a call finds its lane with one map
// lookup whatever the number of lanes.
type laneTable struct {
	rule  *laneRule
	lanes map[string]*discovery.Picker
	base  *discovery.Picker
}

func buildLanes(lr *laneRule, healthy []discovery.Instance) *laneTable {
	lt := &laneTable{rule: lr}
	var base []discovery.Instance
	byLane := make(map[string][]discovery.Instance)
	for i := range healthy {
		in := &healthy[i]
		if lr.isBase(in) {
			base = append(base, *in)
		} else if v := in.Labels[lr.label]; v != "" {
			byLane[v] = append(byLane[v], *in)
		}
	}
	lt.base = discovery.NewPicker(base)
	lt.lanes = make(map[string]*discovery.Picker, len(byLane))
	for v, list := range byLane {
		lt.lanes[v] = discovery.NewPicker(list)
	}
	return lt
}

// subsetMembers returns the instances of healthy that subset labels
// selects, without lane instances unless labels name the lane label.
func subsetMembers(lr *laneRule, labels map[string]string, healthy []discovery.Instance) []discovery.Instance {
	explicit := false
	if lr != nil {
		_, explicit = labels[lr.label]
	}
	var members []discovery.Instance
	for j := range healthy {
		in := &healthy[j]
		if !in.HasLabels(labels) {
			continue
		}
		if lr == nil || explicit || lr.laneOf(in) == "" {
			members = append(members, *in)
		}
	}
	return members
}

// LaneCount is one lane of a service with its number of available
// instances.
type LaneCount struct {
	Lane      string `json:"lane"`
	Instances int    `json:"instances"`
}

// Lanes returns the lanes service currently has (from its instances'
// labels under its Lanes rule), sorted by name, with their instance
// counts, and the label that names them; nil when the service has no
// Lanes rule.
func (t *Table) Lanes(service string) (label string, lanes []LaneCount) {
	st, _ := t.services.Get(service)
	if st == nil || st.lanes == nil {
		return "", nil
	}
	lanes = make([]LaneCount, 0, len(st.lanes.lanes))
	for _, v := range slices.Sorted(maps.Keys(st.lanes.lanes)) {
		lanes = append(lanes, LaneCount{Lane: v, Instances: st.lanes.lanes[v].Len()})
	}
	return st.lanes.rule.label, lanes
}

// Lane returns the lane value the call carries, "" when it carries none
// or the service has no Lanes rule.
func (d *Decision) Lane() string { return d.lane }

// HasLaneInstances reports whether the service has instances of the
// call's lane.
func (d *Decision) HasLaneInstances() bool { return d.lanePk != nil }

// PickLane picks an instance accept accepts from the instances of d's
// lane, or returns nil (also when the call has no lane or the service
// none of its instances).
func (t *Table) PickLane(d *Decision, accept func(*discovery.Instance) bool) *discovery.Instance {
	if d.lanePk == nil {
		return nil
	}
	return d.lanePk.Pick(accept)
}

// matchLane reads the call's lane into d and looks its instances up.
func (st *serviceTable) matchLane(req *Request, d *Decision) {
	lt := st.lanes
	if req == nil {
		return
	}
	v, ok := req.header(&lt.rule.header)
	if !ok || v == "" {
		return
	}
	d.lane = v
	d.lanePk = lt.lanes[v]
}

// LaneCandidates returns the instances of d's lane, which Pick tries
// before the others. Callers must not modify the list.
func (t *Table) LaneCandidates(d *Decision) []discovery.Instance {
	if d.lanePk == nil {
		return nil
	}
	return d.lanePk.Instances()
}

// LaneStep is the lane decision of an explained call.
type LaneStep struct {
	// Label is the instance label that names lanes and Header the header
	// the call's lane value is read from.
	Label  string `json:"label"`
	Header string `json:"header"`
	// Value is the call's lane, "" when it carries none.
	Value string `json:"value,omitempty"`
	// Instances is the number of the service's healthy instances of the
	// lane, and Used whether one of them takes the call.
	Instances int  `json:"instances"`
	Used      bool `json:"used"`
	// Decision says it in a sentence: "lane feat-123: no instance of
	// user-api → base; lane kept for the next hop".
	Decision string `json:"decision"`

	instance string
}

// explainLane explains the lane decision of a call to st, nil when the
// service has no lanes.
func explainLane(st *serviceTable, service string, req *Request, accept func(*discovery.Instance) bool) *LaneStep {
	if st.lanes == nil {
		return nil
	}
	var d Decision
	st.matchLane(req, &d)
	ls := &LaneStep{Label: st.lanes.rule.label, Header: st.lanes.rule.header.lower, Value: d.lane}
	switch {
	case d.lane == "":
		ls.Decision = fmt.Sprintf("no lane (no %s header) → base", ls.Header)
	case d.lanePk == nil:
		ls.Decision = fmt.Sprintf("lane %s: no instance of %s → base; lane kept for the next hop", d.lane, service)
	default:
		ls.Instances = d.lanePk.Len()
		if in := d.lanePk.Peek(accept); in != nil {
			ls.Used, ls.instance = true, in.Address
			ls.Decision = fmt.Sprintf("lane %s: %d instance(s) of %s with %s=%s → %s", d.lane, ls.Instances, service, ls.Label, d.lane, in.Address)
		} else {
			ls.Decision = fmt.Sprintf("lane %s: %d instance(s) of %s, none available → base; lane kept for the next hop", d.lane, ls.Instances, service)
		}
	}
	return ls
}

// LanesInForce is a lanes rule with its defaults filled in.
type LanesInForce struct {
	Label  string `json:"label"`
	Header string `json:"header"`
	// Base is the labels of the base instances; nil: the instances
	// without Label.
	Base  map[string]string `json:"base,omitempty"`
	Entry []LaneEntry       `json:"entry,omitempty"`
}

// lanesInForce returns lr with its defaults filled in, nil for none.
func lanesInForce(lr *laneRule) *LanesInForce {
	if lr == nil {
		return nil
	}
	return &LanesInForce{Label: lr.label, Header: lr.header.lower, Base: lr.base, Entry: lr.src.Entry}
}

// LaneHeaders returns the headers that carry lanes under the rules (every
// service's lanes rule and the defaults'), sorted and without repeats.
func (r *Rules) LaneHeaders() []string {
	if r == nil {
		return nil
	}
	var out []string
	add := func(lr *laneRule) {
		if lr != nil && !slices.Contains(out, lr.header.lower) {
			out = append(out, lr.header.lower)
		}
	}
	add(r.defaultLanes)
	for _, sr := range r.services {
		add(sr.lanes)
	}
	slices.Sort(out)
	return out
}
