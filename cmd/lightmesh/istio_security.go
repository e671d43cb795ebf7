package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/lightmesh/lightmesh/router"
)

// istioTrustDomain is the trust domain Istio's principals and namespaces
// are in unless the mesh was installed with another: a principal
// cluster.local/ns/default/sa/sleep is the SPIFFE ID
// spiffe://cluster.local/ns/default/sa/sleep.
const istioTrustDomain = "cluster.local"

// authzOf collects what the security resources say about one service's
// callers; document turns it into the service's authorization section:
// the rules Istio evaluates first come first (STRICT, then DENY
// policies), the ALLOW policies after them, and the default deny when any
// ALLOW policy selects the service (Istio's order).
type authzOf struct {
	strict  bool
	denies  []router.AuthorizationRule
	allows  []router.AuthorizationRule
	allowed bool // an ALLOW policy selects the service
}

// widePolicy is a security resource without a selector: in Istio it
// applies to every workload of its namespace, and from the root
// namespace (istio-system) to every workload of the mesh.
type widePolicy struct {
	namespace, label string
	a                authzOf
}

// istioRootNamespace is where a policy without a selector applies to the
// whole mesh (Istio's default root namespace).
const istioRootNamespace = "istio-system"

// target returns what a security resource adds to, and its name for
// messages: the authorization of the service its selector names (see
// selected), or, without a selector, a widePolicy that document applies
// to every converted service of its namespace; nil when the resource
// applies to nothing lightmesh can name.
func (c *istioConverter) target(service string, wide bool) (*authzOf, string) {
	if wide {
		w := &widePolicy{namespace: c.namespace, label: c.label}
		c.wide = append(c.wide, w)
		return &w.a, "every service of namespace " + c.namespace
	}
	if service == "" {
		return nil, ""
	}
	c.service(service)
	return c.authz(service), service
}

// applyWide adds each policy without a selector to the services of its
// namespace converted here (of every namespace from the root one), as
// Istio applies it to the namespace's workloads; one whose namespace has
// no converted service is listed as left out.
func (c *istioConverter) applyWide() {
	names := make([]string, 0, len(c.services))
	for name := range c.services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, w := range c.wide {
		var to []string
		for _, name := range names {
			if w.namespace == istioRootNamespace || c.namespaces[name].namespace == w.namespace {
				to = append(to, name)
			}
		}
		scope := "namespace " + w.namespace
		if w.namespace == istioRootNamespace {
			scope = "the mesh (root namespace " + istioRootNamespace + ")"
		}
		if len(to) == 0 {
			c.leave(w.label+" spec", fmt.Sprintf("no selector: it applies to every workload of %s, and this import converts no service of it; convert it with the namespace's VirtualServices or DestinationRules", scope))
			continue
		}
		for _, name := range to {
			a := c.authz(name)
			a.strict = a.strict || w.a.strict
			a.denies = append(a.denies, w.a.denies...)
			a.allows = append(a.allows, w.a.allows...)
			a.allowed = a.allowed || w.a.allowed
		}
		c.written = append(c.written, fmt.Sprintf("%s spec: no selector, so it applies to every workload of %s: to the services of it converted here, %s", w.label, scope, strings.Join(to, ", ")))
	}
}

func (c *istioConverter) authz(service string) *authzOf {
	if c.authzs == nil {
		c.authzs = map[string]*authzOf{}
	}
	a := c.authzs[service]
	if a == nil {
		a = &authzOf{}
		c.authzs[service] = a
	}
	return a
}

// selected returns the service a security resource applies to: the value
// of its selector's app label (app.kubernetes.io/name also counts), or
// wide when it has no selector (it applies to its whole namespace, or
// the mesh). A selector by other labels only selects what lightmesh
// cannot name: it says so and returns "".
func (c *istioConverter) selected(spec *node) (name string, wide bool) {
	for _, k := range []string{"targetRef", "targetRefs"} {
		if _, ok := spec.take(k); ok {
			c.leave(spec.path+"."+k, "a policy attached to a waypoint or gateway has no lightmesh meaning; select the workload with selector.matchLabels.app")
			return "", false
		}
	}
	sel := spec.child("selector")
	ml := sel.child("matchLabels")
	if len(ml.m) == 0 {
		sel.done()
		return "", true
	}
	for _, k := range []string{"app", "app.kubernetes.io/name"} {
		if v, ok := ml.take(k); ok && name == "" {
			name = fmt.Sprint(v)
		}
	}
	for _, k := range sortedKeys(ml.m) {
		if !ml.used[k] {
			ml.take(k)
			c.leave(ml.path+"."+k, "lightmesh selects a service by name (the app label), not by other labels: the policy is applied to every instance of the service")
		}
	}
	sel.done()
	if name == "" {
		c.leave(spec.path+".selector", "no app label: lightmesh authorizes per service (the app label), so the policy is left out; select by app, or copy the rules to each service")
	}
	return name, false
}

// peerAuthentication converts mtls.mode: STRICT refuses callers without a
// certificate (a first rule deny callers [none]); PERMISSIVE is what a
// service without that rule does.
func (c *istioConverter) peerAuthentication(spec *node) {
	service, wide := c.selected(spec)
	mt := spec.child("mtls")
	mode := mt.str("mode")
	mt.done()
	if v, ok := spec.take("portLevelMtls"); ok {
		// A port that requires mutual TLS makes the whole service
		// require it (fail closed); other port modes have no effect.
		strictPort := false
		switch ports := v.(type) {
		case map[string]any:
			for _, p := range ports {
				strictPort = strictPort || portStrict(p)
			}
		case map[any]any:
			for _, p := range ports {
				strictPort = strictPort || portStrict(p)
			}
		}
		if strictPort && mode != "STRICT" {
			mode = "STRICT"
			c.leave(spec.path+".portLevelMtls", "lightmesh's mode is per server, not per port: a port's STRICT applies to the whole service (fail closed)")
		} else {
			c.leave(spec.path+".portLevelMtls", "lightmesh's mode is per server, not per port")
		}
	}
	spec.done()
	if service == "" && !wide {
		return
	}
	switch mode {
	case "STRICT":
		a, who := c.target(service, wide)
		a.strict = true
		c.written = append(c.written, fmt.Sprintf("%s.mtls.mode: STRICT is the first authorization rule of %s, deny callers [none] (403 / PermissionDenied for a caller without a certificate); serve with identity.Strict to refuse it at the handshake instead, and set the service's serverID to its servers' SPIFFE ID so callers use mutual TLS", spec.path, who))
	case "PERMISSIVE", "", "UNSET":
		// lightmesh's permissive listener accepts both; nothing to write.
	default:
		c.leave(spec.path+".mtls.mode", fmt.Sprintf("%s: lightmesh does not turn mutual TLS off by rule; serve that port without identity.Listen", mode))
	}
}

// portStrict reports whether one portLevelMtls entry is mode: STRICT.
func portStrict(p any) bool {
	m, _ := p.(map[string]any)
	return m["mode"] == "STRICT"
}

// authorizationPolicy converts one AuthorizationPolicy: each rule becomes
// one lightmesh rule per pair of source and operation (Istio ORs its
// sources and its operations; a lightmesh rule ANDs its lists). What has
// no lightmesh equivalent fails closed, as Istio does with what it does
// not understand: an ALLOW rule that needs it is left out (it allows
// nothing), a condition of a DENY rule is dropped (the rule denies more).
func (c *istioConverter) authorizationPolicy(spec *node) {
	service, wide := c.selected(spec)
	action := spec.str("action")
	if action == "" {
		action = "ALLOW"
	}
	if _, ok := spec.take("provider"); ok && action != "CUSTOM" {
		c.leave(spec.path+".provider", "only CUSTOM policies have a provider")
	}
	rules := spec.list("rules")
	spec.done()
	switch action {
	case "ALLOW", "DENY":
	case "AUDIT":
		c.leave(spec.path+".action", "AUDIT only logs; lightmesh counts refusals in lightmesh_authz_denied_total and has no audit log")
		return
	case "CUSTOM":
		// The external authorizer may refuse any call the rules match;
		// lightmesh cannot ask it, so it refuses them all (fail closed).
		c.leave(spec.path+".action", "CUSTOM: lightmesh cannot ask an external authorizer, so its rules become DENY rules: the calls it decides are refused (fail closed)")
		action = "DENY"
	default:
		c.leave(spec.path+".action", fmt.Sprintf("%s is not an Istio action; the policy is left out", action))
		return
	}
	a, _ := c.target(service, wide)
	if a == nil {
		return
	}
	if action == "ALLOW" {
		// Istio: with an ALLOW policy, a call no ALLOW rule matches is
		// refused (an ALLOW policy without rules allows nothing).
		a.allowed = true
	}
	for i, r := range rules {
		rn := c.node(fmt.Sprintf("%s.rules[%d]", spec.path, i), r)
		out, ok := c.authzRule(rn, action == "ALLOW")
		if !ok {
			continue
		}
		if action == "ALLOW" {
			a.allows = append(a.allows, out...)
		} else {
			a.denies = append(a.denies, out...)
		}
	}
}

// clause is one source or one operation: the lightmesh lists it gives,
// and whether it can be converted at all.
type clause struct {
	callers, paths, methods []string
	ok                      bool
}

// authzRule converts one rule; false when it is left out (an ALLOW rule
// with a condition lightmesh cannot express).
func (c *istioConverter) authzRule(rn *node, allow bool) ([]router.AuthorizationRule, bool) {
	action := "deny"
	if allow {
		action = "allow"
	}
	// drop reports a condition with no equivalent: it leaves an ALLOW
	// rule out, and is dropped from a DENY rule. It returns whether the
	// rule goes on.
	ok := true
	drop := func(path, what string) {
		if allow {
			c.leave(path, what+"; this ALLOW rule is left out, so it allows nothing (fail closed)")
			ok = false
		} else {
			c.leave(path, what+"; dropped from this DENY rule, which so denies more (fail closed)")
		}
	}
	if _, has := rn.take("when"); has {
		drop(rn.path+".when", "conditions on request attributes have no lightmesh equivalent")
	}
	var sources, ops []clause
	for j, f := range rn.list("from") {
		fn := c.node(fmt.Sprintf("%s.from[%d]", rn.path, j), f)
		sn := fn.child("source")
		fn.done()
		sources = append(sources, c.source(sn, drop))
	}
	for j, t := range rn.list("to") {
		tn := c.node(fmt.Sprintf("%s.to[%d]", rn.path, j), t)
		on := tn.child("operation")
		tn.done()
		ops = append(ops, c.operation(on, drop))
	}
	rn.done()
	if !ok {
		return nil, false
	}
	if len(sources) == 0 {
		sources = []clause{{ok: true}}
	}
	if len(ops) == 0 {
		ops = []clause{{ok: true}}
	}
	var out []router.AuthorizationRule
	for _, s := range sources {
		for _, o := range ops {
			if !s.ok || !o.ok {
				continue // a clause that matches nothing
			}
			out = append(out, router.AuthorizationRule{Action: action, Callers: s.callers, Paths: o.paths, Methods: o.methods})
		}
	}
	return out, true
}

// source converts one from[].source.
func (c *istioConverter) source(sn *node, drop func(path, what string)) clause {
	cl := clause{ok: true}
	var principals, namespaces []string
	for _, v := range sn.list("principals") {
		p, _ := v.(string)
		id, good := istioPrincipal(p)
		if !good {
			drop(sn.path+".principals", fmt.Sprintf("%q: lightmesh matches a SPIFFE ID exactly, under a path prefix (ns/default/*) or by trust domain, not by suffix or * alone", p))
			principals = nil
			break
		}
		principals = append(principals, id)
	}
	for _, v := range sn.list("namespaces") {
		ns, _ := v.(string)
		if ns == "" || strings.Contains(ns, "*") {
			drop(sn.path+".namespaces", fmt.Sprintf("%q: lightmesh matches a namespace by its SPIFFE IDs (spiffe://%s/ns/NAME/*), exactly", ns, c.trustDomain))
			namespaces = nil
			break
		}
		namespaces = append(namespaces, fmt.Sprintf("spiffe://%s/ns/%s/*", c.trustDomain, ns))
	}
	switch {
	case len(principals) > 0 && len(namespaces) > 0:
		// Istio ANDs them; keep the principals within the namespaces.
		for _, p := range principals {
			for _, ns := range namespaces {
				if strings.HasPrefix(p, strings.TrimSuffix(ns, "*")) {
					cl.callers = append(cl.callers, p)
					break
				}
			}
		}
		if len(cl.callers) == 0 {
			cl.ok = false // no principal is in those namespaces: matches nothing
		}
	case len(principals) > 0:
		cl.callers = principals
	case len(namespaces) > 0:
		cl.callers = namespaces
		td := c.trustDomain
		if td == istioTrustDomain {
			td += ", Istio's default (--trust-domain for another)"
		}
		c.written = append(c.written, fmt.Sprintf("%s.namespaces: matched by the SPIFFE IDs of trust domain %s (spiffe://%s/ns/NAME/*)", sn.path, td, c.trustDomain))
	}
	for _, k := range []string{"notPrincipals", "notNamespaces", "requestPrincipals", "notRequestPrincipals", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"} {
		if _, has := sn.take(k); has {
			drop(sn.path+"."+k, "lightmesh authorizes by the caller's SPIFFE ID only, with no negation, JWT or address")
		}
	}
	sn.done()
	return cl
}

// istioPrincipal is the SPIFFE ID matcher of an Istio principal:
// cluster.local/ns/default/sa/sleep exactly, cluster.local/ns/default/*
// under a path, or a whole trust domain (cluster.local/*). A suffix match
// (*/sa/sleep) or * alone (any authenticated caller, whatever its trust
// domain) has no equivalent.
func istioPrincipal(p string) (string, bool) {
	if p == "" || strings.HasPrefix(p, "*") {
		return "", false
	}
	if k := strings.IndexByte(p, '*'); k >= 0 && (k != len(p)-1 || !strings.HasSuffix(p, "/*")) {
		return "", false
	}
	if td, ok := strings.CutSuffix(p, "/*"); ok && !strings.Contains(td, "/") {
		return "spiffe://" + td, true
	}
	return "spiffe://" + p, true
}

// operation converts one to[].operation.
func (c *istioConverter) operation(on *node, drop func(path, what string)) clause {
	cl := clause{ok: true}
	for _, v := range on.list("paths") {
		p, _ := v.(string)
		if p == "*" {
			cl.paths = nil // any path: no condition
			break
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(strings.TrimSuffix(p, "*"), "*") || strings.Contains(p, "{") {
			drop(on.path+".paths", fmt.Sprintf("%q: lightmesh matches a path exactly or by prefix (/v1/*), not by suffix or template", p))
			cl.paths = nil
			break
		}
		cl.paths = append(cl.paths, p)
	}
	for _, v := range on.list("methods") {
		m, _ := v.(string)
		if m == "*" {
			cl.methods = nil
			break
		}
		cl.methods = append(cl.methods, strings.ToUpper(m))
	}
	slices.Sort(cl.methods)
	cl.methods = slices.Compact(cl.methods)
	for _, k := range []string{"hosts", "notHosts", "ports", "notPorts", "notPaths", "notMethods"} {
		if _, has := on.take(k); has {
			drop(on.path+"."+k, "lightmesh authorizes by path and method of the service called, with no negation, host or port")
		}
	}
	on.done()
	return cl
}

// authorization returns a's section, nil when it says nothing.
func (a *authzOf) authorization() *router.Authorization {
	out := &router.Authorization{}
	if a.strict {
		out.Rules = append(out.Rules, router.AuthorizationRule{Action: "deny", Callers: []string{"none"}})
	}
	out.Rules = append(out.Rules, a.denies...)
	out.Rules = append(out.Rules, a.allows...)
	if a.allowed {
		out.Default = "deny"
	}
	if len(out.Rules) == 0 && out.Default == "" {
		return nil
	}
	return out
}
