package router

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/lightmesh/lightmesh/discovery"
)

// Limits on a document's content, checked by Compile.
const (
	MaxServices         = 10000
	MaxSubsets          = 256
	MaxRoutes           = 1000
	MaxDestinations     = 64
	MaxHeaderConditions = 32
	MaxMethods          = 16
	MaxRegexLen         = 1024
	MaxNameLen          = 253
	MaxWeight           = 1_000_000
)

// Rules is a compiled, validated rule document. It is immutable apart from
// the counters that spread weighted splits, and safe for concurrent use.
type Rules struct {
	doc      *Document
	services map[string]*serviceRules
}

// Document returns the document the rules were compiled from. Callers must
// not modify it.
func (r *Rules) Document() *Document { return r.doc }

// Policy returns the compiled protection of service, or nil when the rules
// do not name it. Callers must not modify it.
func (r *Rules) Policy(service string) *Policy {
	if sr := r.services[service]; sr != nil {
		return sr.policy
	}
	return nil
}

// Services returns the names of the services the rules cover, sorted.
func (r *Rules) Services() []string { return slices.Sorted(maps.Keys(r.services)) }

type serviceRules struct {
	name    string
	policy  *Policy
	subsets []subsetRule // sorted by name
	routes  []route
	inbound []route    // conditions only: inbound routes have no destinations
	index   []indexKey // nil: Route scans every route
}

type subsetRule struct {
	name   string
	labels map[string]string
}

type route struct {
	name     string
	headers  []headerCond
	path     *stringCond
	methods  []string // upper case
	dests    []int    // subset indexes
	schedule discovery.Schedule
	next     *atomic.Uint64
	fallback int // subset index, -1 for none
}

// Compile validates doc as a whole and compiles it. The error is a
// *ValidationError listing every problem found (up to MaxProblems), each a
// *FieldError naming its place; nothing is compiled unless the whole
// document is valid. Load does the same from the document's bytes and adds
// each problem's line.
func Compile(doc *Document) (*Rules, error) {
	if doc == nil {
		return nil, errors.New("router: nil document")
	}
	c := newCompiler(nil)
	rules := c.compile(doc)
	if err := c.err(); err != nil {
		return nil, err
	}
	return rules, nil
}

// compiler validates and compiles one document, collecting every problem.
type compiler struct {
	pos      *positions // nil without source positions
	problems []*FieldError
}

func newCompiler(pos *positions) *compiler { return &compiler{pos: pos} }

// shape adds the problems Parse found.
func (c *compiler) shape(problems []*FieldError) { c.problems = append(c.problems, problems...) }

// fail records a problem at path, unless it repeats a shape problem.
func (c *compiler) fail(path, format string, args ...any) {
	if c.pos.hides(path) {
		return
	}
	at := c.pos.of(path)
	c.problems = append(c.problems, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...), Line: at.line, Column: at.column})
}

// missing records that a required field at path is absent, unless its
// mapping has a misspelled or mistyped field that is most likely it.
func (c *compiler) missing(path, field string) {
	if c.pos.hidesMissing(path) {
		return
	}
	c.fail(join(path, field), "required")
}

// err returns the problems as a *ValidationError, or nil.
func (c *compiler) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	sortProblems(c.problems)
	ve := &ValidationError{Problems: c.problems}
	if n := len(ve.Problems); n > MaxProblems {
		ve.Problems, ve.More = ve.Problems[:MaxProblems:MaxProblems], n-MaxProblems
	}
	return ve
}

func (c *compiler) compile(doc *Document) *Rules {
	switch doc.APIVersion {
	case APIVersion:
	case "":
		c.fail("apiVersion", "required (%s)", APIVersion)
	default:
		c.fail("apiVersion", "unsupported %q, want %s", doc.APIVersion, APIVersion)
	}
	if len(doc.Services) > MaxServices {
		c.fail("services", "%d services, over the limit of %d", len(doc.Services), MaxServices)
		return nil
	}
	rules := &Rules{doc: doc, services: make(map[string]*serviceRules, len(doc.Services))}
	for _, name := range slices.Sorted(maps.Keys(doc.Services)) {
		path := "services." + name
		if !validName(name) {
			c.fail(path, "service name must be 1..%d characters of letters, digits, '-', '_' and '.'", MaxNameLen)
			continue
		}
		rules.services[name] = c.service(path, name, doc.Services[name])
	}
	if len(c.problems) > 0 {
		return nil
	}
	return rules
}

func (c *compiler) service(path, name string, svc Service) *serviceRules {
	sr := &serviceRules{name: name}
	if len(svc.Subsets) > MaxSubsets {
		c.fail(path+".subsets", "%d subsets, over the limit of %d", len(svc.Subsets), MaxSubsets)
	}
	index := make(map[string]int, len(svc.Subsets))
	for _, sn := range slices.Sorted(maps.Keys(svc.Subsets)) {
		sp := path + ".subsets." + sn
		if !validName(sn) {
			c.fail(sp, "subset name must be 1..%d characters of letters, digits, '-', '_' and '.'", MaxNameLen)
		}
		labels := svc.Subsets[sn].Labels
		if len(labels) > discovery.MaxLabels {
			c.fail(sp+".labels", "%d labels, over the limit of %d", len(labels), discovery.MaxLabels)
		}
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			switch {
			case k == "":
				c.fail(sp+".labels", "empty label key")
			case len(k) > discovery.MaxLabelKeyLen:
				c.fail(sp+".labels", "label key %.40q...: over %d bytes", k, discovery.MaxLabelKeyLen)
			case len(labels[k]) > discovery.MaxLabelValueLen:
				c.fail(sp+".labels."+k, "value over %d bytes", discovery.MaxLabelValueLen)
			}
		}
		index[sn] = len(sr.subsets)
		sr.subsets = append(sr.subsets, subsetRule{name: sn, labels: maps.Clone(labels)})
	}
	if len(svc.Routes) > MaxRoutes {
		c.fail(path+".routes", "%d routes, over the limit of %d", len(svc.Routes), MaxRoutes)
		return sr
	}
	names := make(map[string]int)
	for i, r := range svc.Routes {
		rp := fmt.Sprintf("%s.routes[%d]", path, i)
		cr := c.route(rp, r, index)
		if r.Name == "" {
			cr.name = fmt.Sprintf("routes[%d]", i)
		} else if j, dup := names[r.Name]; dup {
			c.fail(rp+".name", "duplicate route name %q (also routes[%d])", r.Name, j)
		} else if !validName(r.Name) {
			c.fail(rp+".name", "route name must be 1..%d characters of letters, digits, '-', '_' and '.'", MaxNameLen)
		} else {
			names[r.Name] = i
		}
		sr.routes = append(sr.routes, cr)
	}
	assignHeaderSlots(sr.routes)
	sr.inbound = c.inbound(path, svc.Inbound)
	sr.index = buildIndex(sr.routes)
	sr.policy = c.policy(path, svc, sr.routes)
	return sr
}

// assignHeaderSlots numbers the distinct header names the routes test, the
// most used first, so that Route looks each of the first headerCacheSize up
// at most once per call.
func assignHeaderSlots(routes []route) {
	uses := make(map[string]int)
	for i := range routes {
		for _, h := range routes[i].headers {
			uses[h.canonical]++
		}
	}
	names := slices.SortedFunc(maps.Keys(uses), func(a, b string) int {
		if c := cmp.Compare(uses[b], uses[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	slot := make(map[string]int, len(names))
	for i, name := range names {
		slot[name] = i
	}
	for i := range routes {
		for j := range routes[i].headers {
			h := &routes[i].headers[j]
			h.slot = slot[h.canonical]
		}
	}
}

func (c *compiler) route(path string, r Route, subsets map[string]int) route {
	cr := route{name: r.Name, fallback: -1, next: new(atomic.Uint64)}
	if r.Match != nil {
		c.match(path+".match", r.Match, &cr)
	}
	switch n := len(r.Destinations); {
	case n == 0 && r.Destinations == nil && c.pos.hidesMissing(path):
		// most likely a misspelled destinations field, already reported
	case n == 0:
		c.fail(path+".destinations", "at least one destination is required")
	case n > MaxDestinations:
		c.fail(path+".destinations", "%d destinations, over the limit of %d", n, MaxDestinations)
	}
	weights := make([]int, 0, len(r.Destinations))
	weighted, sum, negative := 0, 0, false
	seen := make(map[string]int)
	for i, d := range r.Destinations {
		dp := fmt.Sprintf("%s.destinations[%d]", path, i)
		idx, ok := subsets[d.Subset]
		switch {
		case d.Subset == "":
			c.missing(dp, "subset")
		case !ok:
			c.fail(dp+".subset", "unknown subset %q", d.Subset)
		}
		if j, dup := seen[d.Subset]; dup && d.Subset != "" {
			c.fail(dp+".subset", "subset %q already used by destinations[%d]", d.Subset, j)
		}
		seen[d.Subset] = i
		w := 1
		if d.Weight != nil {
			weighted++
			w = *d.Weight
			switch {
			case w < 0:
				c.fail(dp+".weight", "must be >= 0")
				negative = true
			case w > MaxWeight:
				c.fail(dp+".weight", "must be <= %d", MaxWeight)
			}
			sum += max(w, 0)
		}
		cr.dests = append(cr.dests, idx)
		weights = append(weights, w)
	}
	switch {
	case weighted != 0 && weighted != len(r.Destinations):
		c.fail(path+".destinations", "set weight on every destination or on none")
	case weighted != 0 && sum == 0 && !negative:
		c.fail(path+".destinations", "weights sum to 0: at least one destination needs a positive weight")
	}
	if sum > 0 {
		// Zero-weight destinations are kept (so the rule reads as written)
		// but never chosen.
		var kept []int
		var keptWeights []int
		for i, w := range weights {
			if w > 0 {
				kept = append(kept, cr.dests[i])
				keptWeights = append(keptWeights, w)
			}
		}
		cr.dests, weights = kept, keptWeights
	}
	cr.schedule = discovery.NewSchedule(weights)
	if r.Fallback != "" {
		idx, ok := subsets[r.Fallback]
		if !ok {
			c.fail(path+".fallback", "unknown subset %q", r.Fallback)
		}
		cr.fallback = idx
	}
	return cr
}

func (c *compiler) match(path string, m *Match, cr *route) {
	if len(m.Headers) > MaxHeaderConditions {
		c.fail(path+".headers", "%d conditions, over the limit of %d", len(m.Headers), MaxHeaderConditions)
		return
	}
	canon := make(map[string]string)
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		hp := path + ".headers." + name
		if !validHeaderName(name) {
			c.fail(hp, "invalid header name")
			continue
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		if other, dup := canon[key]; dup {
			c.fail(hp, "same header as %q (names are case-insensitive)", other)
			continue
		}
		canon[key] = name
		sc, ok := c.stringCond(hp, m.Headers[name], true)
		if ok {
			cr.headers = append(cr.headers, headerCond{canonical: key, lower: strings.ToLower(name), cond: sc})
		}
	}
	if m.Path != nil {
		if sc, ok := c.stringCond(path+".path", *m.Path, false); ok {
			cr.path = &sc
		}
	}
	if len(m.Methods) > MaxMethods {
		c.fail(path+".methods", "%d methods, over the limit of %d", len(m.Methods), MaxMethods)
		return
	}
	for i, meth := range m.Methods {
		if !validHeaderName(meth) {
			c.fail(fmt.Sprintf("%s.methods[%d]", path, i), "invalid method %q", meth)
			continue
		}
		cr.methods = append(cr.methods, strings.ToUpper(meth))
	}
}

func (c *compiler) stringCond(path string, m StringMatch, header bool) (stringCond, bool) {
	set := 0
	var sc stringCond
	if m.Exact != nil {
		set++
		sc = stringCond{kind: condExact, value: *m.Exact}
	}
	if m.Prefix != nil {
		set++
		sc = stringCond{kind: condPrefix, value: *m.Prefix}
	}
	if m.Regex != nil {
		set++
		expr := *m.Regex
		if len(expr) > MaxRegexLen {
			c.fail(path+".regex", "%d bytes, over the limit of %d", len(expr), MaxRegexLen)
			return sc, false
		}
		// Check expr on its own first: wrapped, an unbalanced expr such as
		// "a)|(b" would compile and escape the anchors.
		if _, err := regexp.Compile(expr); err != nil {
			c.fail(path+".regex", "invalid RE2 expression: %v", err)
			return sc, false
		}
		re, err := regexp.Compile(`^(?:` + expr + `)$`)
		if err != nil {
			c.fail(path+".regex", "invalid RE2 expression: %v", err)
			return sc, false
		}
		sc = stringCond{kind: condRegex, value: expr, re: re}
	}
	if m.Present != nil {
		if !header {
			c.fail(path+".present", "only valid for headers")
			return sc, false
		}
		set++
		if *m.Present {
			sc = stringCond{kind: condPresent}
		} else {
			sc = stringCond{kind: condAbsent}
		}
	}
	if set != 1 {
		c.fail(path, "set exactly one of exact, prefix, regex%s", map[bool]string{true: ", present", false: ""}[header])
		return sc, false
	}
	return sc, true
}

func validName(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
}

// validHeaderName reports whether s is an RFC 9110 token of bounded length.
func validHeaderName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0) {
			return false
		}
	}
	return true
}
