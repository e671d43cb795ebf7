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
		out = append(out, cr)
	}
	assignHeaderSlots(out)
	return out
}

// InboundUndecided is the index MatchInbound returns for a request it
// cannot place: a regex condition of an inbound route, tried in order,
// would have to match a value longer than MaxRegexInputLen. Taking such
// a value as no match would let a stranger pad a header past the first
// route's limit, and taking it as a match would let one pad it into a
// generous route, so the request matches no route: the mesh refuses it
// as over the limit.
const InboundUndecided = -2

// MatchInbound returns the index and name of the first inbound route of
// service that accepts req, -1 and "" when none does, or
// InboundUndecided and "" (see there).
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
		rt := &sr.inbound[i]
		if rt.tooLongForRegex(req, &hc) {
			return InboundUndecided, ""
		}
		if rt.matches(req, &hc) {
			return i, rt.name
		}
	}
	return -1, ""
}
