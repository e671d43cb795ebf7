package router

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
)

// fuzzChoices hands out the bytes of a fuzz input as small decisions.
// Once the bytes run out every decision is 0, so any input, even an
// empty one, describes a document and requests.
type fuzzChoices struct{ data []byte }

// next returns the next byte of the input, or 0 when it is used up.
func (c *fuzzChoices) next() byte {
	if len(c.data) == 0 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return b
}

// intn returns a decision in [0, n).
func (c *fuzzChoices) intn(n int) int { return int(c.next()) % n }

// raw returns up to 24 bytes of the input, as they are.
func (c *fuzzChoices) raw() string {
	n := min(c.intn(25), len(c.data))
	s := string(c.data[:n])
	c.data = c.data[n:]
	return s
}

// refHeaderNames are the header names fuzzed documents and requests use:
// more than headerCacheSize of them, so that some conditions go past the
// per-call header cache, in three spellings each.
var refHeaderNames = func() []string {
	names := []string{"x-env", "x-tenant", "x_under", "x.dot", "grpc-ish", "accept"}
	for i := len(names); i < headerCacheSize+6; i++ {
		names = append(names, fmt.Sprintf("x-h%d", i))
	}
	return names
}()

// headerName picks a header name, mostly one of the first few (so that
// routes and requests meet), in one of its spellings.
func (c *fuzzChoices) headerName() string {
	b := c.next()
	name := refHeaderNames[int(b)%4]
	if b >= 192 {
		name = refHeaderNames[int(b)%len(refHeaderNames)]
	}
	switch c.intn(3) {
	case 1:
		return strings.ToUpper(name)
	case 2:
		return textproto.CanonicalMIMEHeaderKey(name)
	}
	return name
}

// value picks a header or path value: mostly from a small pool, so that
// conditions and requests agree often, else raw input bytes.
func (c *fuzzChoices) value(pool ...string) string {
	if i := c.intn(len(pool) + 2); i < len(pool) {
		return pool[i]
	}
	return c.raw()
}

var (
	refValues  = []string{"", "a", "b", "ab", "staging", "A", "a\nb", "é"}
	refPaths   = []string{"", "/", "/a", "/a/b", "/pkg.Svc/Call", "/A"}
	refMethods = []string{"GET", "get", "Post", "DELETE", "PATCH"}
	refRegexes = []string{"", ".*", "a.*", "(a|b)+", "[^x]*", "a|b", `\d+`, "(?i)A", "(?s).+", "é?"}
)

// docString makes s fit a JSON document unchanged: encoding/json would
// replace invalid UTF-8.
func docString(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// stringMatch builds a condition; header conditions may also be present
// or absent.
func (c *fuzzChoices) stringMatch(pool []string, header bool) StringMatch {
	kinds := 6
	if header {
		kinds = 8
	}
	switch k := c.intn(kinds); k {
	case 0, 1, 2, 3:
		v := docString(c.value(pool...))
		return StringMatch{Exact: &v}
	case 4:
		v := docString(c.value(pool...))
		return StringMatch{Prefix: &v}
	case 5:
		expr := refRegexes[c.intn(len(refRegexes))]
		if c.intn(2) == 0 {
			expr = regexp.QuoteMeta(docString(c.value(pool...))) + expr
		}
		return StringMatch{Regex: &expr}
	default:
		present := k == 6
		return StringMatch{Present: &present}
	}
}

// refSubsets are the subsets of the fuzzed service; each has one instance.
var refSubsets = []string{"s0", "s1", "s2"}

// fuzzDocument builds a valid document with one service, "svc", whose
// routes draw their conditions from c. The first choice sets the number
// of routes: up to 12, or from 8 to 135 so that the route index (built
// from 8 routes) spans up to three words of its bitsets.
func fuzzDocument(c *fuzzChoices) *Document {
	n := c.intn(256)
	switch {
	case n < 13:
	case n < 128:
		n = 1 + n%12
	default:
		n = 8 + (n - 128)
	}
	svc := Service{Subsets: map[string]Subset{}}
	for _, s := range refSubsets {
		svc.Subsets[s] = Subset{Labels: map[string]string{"subset": s}}
	}
	for i := range n {
		r := Route{}
		if c.intn(4) == 0 {
			r.Name = fmt.Sprintf("r%d", i)
		}
		if c.intn(24) != 23 { // a rare catch-all
			m := &Match{}
			conds := 1 + c.intn(3) // exact x-env "" when the input is used up
			if c.intn(16) == 15 {
				conds = c.intn(MaxHeaderConditions + 1)
			}
			for range conds {
				name := c.headerName()
				if slices.ContainsFunc(mapKeys(m.Headers), func(k string) bool { return strings.EqualFold(k, name) }) {
					continue // the same header twice: Load rejects it
				}
				if m.Headers == nil {
					m.Headers = map[string]StringMatch{}
				}
				m.Headers[name] = c.stringMatch(refValues, true)
			}
			if c.intn(4) == 3 {
				p := c.stringMatch(refPaths, false)
				m.Path = &p
			}
			if c.intn(4) == 3 {
				for range 1 + c.intn(2) {
					m.Methods = append(m.Methods, refMethods[c.intn(len(refMethods))])
				}
			}
			r.Match = m
		}
		weighted := c.intn(3) == 0
		for j, s := range refSubsets[:1+c.intn(len(refSubsets))] {
			d := Destination{Subset: s}
			if weighted {
				w := c.intn(4)
				if j == 0 {
					w++ // weights must not sum to 0
				}
				d.Weight = &w
			}
			r.Destinations = append(r.Destinations, d)
		}
		if c.intn(4) == 0 {
			r.Fallback = refSubsets[c.intn(len(refSubsets))]
		}
		svc.Routes = append(svc.Routes, r)
	}
	return &Document{APIVersion: APIVersion, Services: map[string]Service{"svc": svc}}
}

// mapKeys returns the keys of m, in no order.
func mapKeys(m map[string]StringMatch) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// refGetter is a HeaderGetter over a map with lower-case keys.
type refGetter map[string]string

// Get implements HeaderGetter.
func (g refGetter) Get(key string) (string, bool) { v, ok := g[key]; return v, ok }

// setHeader puts one header into r in one of the places a Request
// carries them, by how: 0 HTTP header, 1 HTTP header with a second
// value, 2 an HTTP header key without values (which does not count as
// present), 3 gRPC metadata, 4 metadata key without values, 5 the
// getter.
func setHeader(r *Request, name, v string, how int) {
	canon, lower := textproto.CanonicalMIMEHeaderKey(name), strings.ToLower(name)
	if r.Header == nil && how <= 2 {
		r.Header = http.Header{}
	}
	if r.Metadata == nil && (how == 3 || how == 4) {
		r.Metadata = map[string][]string{}
	}
	switch how {
	case 0:
		r.Header[canon] = []string{v}
	case 1:
		r.Header[canon] = []string{v, "second"}
	case 2:
		r.Header[canon] = []string{}
	case 3:
		r.Metadata[lower] = []string{v}
	case 4:
		r.Metadata[lower] = nil
	default:
		g, _ := r.Getter.(refGetter)
		if g == nil {
			g = refGetter{}
			r.Getter = g
		}
		g[lower] = v
	}
}

// fuzzRequest builds a request from c; nil now and then.
func fuzzRequest(c *fuzzChoices) *Request {
	if c.intn(16) == 0 {
		return nil
	}
	r := &Request{Method: c.value("GET", "POST", "DELETE", "PATCH", "get", ""), Path: c.value(refPaths...)}
	for range c.intn(6) {
		setHeader(r, c.headerName(), c.value(refValues...), c.intn(6))
	}
	return r
}

// witness returns a request meeting most of rt's conditions (all but
// regexes), its headers spread over the places a request carries them,
// so that requests reach far down a long route list and past the index.
func witness(rt Route, i int) *Request {
	r := &Request{}
	if rt.Match == nil {
		return r
	}
	m := rt.Match
	if len(m.Methods) > 0 {
		r.Method = strings.ToUpper(m.Methods[0])
	}
	if p := m.Path; p != nil {
		switch {
		case p.Exact != nil:
			r.Path = *p.Exact
		case p.Prefix != nil:
			r.Path = *p.Prefix + "/z"
		}
	}
	for _, name := range slices.Sorted(slices.Values(mapKeys(m.Headers))) {
		sm := m.Headers[name]
		v := "b"
		switch {
		case sm.Exact != nil:
			v = *sm.Exact
		case sm.Prefix != nil:
			v = *sm.Prefix + "z"
		case sm.Present != nil && !*sm.Present:
			continue
		}
		setHeader(r, name, v, []int{0, 3, 5}[i%3])
		i++
	}
	return r
}

// refLookup is the reference reading of a request's header: the first
// value under the name in HTTP headers, else in gRPC metadata, else from
// the getter; names compare without regard to case.
func refLookup(r *Request, name string) (string, bool) {
	for k, vs := range r.Header {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0], true
		}
	}
	for k, vs := range r.Metadata {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0], true
		}
	}
	if r.Getter != nil {
		return r.Getter.Get(strings.ToLower(name))
	}
	return "", false
}

// refCond is the reference reading of one condition on a value.
func refCond(m StringMatch, v string, present bool) bool {
	switch {
	case m.Present != nil:
		return present == *m.Present
	case !present:
		return false
	case m.Exact != nil:
		return v == *m.Exact
	case m.Prefix != nil:
		return strings.HasPrefix(v, *m.Prefix)
	default:
		return len(v) <= MaxRegexInputLen && refRegexp(*m.Regex).MatchString(v)
	}
}

// refRegexps caches the compiled regexes of refCond.
var refRegexps = struct {
	sync.Mutex
	m map[string]*regexp.Regexp
}{m: map[string]*regexp.Regexp{}}

// refRegexp compiles expr anchored at both ends, as the rule model says a
// regex condition is.
func refRegexp(expr string) *regexp.Regexp {
	refRegexps.Lock()
	defer refRegexps.Unlock()
	re := refRegexps.m[expr]
	if re == nil {
		if len(refRegexps.m) > 10_000 {
			clear(refRegexps.m)
		}
		re = regexp.MustCompile("^(?:" + expr + ")$")
		refRegexps.m[expr] = re
	}
	return re
}

// refMatch is the reference matcher: the index of the first route of svc
// whose every condition holds for r, scanning them in order, or -1.
func refMatch(svc Service, r *Request) int {
	if r == nil {
		r = &Request{}
	}
	for i, rt := range svc.Routes {
		if refRouteMatches(rt.Match, r) {
			return i
		}
	}
	return -1
}

// refRouteMatches reports whether r meets every condition of m.
func refRouteMatches(m *Match, r *Request) bool {
	if m == nil {
		return true
	}
	if len(m.Methods) > 0 && !slices.ContainsFunc(m.Methods, func(meth string) bool { return strings.ToUpper(meth) == r.Method }) {
		return false
	}
	if m.Path != nil && !refCond(*m.Path, r.Path, true) {
		return false
	}
	for name, sm := range m.Headers {
		v, ok := refLookup(r, name)
		if !refCond(sm, v, ok) {
			return false
		}
	}
	return true
}

// refSubsetsOf returns the subsets route rt may choose: every
// destination's, or those with a positive weight when weights are set.
func refSubsetsOf(rt Route) []string {
	var out []string
	for _, d := range rt.Destinations {
		if d.Weight == nil || *d.Weight > 0 {
			out = append(out, d.Subset)
		}
	}
	return out
}

// refTable builds the table for doc: one instance per subset, carrying
// its labels, and one carrying none.
func refTable(t *testing.T, doc *Document) (*Table, string) {
	t.Helper()
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := Load(js)
	if err != nil {
		t.Fatalf("Load rejected a valid document: %v\n%s", err, js)
	}
	list := []discovery.Instance{{Address: "10.0.0.9:80"}}
	for i, s := range refSubsets {
		list = append(list, discovery.Instance{Address: fmt.Sprintf("10.0.0.%d:80", i+1), Labels: map[string]string{"subset": s}})
	}
	return NewTable(rules, map[string][]discovery.Instance{"svc": list}), string(js)
}

// checkAgainstReference routes r through table with Match, Route and
// Explain and fails unless each picks the route refMatch picks and one of
// the subsets that route may choose.
func checkAgainstReference(t *testing.T, table *Table, doc *Document, js string, r *Request) {
	t.Helper()
	svc := doc.Services["svc"]
	want := refMatch(svc, r)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s\nrequest %+v\ndocument %s", fmt.Sprintf(format, args...), r, js)
	}
	var d Decision
	err := table.Match("svc", r, &d)
	res, rerr := table.Route("svc", r, nil)
	e := table.Explain("svc", r, nil)
	if len(svc.Routes) == 0 {
		if err != nil || rerr != nil || d.RouteIndex != -1 || res.RouteIndex != -1 || e.RouteIndex != -1 {
			fail("service without routes: Match %d %v, Route %d %v, Explain %d", d.RouteIndex, err, res.RouteIndex, rerr, e.RouteIndex)
		}
		return
	}
	if want < 0 {
		if !isNoRoute(err) || !isNoRoute(rerr) || !isNoRoute(e.Err()) {
			fail("no route matches, but Match gives route %d (%v), Route %d (%v), Explain %d (%v)", d.RouteIndex, err, res.RouteIndex, rerr, e.RouteIndex, e.Err())
		}
		return
	}
	if err != nil || rerr != nil || e.Err() != nil {
		fail("route %d matches, but Match: %v, Route: %v, Explain: %v", want, err, rerr, e.Err())
	}
	name := svc.Routes[want].Name
	if name == "" {
		name = fmt.Sprintf("routes[%d]", want)
	}
	for _, got := range []struct {
		by    string
		index int
		name  string
	}{{"Match", d.RouteIndex, d.Route}, {"Route", res.RouteIndex, res.Route}, {"Explain", e.RouteIndex, e.Route}} {
		if got.index != want || got.name != name {
			fail("%s chose route %d (%q), the reference route %d (%q)", got.by, got.index, got.name, want, name)
		}
	}
	allowed := refSubsetsOf(svc.Routes[want])
	if !slices.Contains(allowed, d.Subset()) || !slices.Contains(allowed, res.Subset) || e.Chosen == nil || !slices.Contains(allowed, e.Chosen.Name) {
		fail("route %d may choose %v; Match chose %q, Route %q, Explain %v", want, allowed, d.Subset(), res.Subset, e.Chosen)
	}
	if res.Fallback || res.Instance == nil || res.Instance.Labels["subset"] != res.Subset {
		fail("Route result %+v: every subset has an instance, so it should serve", res)
	}
}

// isNoRoute reports whether err is a *NoRouteError for "svc".
func isNoRoute(err error) bool {
	nre, ok := err.(*NoRouteError)
	return ok && nre.Service == "svc"
}

// checkMatchesReference runs the fuzz body on one input: the document it
// describes, then a nil and an empty request, requests meeting routes all
// down the list, and the requests the rest of the input describes.
func checkMatchesReference(t *testing.T, data []byte) *Table {
	t.Helper()
	c := &fuzzChoices{data: data}
	doc := fuzzDocument(c)
	table, js := refTable(t, doc)
	reqs := []*Request{nil, {}}
	routes := doc.Services["svc"].Routes
	step := max(1, len(routes)/40) // at most about 40 witnesses, down the whole list
	for i := 0; i < len(routes); i += step {
		reqs = append(reqs, witness(routes[i], i))
	}
	for range 16 {
		reqs = append(reqs, fuzzRequest(c))
	}
	for _, r := range reqs {
		checkAgainstReference(t, table, doc, js, r)
	}
	return table
}

// FuzzRouteMatchesReference builds a rule document from the input —
// routes with exact, prefix, regex, present and absent header conditions
// (some on more headers than the per-call cache holds, in every
// spelling), path and method conditions, many routes so that the exact
// header index is built — loads it, and checks that for the requests the
// input describes the table picks the route a plain first-match scan
// written here picks, and a subset of that route.
func FuzzRouteMatchesReference(f *testing.F) {
	for _, seed := range refSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkMatchesReference(t, data) })
}

// refSeeds returns the seed inputs: a few short hand-made ones and
// pseudo-random ones of every size class, among them long route lists.
func refSeeds() [][]byte {
	seeds := [][]byte{
		{},
		{1, 0, 1, 0, 0},   // one route, exact x-env ""
		{200, 1, 2, 3, 4}, // 80 routes, then zeros: identical routes
		{255, 0xff, 0xc0}, // 135 routes
		[]byte("\x05staging"),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, first := range []byte{3, 12, 100, 130, 140, 170, 220, 255} {
		b := make([]byte, 1+rng.IntN(768))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		b[0] = first
		seeds = append(seeds, b)
	}
	return seeds
}

// TestRouteMatchesReferenceSeeds runs the fuzz body over the seeds in
// every plain `go test`, and checks that they reach the route index.
func TestRouteMatchesReferenceSeeds(t *testing.T) {
	indexed := 0
	for i, seed := range refSeeds() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			table := checkMatchesReference(t, seed)
			st, _ := table.services.Get("svc")
			if st.rules.index != nil {
				indexed++
			}
		})
	}
	if indexed < 4 {
		t.Fatalf("only %d seeds build a route index", indexed)
	}
}

// TestLoadJSONCharactersYAMLForbids loads JSON documents holding, unescaped
// in strings, characters JSON allows and YAML does not or reads as line
// breaks: FuzzRouteMatchesReference found that Load rejected DEL and C1
// controls ("control characters are not allowed"), which encoding/json
// writes unescaped, and NEL broke keys and turned into a space in values.
func TestLoadJSONCharactersYAMLForbids(t *testing.T) {
	for _, v := range []string{"\x7f", "a\u0080b", "\u009f", "\u0085", "a\u2028b\u2029", "\ufffe", "\uffff", "x\x7f\\\"y"} {
		doc := &Document{APIVersion: APIVersion, Services: map[string]Service{"svc": {
			Subsets: map[string]Subset{"s": {Labels: map[string]string{"k" + v: v}}},
			Routes:  []Route{{Match: &Match{Headers: map[string]StringMatch{"x-env": {Exact: &v}}}, Destinations: []Destination{{Subset: "s"}}}},
		}}}
		js, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		// encoding/json escapes these two; other writers need not.
		js = bytes.ReplaceAll(js, []byte(`\u2028`), []byte("\u2028"))
		js = bytes.ReplaceAll(js, []byte(`\u2029`), []byte("\u2029"))
		rules, err := Load(js)
		if err != nil {
			t.Errorf("Load(%q): %v", js, err)
			continue
		}
		got := rules.Document().Services["svc"]
		if e := got.Routes[0].Match.Headers["x-env"].Exact; *e != v || got.Subsets["s"].Labels["k"+v] != v {
			t.Errorf("Load(%q) read exact %q and labels %q, want %q", js, *e, got.Subsets["s"].Labels, v)
		}
	}
}
