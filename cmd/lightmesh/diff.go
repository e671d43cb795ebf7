package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// change is one difference between two rule documents that matters to
// traffic.
type change struct {
	// Path names the place, as validation errors do:
	// services.user-api.routes["canary"].destinations[0].weight.
	Path string `json:"path"`
	// Kind is added, removed, changed or moved.
	Kind string `json:"kind"`
	// Old and New are the values before and after ("" when added or
	// removed).
	Old string `json:"old,omitempty"`
	New string `json:"new,omitempty"`
}

func runDiff(_ context.Context, c *cli, args []string) error {
	fs := newFlags(c, "diff")
	out := outputFlag(fs, "text", "json", "yaml")
	service := serviceFlag(fs)
	defaultsFile := fs.String("defaults", "", "with --service: the defaults document (_defaults) both versions are composed with, as the meshes compose them")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if err := checkOutput(*out, "text", "json", "yaml"); err != nil {
		return err
	}
	if len(rest) != 2 {
		fs.Usage()
		return exitError{2}
	}
	// Exit like diff(1): 0 without differences, 1 with, 2 on trouble.
	var loaded [2]*router.Rules
	for i, name := range rest {
		data, err := os.ReadFile(name)
		if err == nil {
			loaded[i], err = load(*service, data)
			if err != nil {
				c.printProblems(name, err)
				err = fmt.Errorf("%s is invalid: the mesh rejects it", name)
			}
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "lightmesh diff: %v\n", err)
			return exitError{2}
		}
	}
	if *defaultsFile != "" {
		if *service == "" || *service == rules.DefaultsName {
			fmt.Fprintln(c.stderr, "lightmesh diff: --defaults goes with --service S, the per-service document of S")
			return exitError{2}
		}
		data, err := os.ReadFile(*defaultsFile)
		var defaults *router.Rules
		if err == nil {
			if defaults, err = router.LoadPart("", data); err != nil {
				c.printProblems(*defaultsFile, err)
				err = fmt.Errorf("%s is invalid: the mesh rejects it", *defaultsFile)
			}
		}
		for i := range loaded {
			if err == nil {
				loaded[i], err = router.Compose(defaults.Document(), loaded[i].Document())
			}
		}
		if err != nil {
			fmt.Fprintf(c.stderr, "lightmesh diff: %v\n", err)
			return exitError{2}
		}
	}
	changes := diffRules(loaded[0], loaded[1])
	if *out != "text" {
		if changes == nil {
			changes = []change{}
		}
		if err := writeStructured(c.stdout, *out, changes); err != nil {
			return err
		}
	} else {
		writeChanges(c.stdout, changes)
	}
	if len(changes) > 0 {
		return exitError{1}
	}
	return nil
}

// writeChanges prints changes one per line, or says there are none.
func writeChanges(w io.Writer, changes []change) {
	if len(changes) == 0 {
		fmt.Fprintln(w, "no change for traffic")
		return
	}
	for _, ch := range changes {
		switch ch.Kind {
		case "added":
			fmt.Fprintf(w, "+ %s: %s\n", ch.Path, ch.New)
		case "removed":
			fmt.Fprintf(w, "- %s: %s\n", ch.Path, ch.Old)
		case "moved":
			fmt.Fprintf(w, "~ %s: moved from position %s to %s (first match wins)\n", ch.Path, ch.Old, ch.New)
		default:
			fmt.Fprintf(w, "~ %s: %s → %s\n", ch.Path, ch.Old, ch.New)
		}
	}
}

// diffRules returns what changes for traffic from old to new: services,
// subsets, routes and inbound limits added or removed, routes reordered,
// every condition or destination that differs, and every setting in
// force (router.Rules.InForce: the defaults and built-in defaults
// included) that differs, for each service either document names and for the
// services neither names. Formatting, comments, key order and settings
// written out with the value they would take anyway are not changes.
func diffRules(oldRules, newRules *router.Rules) []change {
	old, new := oldRules.Document(), newRules.Document()
	var out []change
	for _, name := range slices.Sorted(maps.Keys(union(old.Services, new.Services))) {
		path := "services." + name
		o, inOld := old.Services[name]
		n, inNew := new.Services[name]
		switch {
		case !inOld:
			out = append(out, change{Path: path, Kind: "added", New: summary(n)})
		case !inNew:
			out = append(out, change{Path: path, Kind: "removed", Old: summary(o)})
		default:
			for _, sub := range slices.Sorted(maps.Keys(union(o.Subsets, n.Subsets))) {
				oldSub, inOld := o.Subsets[sub]
				newSub, inNew := n.Subsets[sub]
				sp := path + ".subsets." + sub
				switch {
				case !inOld:
					out = append(out, change{Path: sp, Kind: "added", New: "labels " + labels(newSub.Labels)})
				case !inNew:
					out = append(out, change{Path: sp, Kind: "removed", Old: "labels " + labels(oldSub.Labels)})
				case labels(oldSub.Labels) != labels(newSub.Labels):
					out = append(out, change{Path: sp + ".labels", Kind: "changed", Old: labels(oldSub.Labels), New: labels(newSub.Labels)})
				}
			}
			out = append(out, diffRoutes(path, o.Routes, n.Routes)...)
			out = append(out, diffValues(path+".inbound", inbound(o.Inbound, oldRules.InForce(name)), inbound(n.Inbound, newRules.InForce(name)))...)
		}
		out = append(out, diffInForce(path, o.Routes, n.Routes, oldRules.InForce(name), newRules.InForce(name))...)
	}
	// The services neither document names run on the defaults.
	out = append(out, diffInForce("defaults", nil, nil, oldRules.InForce(""), newRules.InForce(""))...)
	return out
}

// diffInForce compares what is in force for one service: the settings
// of its calls, then those of each route that has settings of its own
// in either version (routes by name, unnamed ones by position).
func diffInForce(path string, oldRoutes, newRoutes []router.Route, old, new *router.InForce) []change {
	type section struct {
		name     string
		old, new any
	}
	sections := func(p string, o, n router.CallInForce) []section {
		return []section{{p + "timeout", o.Timeout, n.Timeout}, {p + "retry", o.Retry, n.Retry}, {p + "rateLimit", o.RateLimit, n.RateLimit}}
	}
	secs := sections("", old.Call, new.Call)
	secs = append(secs, section{"breaker", old.Breaker, new.Breaker}, section{"outlierDetection", old.OutlierDetection, new.OutlierDetection},
		section{"loadBalancer", balancer(old.LoadBalancer), balancer(new.LoadBalancer)}, section{"slowStart", old.SlowStart, new.SlowStart},
		section{"lanes", old.Lanes, new.Lanes},
		section{"serverID", orNil(old.ServerID), orNil(new.ServerID)}, section{"authorization", old.Authorization, new.Authorization})
	var out []change
	for _, s := range secs {
		out = append(out, diffValues(path+"."+s.name, s.old, s.new)...)
	}
	byKey := func(routes []router.Route, in *router.InForce) map[string]router.CallInForce {
		m := map[string]router.CallInForce{}
		for i, r := range in.Routes {
			if i < len(routes) {
				m[routeKey(routes, i)] = r
			}
		}
		return m
	}
	or, nr := byKey(oldRoutes, old), byKey(newRoutes, new)
	for _, k := range slices.Sorted(maps.Keys(union(or, nr))) {
		o, inOld := or[k]
		n, inNew := nr[k]
		if !inOld || !inNew {
			continue // an added or removed route is reported as such
		}
		o.Route, n.Route = "", ""
		if reflect.DeepEqual(o, old.Call) && reflect.DeepEqual(n, new.Call) {
			continue // the route takes the service's settings, before and after
		}
		for _, s := range sections(".", o, n) {
			out = append(out, diffValues(path+".routes["+k+"]"+s.name, s.old, s.new)...)
		}
	}
	return out
}

// inboundInForce is an inbound route as it applies: its conditions and
// its limit in force (the burst filled in).
type inboundInForce struct {
	Name      string                  `json:"name"`
	Match     *router.Match           `json:"match,omitempty"`
	RateLimit router.RateLimitInForce `json:"rateLimit"`
}

// inbound returns the inbound routes of a service as they apply, in the
// order they are tried (the first that matches limits the request).
func inbound(routes []router.InboundRoute, in *router.InForce) []inboundInForce {
	var out []inboundInForce
	for i, r := range routes {
		ib := inboundInForce{Name: r.Name, Match: r.Match}
		if i < len(in.Inbound) {
			ib.Name, ib.RateLimit = in.Inbound[i].Name, in.Inbound[i].RateLimit
		}
		out = append(out, ib)
	}
	return out
}

// diffRoutes compares routes by name (the position for unnamed ones):
// added, removed, moved among the routes both have, and changed.
func diffRoutes(path string, old, new []router.Route) []change {
	key := routeKey
	index := func(rs []router.Route) map[string]int {
		m := map[string]int{}
		for i := range rs {
			m[key(rs, i)] = i
		}
		return m
	}
	oi, ni := index(old), index(new)
	var out []change
	var common []string // in old order
	for i := range old {
		k := key(old, i)
		if _, ok := ni[k]; !ok {
			out = append(out, change{Path: path + ".routes[" + k + "]", Kind: "removed", Old: routeSummary(old[i])})
			continue
		}
		common = append(common, k)
	}
	newOrder := slices.Clone(common)
	slices.SortFunc(newOrder, func(a, b string) int { return ni[a] - ni[b] })
	for i, k := range common {
		if newOrder[i] != k {
			// Relative order changed: report each route whose position
			// among the common ones changed.
			for j, kk := range newOrder {
				if common[j] != kk {
					out = append(out, change{Path: path + ".routes[" + kk + "]", Kind: "moved", Old: strconv.Itoa(oi[kk]), New: strconv.Itoa(ni[kk])})
				}
			}
			break
		}
	}
	for _, k := range common {
		// The route's timeout, retry and rateLimit are compared in force.
		o, n := readAsMatched(old[oi[k]]), readAsMatched(new[ni[k]])
		o.Timeout, o.Retry, o.RateLimit, n.Timeout, n.Retry, n.RateLimit = 0, nil, nil, 0, nil, nil
		if slices.Equal(shares(o.Destinations), shares(n.Destinations)) {
			// The same split, written differently (1:1 or none).
			for _, ds := range [][]router.Destination{o.Destinations, n.Destinations} {
				for i := range ds {
					ds[i].Weight = nil
				}
			}
		}
		out = append(out, diffValues(path+".routes["+k+"]", o, n)...)
	}
	for i := range new {
		if k := key(new, i); !slices.Contains(common, k) {
			out = append(out, change{Path: path + ".routes[" + k + "]", Kind: "added", New: routeSummary(new[i])})
		}
	}
	return out
}

// readAsMatched returns a copy of r written as the router reads it:
// header names in lower case (they match in any case), methods in upper
// case and in order (a set).
func readAsMatched(r router.Route) router.Route {
	r.Destinations = slices.Clone(r.Destinations)
	if r.Match == nil {
		return r
	}
	m := *r.Match
	if m.Headers != nil {
		m.Headers = make(map[string]router.StringMatch, len(r.Match.Headers))
		for name, sm := range r.Match.Headers {
			m.Headers[strings.ToLower(name)] = sm
		}
	}
	if m.Methods != nil {
		m.Methods = make([]string, len(r.Match.Methods))
		for i, meth := range r.Match.Methods {
			m.Methods[i] = strings.ToUpper(meth)
		}
		slices.Sort(m.Methods)
		m.Methods = slices.Compact(m.Methods)
	}
	r.Match = &m
	return r
}

// shares returns each destination's share of the route's traffic, in
// millionths: an omitted weight is an equal split.
func shares(ds []router.Destination) []int64 {
	total := int64(0)
	for _, d := range ds {
		total += int64(weightOf(d))
	}
	out := make([]int64, len(ds))
	for i, d := range ds {
		if total > 0 {
			out[i] = int64(weightOf(d)) * 1_000_000 / total
		}
	}
	return out
}

func weightOf(d router.Destination) int {
	if d.Weight == nil {
		return 1
	}
	return *d.Weight
}

// routeKey names route i of rs in a change's path: its name quoted, or
// its position when it has none.
func routeKey(rs []router.Route, i int) string {
	if rs[i].Name != "" {
		return strconv.Quote(rs[i].Name)
	}
	return strconv.Itoa(i)
}

// diffValues compares two sections field by field through their JSON
// form, which is how the document writes them.
func diffValues(path string, old, new any) []change {
	o, n := flatten(old), flatten(new)
	switch {
	case len(o) == 0 && len(n) == 0:
		return nil
	case len(o) == 0:
		return []change{{Path: path, Kind: "added", New: compact(new)}}
	case len(n) == 0:
		return []change{{Path: path, Kind: "removed", Old: compact(old)}}
	}
	var out []change
	for _, k := range slices.Sorted(maps.Keys(union(o, n))) {
		ov, inOld := o[k]
		nv, inNew := n[k]
		p := path + k
		switch {
		case !inOld:
			out = append(out, change{Path: p, Kind: "added", New: nv})
		case !inNew:
			out = append(out, change{Path: p, Kind: "removed", Old: ov})
		case ov != nv:
			out = append(out, change{Path: p, Kind: "changed", Old: ov, New: nv})
		}
	}
	return out
}

// orNil is s, or nil (no setting) when it is empty.
func orNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// balancer is lb, round-robin when empty (a service without a policy).
func balancer(lb string) string {
	if lb == "" {
		return "round-robin"
	}
	return lb
}

// compact returns v's JSON form on one line.
func compact(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// flatten returns v's JSON form as path suffix → scalar value:
// ".match.headers.x-env.exact" → `"staging"`.
func flatten(v any) map[string]string {
	out := map[string]string{}
	data, err := json.Marshal(v)
	if err != nil {
		return out
	}
	var tree any
	if json.Unmarshal(data, &tree) != nil {
		return out
	}
	var walk func(prefix string, t any)
	walk = func(prefix string, t any) {
		switch t := t.(type) {
		case map[string]any:
			for k, v := range t {
				walk(prefix+"."+k, v)
			}
		case []any:
			for i, v := range t {
				walk(fmt.Sprintf("%s[%d]", prefix, i), v)
			}
		case nil:
		default:
			b, _ := json.Marshal(t)
			out[prefix] = string(b)
		}
	}
	walk("", tree)
	return out
}

func summary(s router.Service) string {
	parts := []string{fmt.Sprintf("%d routes", len(s.Routes)), fmt.Sprintf("%d subsets", len(s.Subsets))}
	for _, sec := range []struct {
		name string
		set  bool
	}{{"timeout", s.Timeout != 0}, {"retry", s.Retry != nil}, {"breaker", s.Breaker != nil}, {"outlierDetection", s.OutlierDetection != nil}, {"rateLimit", s.RateLimit != nil}} {
		if sec.set {
			parts = append(parts, sec.name)
		}
	}
	return strings.Join(parts, ", ")
}

func routeSummary(r router.Route) string {
	var dests []string
	for _, d := range r.Destinations {
		w := ""
		if d.Weight != nil {
			w = fmt.Sprintf(" %d", *d.Weight)
		}
		dests = append(dests, d.Subset+w)
	}
	m := "every request"
	if r.Match != nil {
		b, _ := json.Marshal(r.Match)
		m = string(b)
	}
	return fmt.Sprintf("%s → %s", m, strings.Join(dests, ", "))
}

func labels(l map[string]string) string {
	if len(l) == 0 {
		return "{} (every instance)"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

// union returns the keys of a and b.
func union[V, W any](a map[string]V, b map[string]W) map[string]struct{} {
	out := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		out[k] = struct{}{}
	}
	for k := range b {
		out[k] = struct{}{}
	}
	return out
}
