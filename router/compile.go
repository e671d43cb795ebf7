package router

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/textproto"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/textdist"
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

// Limits on what a document costs to compile and keep, checked by Compile.
// A document within the byte, count and length limits above could
// otherwise hold gigabytes once compiled: a 25-byte regex such as
// (x|\pL){300} compiles to megabytes, and a route weighted 1:999999 to a
// 65,536-step schedule.
const (
	// MaxRegexSize caps the size of one regex: one unit per operator,
	// literal character and character-class bound, with its counted
	// repetitions unrolled (x{2,5} counts x five times). [a-z0-9-]{1,63}
	// is 442; \pL, every letter, is about 1,300 on its own.
	MaxRegexSize = 100_000
	// MaxRegexTotalSize caps the sum of the sizes of all the regexes in a
	// document.
	MaxRegexTotalSize = 1_000_000
	// MaxRegexTables caps what one regex may make the matcher store for
	// its branch points: anchored, a regex is compiled one-pass when it
	// can be, and each branch then keeps the characters every branch
	// after it may start with (an alternation of 200 single characters
	// stores 20,000 entries, about 0.4 MB). The estimate counts, for each
	// branch point of the compiled program, the character ranges it can
	// reach first.
	MaxRegexTables = 100_000
	// MaxRegexTablesTotal caps the sum of the regexes' table estimates in
	// a document.
	MaxRegexTablesTotal = 1_000_000
	// MaxScheduleSteps caps the steps of the weighted schedules of a
	// document's routes, counting each distinct split once: a split's
	// weights over their greatest common divisor, summed (90/10 is 10
	// steps, 1/999 is 1,000), at most 65,536 for one split.
	MaxScheduleSteps = 1 << 22
)

// maxSplitSteps is the length discovery.NewSchedule gives at most to the
// schedule of one split.
const maxSplitSteps = 1 << 16

// Rules is a compiled, validated rule document. It is immutable apart from
// the counters that spread weighted splits, and safe for concurrent use.
type Rules struct {
	doc      *Document
	services map[string]*serviceRules
	defaults *Policy // nil without valid defaults
	// defaultLanes are the lanes of the services the rules do not name;
	// nil: none.
	defaultLanes *laneRule
	// none: no rule document; the stand-in of a table made without rules.
	none bool
	// serverIDs: some service sets serverID. Without one, ServerID answers
	// every call without looking its service up.
	serverIDs bool
}

// Document returns the document the rules were compiled from. Callers must
// not modify it.
func (r *Rules) Document() *Document { return r.doc }

// Policy returns the compiled protection of service, or nil when the rules
// do not name it (or r is nil). Callers must not modify it.
func (r *Rules) Policy(service string) *Policy {
	if r == nil {
		return nil
	}
	if sr := r.services[service]; sr != nil {
		return sr.policy
	}
	return nil
}

// DefaultPolicy returns the compiled defaults, the policy of a service
// the rules do not name: the defaults document over BuiltinDefaults (for
// a nil r, no rules yet, BuiltinDefaults alone). Callers must not modify
// it.
func (r *Rules) DefaultPolicy() *Policy {
	if r == nil || r.defaults == nil { // no rules yet (NewTable(nil, ...))
		return builtinPolicy()
	}
	return r.defaults
}

// defaulted returns the settings service takes from the defaults rather
// than from rules of its own (see Defaults.Fill): all the defaults for
// a service the rules do not name. InForce.FromDefaults shows it.
func (r *Rules) defaulted(service string) []string {
	if r == nil || r.doc.Defaults == nil {
		return nil
	}
	_, taken := r.doc.Defaults.Fill(r.doc.Services[service])
	return taken
}

// Services returns the names of the services the rules cover, sorted.
func (r *Rules) Services() []string { return slices.Sorted(maps.Keys(r.services)) }

type serviceRules struct {
	name     string
	policy   *Policy
	subsets  []subsetRule // sorted by name
	routes   []route
	inbound  []route     // conditions only: inbound routes have no destinations
	lanes    *laneRule   // nil: no lanes
	index    []indexKey  // nil: Route scans every route
	authz    *Authorizer // nil: every caller may call
	serverID spiffeid.ID // zero: no mutual TLS required
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
	// regexSize sums the sizes of the regexes compiled so far.
	regexSize int
	// regexTables sums the table estimates of the regexes compiled so far.
	regexTables int
	// schedules holds the schedule of each distinct split compiled so
	// far, by weights, and steps the sum of their steps.
	schedules map[string]discovery.Schedule
	steps     int
	// perService counts the budgets above for each service alone: the
	// documents Compose puts together were each checked against them.
	perService bool
}

// Compose compiles the documents of a per-service layout into one rule
// set: defaults (nil for none) gives the defaults, and each of services
// the rules of the services it names. Each document is meant to have
// been checked alone with LoadPart; the budgets of a document (regex
// size, split steps) then apply to each service on its own, so that a
// document valid alone is never rejected for what the others hold, or
// for the order they came in. A service named twice takes the last
// document's rules. The error is a *ValidationError, as Compile's.
func Compose(defaults *Document, services ...*Document) (*Rules, error) {
	merged := &Document{APIVersion: APIVersion, Services: map[string]Service{}}
	if defaults != nil {
		merged.Defaults = defaults.Defaults
	}
	for _, d := range services {
		if d != nil {
			maps.Copy(merged.Services, d.Services)
		}
	}
	c := &compiler{perService: true}
	rules := c.compile(merged)
	if err := c.err(); err != nil {
		return nil, err
	}
	return rules, nil
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
	for _, p := range c.problems {
		p.Path = clipPath(p.Path)
	}
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
		c.fail("apiVersion", "unsupported %s, want %s", quote(doc.APIVersion), APIVersion)
	}
	if len(doc.Services) > MaxServices {
		c.fail("services", "%d services, over the limit of %d", len(doc.Services), MaxServices)
		return nil
	}
	rules := &Rules{doc: doc, services: make(map[string]*serviceRules, len(doc.Services))}
	// Invalid defaults are reported once, at their own path, and fill no
	// service (the document is rejected anyway).
	// A service no rule names also takes the built-in defaults the
	// defaults document does not override (BuiltinDefaults).
	var defaults *Defaults
	before := len(c.problems)
	effective, _ := withBuiltins(doc.Defaults)
	rules.defaults = c.defaultsPolicy(&effective)
	if d := doc.Defaults; d != nil {
		rules.defaultLanes = c.lanes("defaults.lanes", d.Lanes)
		if len(c.problems) == before {
			defaults = d
		}
	}
	for _, name := range slices.Sorted(maps.Keys(doc.Services)) {
		path := "services." + name
		if !validName(name) {
			c.fail(path, "service name must be 1..%d characters of letters, digits, '-', '_' and '.'", MaxNameLen)
			continue
		}
		if c.perService {
			c.regexSize, c.regexTables, c.schedules, c.steps = 0, 0, nil, 0
		}
		svc, _ := defaults.Fill(doc.Services[name])
		sr := c.service(path, name, svc)
		rules.services[name] = sr
		rules.serverIDs = rules.serverIDs || !sr.serverID.IsZero()
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
			c.fail(rp+".name", "duplicate route name %s (also routes[%d])", quote(r.Name), j)
		} else if !validName(r.Name) {
			c.fail(rp+".name", "route name must be 1..%d characters of letters, digits, '-', '_' and '.'", MaxNameLen)
		} else {
			names[r.Name] = i
		}
		sr.routes = append(sr.routes, cr)
	}
	assignHeaderSlots(sr.routes)
	sr.inbound = c.inbound(path, svc.Inbound)
	sr.lanes = c.lanes(path+".lanes", svc.Lanes)
	if svc.Authorization != nil {
		sr.authz = c.authorization(path+".authorization", svc.Authorization)
	}
	if svc.ServerID != "" {
		id, err := spiffeid.FromString(svc.ServerID)
		if err != nil {
			c.fail(path+".serverID", "%s is not a SPIFFE ID (spiffe://domain/path): %v", quote(svc.ServerID), err)
		}
		sr.serverID = id
	}
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
	weighted, sum, negative, invalid := 0, 0, false, false
	seen := make(map[string]int)
	for i, d := range r.Destinations {
		dp := fmt.Sprintf("%s.destinations[%d]", path, i)
		idx, ok := subsets[d.Subset]
		switch {
		case d.Subset == "":
			c.missing(dp, "subset")
		case !ok:
			c.fail(dp+".subset", "unknown subset %s%s", quote(d.Subset), closestSubset(d.Subset, subsets))
		}
		if j, dup := seen[d.Subset]; dup && d.Subset != "" {
			c.fail(dp+".subset", "subset %s already used by destinations[%d]", quote(d.Subset), j)
		}
		seen[d.Subset] = i
		w := 1
		if d.Weight == nil && c.pos.hides(dp+".weight") {
			// A weight was written, with a shape problem: it counts as
			// set, and the split is not checked further.
			weighted++
			invalid = true
		}
		if d.Weight != nil {
			weighted++
			w = *d.Weight
			switch {
			case w < 0:
				c.fail(dp+".weight", "must be >= 0")
				negative, invalid = true, true
			case w > MaxWeight:
				c.fail(dp+".weight", "must be <= %d", MaxWeight)
				invalid = true
			}
			sum += min(max(w, 0), MaxWeight) // capped: weights past the limit must not overflow the sum
		}
		cr.dests = append(cr.dests, idx)
		weights = append(weights, w)
	}
	switch {
	case weighted != 0 && weighted != len(r.Destinations):
		c.fail(path+".destinations", "set weight on every destination or on none")
	case weighted != 0 && sum == 0 && !negative && !invalid:
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
	if !invalid {
		cr.schedule = c.schedule(path+".destinations", weights)
	}
	if r.Fallback != "" {
		idx, ok := subsets[r.Fallback]
		if !ok {
			c.fail(path+".fallback", "unknown subset %s%s", quote(r.Fallback), closestSubset(r.Fallback, subsets))
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
			c.fail(fmt.Sprintf("%s.methods[%d]", path, i), "invalid method %s", quote(meth))
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
		// Parse expr on its own first: wrapped, an unbalanced expr such as
		// "a)|(b" would compile and escape the anchors. regexp.Compile
		// parses with the same flags.
		parsed, err := syntax.Parse(expr, syntax.Perl)
		if err != nil {
			c.fail(path+".regex", "invalid RE2 expression: %v", err)
			return sc, false
		}
		// Measure it before compiling: a short expression can compile to
		// megabytes.
		switch size := regexSize(parsed); {
		case size > MaxRegexSize:
			c.fail(path+".regex", "expression too large: size %d with its counted repetitions unrolled, over the limit of %d (match with + or * rather than large counts)", size, MaxRegexSize)
			return sc, false
		case c.regexSize+size > MaxRegexTotalSize:
			c.fail(path+".regex", "too much regex in the document: this expression (size %d) takes the sum of their sizes over the limit of %d", size, MaxRegexTotalSize)
			return sc, false
		default:
			c.regexSize += size
		}
		tables := regexTables(parsed)
		switch {
		case tables > MaxRegexTables:
			c.fail(path+".regex", "expression too large: its branches need about %d table entries, over the limit of %d (fewer alternatives or optional parts in a row)", tables, MaxRegexTables)
			return sc, false
		case c.regexTables+tables > MaxRegexTablesTotal:
			c.fail(path+".regex", "too much regex in the document: this expression's branches (about %d table entries) take the sum over the limit of %d", tables, MaxRegexTablesTotal)
			return sc, false
		}
		c.regexTables += tables
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

// regexSize returns the size of a parsed regex, as MaxRegexSize counts
// it.
func regexSize(re *syntax.Regexp) int {
	size := 1 + len(re.Rune)
	for _, sub := range re.Sub {
		size += regexSize(sub)
	}
	if re.Op == syntax.OpRepeat {
		// x{n,m} compiles to m copies of x, x{n,} to n copies and a star.
		// The parser caps nested counts at 1000 in all, so no overflow.
		copies := re.Max
		if copies < 0 {
			copies = re.Min + 1
		}
		size = 1 + max(copies, 1)*(size-1)
	}
	return size
}

// regexTables estimates, as MaxRegexTables counts it, what the one-pass
// form of re stores: for each branch instruction of its program, the
// character ranges reachable from it before a character is consumed.
// The program is compiled from the simplified expression, which
// regexSize has bounded already.
func regexTables(re *syntax.Regexp) int {
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0 // regexp.Compile reports it
	}
	const unknown, visiting = -1, -2
	first := make([]int, len(prog.Inst))
	for i := range first {
		first[i] = unknown
	}
	var reach func(pc uint32) int
	reach = func(pc uint32) int {
		switch first[pc] {
		case visiting:
			return 0 // an empty loop: its ranges are counted where it is entered
		case unknown:
		default:
			return first[pc]
		}
		first[pc] = visiting
		inst := &prog.Inst[pc]
		n := 0
		switch inst.Op {
		case syntax.InstRune:
			n = max(1, len(inst.Rune)/2)
		case syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
			n = 1
		case syntax.InstAlt, syntax.InstAltMatch:
			n = reach(inst.Out) + reach(inst.Arg)
		case syntax.InstNop, syntax.InstCapture, syntax.InstEmptyWidth:
			n = reach(inst.Out)
		}
		first[pc] = n
		return n
	}
	total := 0
	for pc := range prog.Inst {
		if op := prog.Inst[pc].Op; op == syntax.InstAlt || op == syntax.InstAltMatch {
			if total += reach(uint32(pc)); total > MaxRegexTablesTotal {
				break
			}
		}
	}
	return total
}

// schedule returns the schedule of a split with weights, shared by every
// route of the document with the same weights, and reports at path a split
// that would take the document's schedules over MaxScheduleSteps.
func (c *compiler) schedule(path string, weights []int) discovery.Schedule {
	steps := splitSteps(weights)
	if steps == 0 {
		return discovery.NewSchedule(weights) // plain round-robin: no steps stored
	}
	var b strings.Builder
	for _, w := range weights {
		b.WriteString(strconv.Itoa(w))
		b.WriteByte(':')
	}
	key := b.String()
	if s, ok := c.schedules[key]; ok {
		return s
	}
	if c.steps+steps > MaxScheduleSteps {
		c.fail(path, "weights %s need a schedule of %d steps, over the limit of %d for all the distinct splits of the document (use rounder weights: 90/10 needs 10 steps, 1/99 needs 100)", strings.TrimSuffix(key, ":"), steps, MaxScheduleSteps)
		return discovery.Schedule{}
	}
	if c.schedules == nil {
		c.schedules = make(map[string]discovery.Schedule)
	}
	c.steps += steps
	s := discovery.NewSchedule(weights)
	c.schedules[key] = s
	return s
}

// splitSteps returns the length of the schedule discovery.NewSchedule
// builds for valid weights (at most MaxWeight each): 0 when they are all
// equal (plain round-robin), else their sum over their greatest common
// divisor, at most maxSplitSteps.
func splitSteps(weights []int) int {
	if len(weights) < 2 {
		return 0
	}
	g, equal := 0, true
	for _, w := range weights {
		if w != weights[0] {
			equal = false
		}
		g = gcd(g, max(w, 1))
	}
	if equal {
		return 0
	}
	total := 0
	for _, w := range weights {
		total += max(w, 1) / g
	}
	return min(total, max(maxSplitSteps, len(weights)))
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// quote returns s quoted, cut to its first 64 bytes when longer, so that
// an error message stays short whatever the document holds.
func quote(s string) string {
	const limit = 64
	if len(s) <= limit {
		return strconv.Quote(s)
	}
	return strconv.Quote(cutUTF8(s, limit)) + fmt.Sprintf("...(%d bytes)", len(s))
}

// clipPath shortens each key in path longer than any key Parse reads to
// its first 40 bytes, so that an error message stays short whatever the
// document holds.
func clipPath(path string) string {
	if len(path) <= maxKeyLen {
		return path
	}
	var b strings.Builder
	for len(path) > 0 {
		// path[:i] is a key, or an index such as [3], with the dot or
		// bracket before it.
		i := strings.IndexAny(path[1:], ".[") + 1
		if i == 0 {
			i = len(path)
		}
		part := path[:i]
		if key, ok := strings.CutPrefix(part, "."); ok && len(key) > maxKeyLen {
			fmt.Fprintf(&b, ".%s...(%d bytes)", cutUTF8(key, 40), len(key))
		} else if len(part) > maxKeyLen && part[0] != '[' {
			fmt.Fprintf(&b, "%s...(%d bytes)", cutUTF8(part, 40), len(part))
		} else {
			b.WriteString(part)
		}
		path = path[i:]
	}
	// A key holding dots or brackets is split above into short parts
	// that are kept: cut what is still too long as a whole.
	out := b.String()
	if len(out) > 4*maxKeyLen {
		out = fmt.Sprintf("%s...(%d bytes)", cutUTF8(out, 2*maxKeyLen), len(out))
	}
	return out
}

// cutUTF8 returns the longest prefix of s of at most n bytes that does not
// split a UTF-8 sequence.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
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
// closestSubset returns `; did you mean "x"?` for the subset closest to
// name, or "" when none is close.
func closestSubset(name string, subsets map[string]int) string {
	if best := textdist.Closest(name, slices.Sorted(maps.Keys(subsets)), 2); best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return ""
}

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
