package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lightmesh/lightmesh/router"
)

func runImport(_ context.Context, c *cli, args []string) error {
	if len(args) == 0 || args[0] != "istio" {
		fmt.Fprintln(c.stderr, "usage: lightmesh import istio [--strict] [--trust-domain TD] FILE... (VirtualService, DestinationRule, AuthorizationPolicy, PeerAuthentication)")
		return exitError{2}
	}
	fs := newFlags(c, "import")
	strict := fs.Bool("strict", false, "exit non-zero when any Istio field had to be left out")
	trustDomain := fs.String("trust-domain", istioTrustDomain, "the mesh's trust domain (Istio's meshConfig.trustDomain): a policy's namespaces match the SPIFFE IDs spiffe://TD/ns/NAME/*")
	files, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fs.Usage()
		return exitError{2}
	}
	conv := newIstioConverter()
	conv.trustDomain = *trustDomain
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		if err := conv.add(name, data); err != nil {
			return err
		}
	}
	if conv.err != nil {
		return conv.err
	}
	doc, err := conv.document()
	if err != nil {
		return err
	}
	if _, err := router.Load(doc); err != nil {
		// A conversion the mesh rejects is this command's bug or input
		// the conversion cannot express; say which field.
		return fmt.Errorf("the converted document is invalid: %v", err)
	}
	if _, err := c.stdout.Write(doc); err != nil {
		return err
	}
	for _, n := range conv.written {
		fmt.Fprintf(c.stderr, "written out: %s\n", n)
	}
	for _, n := range conv.leftOut {
		fmt.Fprintf(c.stderr, "left out: %s\n", n)
	}
	if len(conv.leftOut) > 0 {
		fmt.Fprintf(c.stderr, "lightmesh import istio: %d Istio fields have no lightmesh meaning and were left out (listed above)\n", len(conv.leftOut))
		if *strict {
			return errReported
		}
	}
	return nil
}

// istioConverter turns VirtualServices and DestinationRules into one rule
// document, listing every field it could not carry over.
type istioConverter struct {
	services map[string]*router.Service
	leftOut  []string
	// written lists the Istio defaults written out in the document,
	// which lightmesh would otherwise not apply.
	written []string
	// namespaces holds the namespace each service was converted from and
	// the resource that said so: two namespaces cannot share a service.
	namespaces map[string]namespaceOf
	// namespace is the namespace of the resource being converted.
	namespace string
	label     string
	err       error
	// authzs collects, by service, what PeerAuthentications and
	// AuthorizationPolicies say about its callers.
	authzs map[string]*authzOf
	// wide are the security resources without a selector, applied by
	// document to the services of their namespace.
	wide []*widePolicy
	// trustDomain is where namespaces' SPIFFE IDs are (--trust-domain).
	trustDomain string
}

// namespaceOf is the namespace a service came from, and the resource.
type namespaceOf struct{ namespace, from string }

func newIstioConverter() *istioConverter {
	return &istioConverter{services: map[string]*router.Service{}, namespaces: map[string]namespaceOf{}, trustDomain: istioTrustDomain}
}

// node is a decoded YAML mapping with its path in its file, for taking its
// fields one by one and reporting the rest.
type node struct {
	c    *istioConverter
	path string
	m    map[string]any
	used map[string]bool
}

func (c *istioConverter) node(path string, v any) *node {
	m, _ := v.(map[string]any)
	return &node{c: c, path: path, m: m, used: map[string]bool{}}
}

// take returns the field key and marks it converted.
func (n *node) take(key string) (any, bool) {
	v, ok := n.m[key]
	if ok {
		n.used[key] = true
	}
	return v, ok
}

func (n *node) str(key string) string {
	v, _ := n.take(key)
	s, _ := v.(string)
	return s
}

func (n *node) child(key string) *node {
	v, _ := n.take(key)
	return n.c.node(n.path+"."+key, v)
}

func (n *node) list(key string) []any {
	v, _ := n.take(key)
	l, _ := v.([]any)
	return l
}

// unused reports whether some field was not taken.
func (n *node) unused() bool {
	for k := range n.m {
		if !n.used[k] {
			return true
		}
	}
	return false
}

// done reports every field not taken as left out.
func (n *node) done() {
	for _, k := range sortedKeys(n.m) {
		if !n.used[k] {
			n.c.leave(n.path+"."+k, "no lightmesh equivalent")
		}
	}
}

func (c *istioConverter) leave(path, why string) {
	c.leftOut = append(c.leftOut, path+": "+why)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// add converts every VirtualService and DestinationRule in data (YAML,
// several documents separated by ---, or a List of them as
// kubectl get vs,dr -o yaml prints).
func (c *istioConverter) add(file string, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for i := 0; ; i++ {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %v", file, i, err)
		}
		if obj == nil {
			continue
		}
		if obj["kind"] == "List" {
			items, ok := obj["items"].([]any)
			if !ok && obj["items"] != nil {
				return fmt.Errorf("%s: document %d: a List whose items are not a list", file, i)
			}
			for j, item := range items {
				m, _ := item.(map[string]any)
				if err := c.object(file, fmt.Sprintf("document %d items[%d]", i, j), m); err != nil {
					return err
				}
			}
			continue
		}
		if err := c.object(file, fmt.Sprintf("document %d", i), obj); err != nil {
			return err
		}
	}
}

// object converts one Istio resource; where names it in file.
func (c *istioConverter) object(file, where string, obj map[string]any) error {
	top := c.node("", obj)
	kind := top.str("kind")
	api := top.str("apiVersion")
	meta := top.child("metadata")
	name := meta.str("name")
	c.namespace = meta.str("namespace")
	meta.take("labels")
	meta.take("annotations")
	meta.take("resourceVersion")
	meta.take("uid")
	meta.take("generation")
	meta.take("creationTimestamp")
	meta.take("managedFields")
	label := fmt.Sprintf("%s: %s %s", file, kind, name)
	if c.namespace != "" {
		label = fmt.Sprintf("%s: %s %s/%s", file, kind, c.namespace, name)
	}
	c.label = label
	if !strings.HasPrefix(api, "networking.istio.io/") && !strings.HasPrefix(api, "security.istio.io/") {
		return fmt.Errorf("%s: %s: apiVersion %q, kind %q: want an Istio VirtualService or DestinationRule (networking.istio.io), AuthorizationPolicy or PeerAuthentication (security.istio.io), or a List of them", file, where, api, kind)
	}
	spec := top.child("spec")
	spec.path = label + " spec"
	switch kind {
	case "VirtualService":
		c.virtualService(spec)
	case "DestinationRule":
		c.destinationRule(spec)
	case "AuthorizationPolicy":
		c.authorizationPolicy(spec)
	case "PeerAuthentication":
		c.peerAuthentication(spec)
	default:
		c.leave(label, "only VirtualService, DestinationRule, AuthorizationPolicy and PeerAuthentication are converted")
		return c.err
	}
	top.path = label
	top.take("status")
	top.done()
	return c.err
}

// serviceName is the lightmesh service for an Istio host: the short name
// of a Kubernetes service host (reviews.prod.svc.cluster.local → reviews).
func serviceName(host string) string {
	if i := strings.Index(host, ".svc"); i > 0 {
		host = host[:i]
	}
	name, _, _ := strings.Cut(host, ".")
	return name
}

func (c *istioConverter) service(host string) *router.Service {
	name := serviceName(host)
	ns := c.namespace
	if parts := strings.Split(host, "."); len(parts) > 1 {
		ns = parts[1] // reviews.prod or reviews.prod.svc.cluster.local
	}
	if prev, ok := c.namespaces[name]; ok && ns != "" && prev.namespace != "" && prev.namespace != ns && c.err == nil {
		// lightmesh names services without namespaces: converting both
		// would let one namespace's rules replace the other's.
		c.err = fmt.Errorf("%s is service %s in namespace %s, and %s is %s in namespace %s: lightmesh names services without a namespace, so one would overwrite the other; convert one namespace at a time", c.label, name, ns, prev.from, name, prev.namespace)
	}
	if _, ok := c.namespaces[name]; !ok || c.namespaces[name].namespace == "" {
		c.namespaces[name] = namespaceOf{ns, c.label}
	}
	s := c.services[name]
	if s == nil {
		s = &router.Service{}
		c.services[name] = s
	}
	return s
}

func (c *istioConverter) virtualService(spec *node) {
	var hosts []string
	for _, h := range spec.list("hosts") {
		if s, ok := h.(string); ok {
			hosts = append(hosts, s)
		}
	}
	if len(hosts) == 0 {
		c.leave(spec.path+".hosts", "no host: nothing to convert")
	}
	if _, ok := spec.take("gateways"); ok {
		c.leave(spec.path+".gateways", "lightmesh routes calls between services; gateways have no meaning")
	}
	var routes []router.Route
	for i, h := range spec.list("http") {
		routes = append(routes, c.httpRoute(spec.c.node(fmt.Sprintf("%s.http[%d]", spec.path, i), h), hosts)...)
	}
	for _, k := range []string{"tcp", "tls"} {
		if _, ok := spec.take(k); ok {
			c.leave(spec.path+"."+k, "lightmesh routes HTTP and gRPC calls only")
		}
	}
	spec.take("exportTo")
	spec.done()
	for _, h := range hosts {
		s := c.service(h)
		s.Routes = append(s.Routes, routes...)
	}
}

// httpRoute converts one http[] entry: one lightmesh route per match
// (Istio ORs a route's matches; a lightmesh route has one), or one
// catch-all route without matches.
func (c *istioConverter) httpRoute(n *node, hosts []string) []router.Route {
	base := router.Route{Name: n.str("name")}
	for i, d := range n.list("route") {
		dn := c.node(fmt.Sprintf("%s.route[%d]", n.path, i), d)
		dest := dn.child("destination")
		host := dest.str("host")
		subset := dest.str("subset")
		if _, ok := dest.take("port"); ok {
			c.leave(dest.path+".port", "lightmesh sends to the port each instance registers")
		}
		dest.done()
		if host != "" && len(hosts) > 0 && serviceName(host) != serviceName(hosts[0]) {
			c.leave(dest.path+".host", fmt.Sprintf("sends to another service (%s); lightmesh routes within the service called", host))
			continue
		}
		if subset == "" {
			subset = "all"
			for _, h := range hosts {
				s := c.service(h)
				if s.Subsets == nil {
					s.Subsets = map[string]router.Subset{}
				}
				if _, ok := s.Subsets[subset]; !ok {
					s.Subsets[subset] = router.Subset{Labels: map[string]string{}}
				}
			}
		}
		rd := router.Destination{Subset: subset}
		if w, ok := dn.take("weight"); ok {
			if wi, ok := w.(int); ok {
				rd.Weight = &wi
			}
		}
		for _, k := range []string{"headers"} {
			if _, ok := dn.take(k); ok {
				c.leave(dn.path+"."+k, "lightmesh does not rewrite headers")
			}
		}
		dn.done()
		base.Destinations = append(base.Destinations, rd)
	}
	// A weight on some destinations only: Istio gives the others 0.
	if slices.ContainsFunc(base.Destinations, func(d router.Destination) bool { return d.Weight != nil }) {
		for i := range base.Destinations {
			if base.Destinations[i].Weight == nil {
				zero := 0
				base.Destinations[i].Weight = &zero
			}
		}
	}
	if t := n.str("timeout"); t != "" {
		if d, err := parseDuration(t); err == nil && (d >= 0 || d == router.Off) {
			base.Timeout = d
		} else if err == nil {
			c.leave(n.path+".timeout", fmt.Sprintf("%q is negative", t))
		} else {
			c.leave(n.path+".timeout", err.Error())
		}
	}
	if _, ok := n.m["retries"]; ok {
		base.Retry = c.retries(n.child("retries"))
	} else {
		// Istio retries a route without retries twice; lightmesh would
		// not (or would take a default document's retry).
		base.Retry = &router.Retry{Attempts: 2, On: istioDefaultRetryOn()}
		c.written = append(c.written, n.path+".retries: none set, so Istio's default is written out: attempts: 2 on connect-failure, cancelled, unavailable, 503 (refused-stream has no lightmesh equivalent)")
	}
	for _, k := range []string{"fault", "mirror", "mirrorPercentage", "mirrorPercent", "mirrors", "rewrite", "redirect", "directResponse", "headers", "corsPolicy", "delegate"} {
		if _, ok := n.take(k); ok {
			c.leave(n.path+"."+k, "no lightmesh equivalent")
		}
	}
	matches := n.list("match")
	n.done()
	if len(base.Destinations) == 0 {
		c.leave(n.path, "no destination lightmesh can send to: the route was left out")
		return nil
	}
	if len(matches) == 0 {
		return []router.Route{base}
	}
	var out []router.Route
	for i, m := range matches {
		r := base
		if len(matches) > 1 && r.Name != "" {
			r.Name = fmt.Sprintf("%s-%d", base.Name, i)
		}
		match, ok := c.match(c.node(fmt.Sprintf("%s.match[%d]", n.path, i), m))
		if !ok {
			continue
		}
		r.Match = match
		out = append(out, r)
	}
	return out
}

// match converts one HTTPMatchRequest; ok is false when a condition could
// not be carried over, since dropping it would widen the route.
func (c *istioConverter) match(n *node) (*router.Match, bool) {
	m := &router.Match{}
	ok := true
	n.take("name")
	if hs := n.child("headers"); hs.m != nil {
		m.Headers = map[string]router.StringMatch{}
		for _, k := range sortedKeys(hs.m) {
			sm, good := c.stringMatch(hs.child(k), true)
			ok = ok && good
			m.Headers[strings.ToLower(k)] = sm
		}
		hs.done()
	}
	if wh := n.child("withoutHeaders"); wh.m != nil {
		if m.Headers == nil {
			m.Headers = map[string]router.StringMatch{}
		}
		for _, k := range sortedKeys(wh.m) {
			inner := wh.child(k)
			if len(inner.m) > 0 {
				c.leave(inner.path, "only an empty condition (the header is absent) converts")
				ok = false
				continue
			}
			absent := false
			m.Headers[strings.ToLower(k)] = router.StringMatch{Present: &absent}
		}
		wh.done()
	}
	if _, has := n.m["uri"]; has {
		sm, good := c.stringMatch(n.child("uri"), false)
		ok = ok && good
		m.Path = &sm
	}
	if _, has := n.m["method"]; has {
		mn := n.child("method")
		if e := mn.str("exact"); e != "" {
			m.Methods = []string{e}
		} else {
			ok = false
		}
		mn.done()
	}
	// A condition left out (queryParams, sourceLabels, port...) would
	// widen the route.
	ok = ok && !n.unused()
	n.done()
	if !ok {
		c.leave(n.path, "a condition could not be converted, so the route it belongs to was left out (keeping it would match more requests)")
	}
	return m, ok
}

func (c *istioConverter) stringMatch(n *node, header bool) (router.StringMatch, bool) {
	var sm router.StringMatch
	if v, ok := n.take("exact"); ok {
		s := fmt.Sprint(v)
		sm.Exact = &s
	}
	if v, ok := n.take("prefix"); ok {
		s := fmt.Sprint(v)
		sm.Prefix = &s
	}
	if v, ok := n.take("regex"); ok {
		s := fmt.Sprint(v)
		sm.Regex = &s // RE2 matched against the whole value, as Istio does
	}
	unknown := n.unused()
	n.done()
	if unknown {
		return sm, false
	}
	if sm.Exact == nil && sm.Prefix == nil && sm.Regex == nil {
		if header && len(n.m) == 0 {
			present := true // Istio: an empty match means the header is present
			sm.Present = &present
			return sm, true
		}
		return sm, false
	}
	return sm, true
}

// istioDefaultRetryOn is what Istio retries on when retryOn is not set
// (connect-failure, refused-stream, unavailable, cancelled,
// retriable-status-codes: 503), in lightmesh's conditions; refused-stream
// has no equivalent.
func istioDefaultRetryOn() []string {
	return []string{"connect-failure", "cancelled", "unavailable", "503"}
}

// istioRetryOn maps Envoy's retry conditions to lightmesh's.
var istioRetryOn = map[string][]string{
	"5xx":                {"5xx"},
	"gateway-error":      {"502", "503", "504"},
	"connect-failure":    {"connect-failure"},
	"reset":              {"reset"},
	"retriable-4xx":      {"409"},
	"cancelled":          {"cancelled"},
	"deadline-exceeded":  {"deadline-exceeded"},
	"internal":           {"internal"},
	"resource-exhausted": {"resource-exhausted"},
	"unavailable":        {"unavailable"},
}

func (c *istioConverter) retries(n *node) *router.Retry {
	r := &router.Retry{}
	if v, ok := n.take("attempts"); ok {
		r.Attempts, _ = v.(int)
	}
	if t := n.str("perTryTimeout"); t != "" {
		if d, err := parseDuration(t); err == nil && (d >= 0 || d == router.Off) {
			r.PerTryTimeout = d
		} else if err == nil {
			c.leave(n.path+".perTryTimeout", fmt.Sprintf("%q is negative", t))
		} else {
			c.leave(n.path+".perTryTimeout", err.Error())
		}
	}
	if on := n.str("retryOn"); on == "" && r.Attempts > 0 {
		// lightmesh's own default list adds 502, 504, reset and
		// per-try-timeout: calls Istio would not send again.
		r.On = istioDefaultRetryOn()
		c.written = append(c.written, n.path+".retryOn: none set, so Istio's default is written out: connect-failure, cancelled, unavailable, 503 (refused-stream has no lightmesh equivalent)")
	} else if on != "" {
		for _, cond := range strings.Split(on, ",") {
			cond = strings.TrimSpace(cond)
			if mapped, ok := istioRetryOn[cond]; ok {
				r.On = append(r.On, mapped...)
			} else if len(cond) == 3 && cond[0] >= '1' && cond[0] <= '5' {
				r.On = append(r.On, cond) // a status code
			} else {
				c.leave(n.path+".retryOn", fmt.Sprintf("condition %q has no lightmesh equivalent", cond))
			}
		}
	}
	if _, ok := n.take("retryRemoteLocalities"); ok {
		c.leave(n.path+".retryRemoteLocalities", "lightmesh has no localities")
	}
	n.done()
	// attempts: 0 is written out: no retry, even where a defaults
	// document sets one.
	return r
}

func (c *istioConverter) destinationRule(spec *node) {
	host := spec.str("host")
	if host == "" {
		c.leave(spec.path+".host", "no host: nothing to convert")
		spec.done()
		return
	}
	s := c.service(host)
	for i, sub := range spec.list("subsets") {
		sn := c.node(fmt.Sprintf("%s.subsets[%d]", spec.path, i), sub)
		name := sn.str("name")
		labels := map[string]string{}
		ln := sn.child("labels")
		for _, k := range sortedKeys(ln.m) {
			ln.take(k)
			labels[k] = fmt.Sprint(ln.m[k])
		}
		if _, ok := sn.take("trafficPolicy"); ok {
			c.leave(sn.path+".trafficPolicy", "lightmesh applies protection per service, not per subset")
		}
		sn.done()
		if s.Subsets == nil {
			s.Subsets = map[string]router.Subset{}
		}
		s.Subsets[name] = router.Subset{Labels: labels}
	}
	if tp := spec.child("trafficPolicy"); tp.m != nil {
		if od := tp.child("outlierDetection"); od.m != nil {
			s.OutlierDetection = c.outlier(od)
		}
		if cp := tp.child("connectionPool"); cp.m != nil {
			c.leave(cp.path, "lightmesh limits calls by rate (rateLimit), not by connections or pending requests")
		}
		for _, k := range []string{"loadBalancer", "tls", "portLevelSettings", "tunnel", "proxyProtocol"} {
			if _, ok := tp.take(k); ok {
				c.leave(tp.path+"."+k, "no lightmesh equivalent")
			}
		}
		tp.done()
	}
	spec.take("exportTo")
	if _, ok := spec.take("workloadSelector"); ok {
		c.leave(spec.path+".workloadSelector", "the rules apply to every caller of the service")
	}
	spec.done()
}

// outlier converts Envoy's outlier detection (N consecutive errors eject
// an instance for baseEjectionTime) to an instance breaker: at least N
// calls within the interval, all of them failing. Istio sets one of
// Envoy's two detectors from consecutive5xxErrors (every 5xx, 5 when not
// set) and the other from consecutiveGatewayErrors (502, 503, 504); a
// lightmesh instance breaker is one detector, so when Istio runs both,
// the one not converted is named.
func (c *istioConverter) outlier(n *node) *router.Breaker {
	b := &router.Breaker{FailureRatio: 1}
	fiveXX, set5xx := c.count(n, "consecutive5xxErrors")
	gateway, setGateway := c.count(n, "consecutiveGatewayErrors")
	if _, ok := n.take("consecutiveErrors"); ok {
		c.leave(n.path+".consecutiveErrors", "deprecated, and ignored by Istio since 1.7: write consecutive5xxErrors or consecutiveGatewayErrors")
	}
	consecutive := fiveXX
	switch {
	case set5xx && fiveXX > 0 && setGateway && gateway > 0:
		c.leave(n.path+".consecutiveGatewayErrors", fmt.Sprintf("Envoy also ejects after %d consecutive gateway errors; lightmesh converts one detector per instance, consecutive5xxErrors'", gateway))
	case setGateway && gateway > 0:
		consecutive = gateway
		b.FailureStatus = []int{502, 503, 504}
		if !set5xx {
			c.leave(n.path+".consecutive5xxErrors", "not set, so Envoy also ejects after 5 consecutive 5xx; lightmesh converts one detector per instance, the gateway errors'")
		}
	case !set5xx:
		consecutive = 5 // Istio's default
	}
	if consecutive == 0 {
		// consecutive5xxErrors: 0 and no gateway errors: Istio ejects
		// nothing.
		c.written = append(c.written, n.path+".consecutive5xxErrors: 0 turns ejection off in Istio: no outlierDetection is written")
		n.take("interval")
		n.take("baseEjectionTime")
		n.take("maxEjectionPercent")
		n.done()
		return nil
	}
	b.MinRequests = consecutive
	// interval's default is Istio's (10s).
	if d, ok := c.ejectionDuration(n, "interval"); ok {
		b.Window = d
	}
	if d, ok := c.ejectionDuration(n, "baseEjectionTime"); ok {
		b.OpenBase = d
	} else {
		// lightmesh's own default is 1s.
		b.OpenBase = router.Duration(30 * time.Second)
		c.written = append(c.written, n.path+".baseEjectionTime: none set, so Istio's default is written out: 30s")
	}
	// Envoy caps an ejection at max_ejection_time, 300s or
	// baseEjectionTime when longer; lightmesh's own cap is 1m.
	b.OpenMax = max(b.OpenBase, router.Duration(300*time.Second))
	c.written = append(c.written, fmt.Sprintf("%s: Envoy's cap of an ejection is written out as openMax: %v (lightmesh doubles an ejection each time, where Envoy adds baseEjectionTime)", n.path, time.Duration(b.OpenMax)))
	switch p, ok := c.count(n, "maxEjectionPercent"); {
	case p > 0:
		b.MaxEjectionPercent = p
	case ok:
		// Istio does not send 0 to Envoy, whose default is 10%.
		b.MaxEjectionPercent = 10
		c.written = append(c.written, n.path+".maxEjectionPercent: 0 means Envoy's default in Istio, so it is written out: 10 (at least one instance)")
	default:
		b.MaxEjectionPercent = 10 // Istio's default
		c.written = append(c.written, n.path+".maxEjectionPercent: not set, so Istio's default is written out: 10 (at least one instance)")
	}
	for _, k := range []string{"minHealthPercent", "splitExternalLocalOriginErrors", "consecutiveLocalOriginFailures"} {
		if _, ok := n.take(k); ok {
			c.leave(n.path+"."+k, "no lightmesh equivalent: lightmesh ejects every instance whose breaker opens (a route's fallback catches a subset left empty)")
		}
	}
	n.done()
	return b
}

// count reads the count key of n: an integer of 0 or more, or a string
// of one (protojson reads a quoted integer). Another value is left out and
// named, and ok is false, as for a key not set.
func (c *istioConverter) count(n *node, key string) (i int, ok bool) {
	v, set := n.take(key)
	if !set || v == nil {
		return 0, false
	}
	switch v := v.(type) {
	case int:
		i, ok = v, true
	case string:
		parsed, err := strconv.Atoi(strings.TrimSpace(v))
		i, ok = parsed, err == nil
	}
	if !ok || i < 0 {
		c.leave(n.path+"."+key, fmt.Sprintf("%v is not a count (0 or more)", v))
		return 0, false
	}
	return i, true
}

// ejectionDuration reads the duration key of an outlierDetection, which
// Istio requires to be at least 1ms. Any other value is left out with its
// reason (a zero would be written as off, which the breaker's fields do
// not take), and ok is false, as for a key not set.
func (c *istioConverter) ejectionDuration(n *node, key string) (d router.Duration, ok bool) {
	v, set := n.take(key)
	if !set || v == nil {
		return 0, false
	}
	t, isString := v.(string)
	if !isString {
		c.leave(n.path+"."+key, fmt.Sprintf("%v is not a duration (write 30s, 1m)", v))
		return 0, false
	}
	d, err := parseDuration(t)
	if err == nil && d < router.Duration(time.Millisecond) {
		err = fmt.Errorf("%q is below Istio's minimum of 1ms", t)
	}
	if err != nil {
		c.leave(n.path+"."+key, err.Error())
		return 0, false
	}
	return d, true
}

// parseDuration reads an Istio duration ("2s", "0.5s", "100ms").
func parseDuration(s string) (router.Duration, error) {
	var d router.Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		return 0, err
	}
	return d, nil
}

// document returns the converted rule document as YAML.
func (c *istioConverter) document() ([]byte, error) {
	doc := router.Document{APIVersion: router.APIVersion, Services: map[string]router.Service{}}
	c.applyWide()
	for name, s := range c.services {
		if a := c.authzs[name]; a != nil {
			s.Authorization = a.authorization()
		}
		doc.Services[name] = *s
	}
	var b bytes.Buffer
	b.WriteString("# Converted from Istio by lightmesh import istio; check the fields it left out.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
