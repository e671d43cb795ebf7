package router

import "fmt"

// inbound compiles the conditions of a service's inbound routes.
func (c *compiler) inbound(path string, routes []InboundRoute) []route {
	if len(routes) > MaxRoutes {
		c.fail(path+".inbound", "%d inbound routes, over the limit of %d", len(routes), MaxRoutes)
		return nil
	}
	out := make([]route, 0, len(routes))
	for i, in := range routes {
		cr := route{name: in.Name, fallback: -1}
		if cr.name == "" {
			cr.name = fmt.Sprintf("inbound[%d]", i)
		} else if !validName(in.Name) {
			c.fail(fmt.Sprintf("%s.inbound[%d].name", path, i), "inbound route name must be 1..%d characters of letters, digits, '-', '_' and '.'", MaxNameLen)
		}
		if in.Match != nil {
			c.match(fmt.Sprintf("%s.inbound[%d].match", path, i), in.Match, &cr)
		}
		// An inbound route applies a limit: a value too long to match a
		// regex against must not slip past it, so it counts as a match.
		for h := range cr.headers {
			cr.headers[h].cond.longMatches = true
		}
		if cr.path != nil {
			cr.path.longMatches = true
		}
		out = append(out, cr)
	}
	assignHeaderSlots(out)
	return out
}

// MatchInbound returns the index and name of the first inbound route of
// service that accepts req, or -1 and "" when none does.
func (r *Rules) MatchInbound(service string, req *Request) (int, string) {
	sr := r.services[service]
	if sr == nil {
		return -1, ""
	}
	if req == nil {
		req = &emptyRequest
	}
	var hc headerCache
	for i := range sr.inbound {
		if sr.inbound[i].matches(req, &hc) {
			return i, sr.inbound[i].name
		}
	}
	return -1, ""
}
