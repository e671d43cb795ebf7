package router

import "math/bits"

// The route index lets Route skip, without evaluating them, the routes that
// need an exact header value the request does not carry: a service with
// fifty lanes keyed on x-env costs one header lookup and one map lookup
// rather than fifty route evaluations. Routes are still evaluated in order
// and in full; the index only removes routes that cannot match, so first
// match wins exactly as in a plain scan.

// routeWords is the size of a route bitset: one bit per route.
const routeWords = (MaxRoutes + 63) / 64

// minIndexedRoutes is the number of routes from which a service gets an
// index; below it a scan is as fast.
const minIndexedRoutes = 8

// indexKey covers the routes keyed on one header: each such route needs an
// exact value of it (a route with several exact conditions is keyed on its
// most used header).
type indexKey struct {
	header  headerCond          // the header; its cond is unused
	keyed   []uint64            // bitset of the routes keyed on the header
	byValue map[string][]uint64 // bitset of those needing each value
}

// buildIndex returns the index for routes, nil when it would not pay.
func buildIndex(routes []route) []indexKey {
	if len(routes) < minIndexedRoutes {
		return nil
	}
	words := (len(routes) + 63) / 64
	var keys []indexKey
	bySlot := make(map[int]int) // header slot -> keys index
	for i := range routes {
		key := -1
		for j := range routes[i].headers {
			h := &routes[i].headers[j]
			if h.cond.kind == condExact && h.slot < headerCacheSize && (key < 0 || h.slot < routes[i].headers[key].slot) {
				key = j
			}
		}
		if key < 0 {
			continue
		}
		h := &routes[i].headers[key]
		k, ok := bySlot[h.slot]
		if !ok {
			k = len(keys)
			bySlot[h.slot] = k
			keys = append(keys, indexKey{
				header:  headerCond{canonical: h.canonical, lower: h.lower, slot: h.slot},
				keyed:   make([]uint64, words),
				byValue: make(map[string][]uint64),
			})
		}
		set := keys[k].byValue[h.cond.value]
		if set == nil {
			set = make([]uint64, words)
			keys[k].byValue[h.cond.value] = set
		}
		keys[k].keyed[i/64] |= 1 << (i % 64)
		set[i/64] |= 1 << (i % 64)
	}
	return keys
}

// match returns the index of the first route of sr that accepts r, or -1.
func (sr *serviceRules) match(r *Request, hc *headerCache) int {
	if sr.index == nil {
		for i := range sr.routes {
			if sr.routes[i].matches(r, hc) {
				return i
			}
		}
		return -1
	}
	n := len(sr.routes)
	words := (n + 63) / 64
	var cand [routeWords]uint64
	for w := range words - 1 {
		cand[w] = ^uint64(0)
	}
	cand[words-1] = ^uint64(0) >> (uint(-n) % 64)
	for k := range sr.index {
		key := &sr.index[k]
		var allow []uint64
		if v, ok := hc.header(r, &key.header); ok {
			allow = key.byValue[v]
		}
		if allow == nil {
			for w := range words {
				cand[w] &^= key.keyed[w]
			}
			continue
		}
		for w := range words {
			cand[w] &^= key.keyed[w] &^ allow[w]
		}
	}
	for w := range words {
		for c := cand[w]; c != 0; c &= c - 1 {
			i := w*64 + bits.TrailingZeros64(c)
			if sr.routes[i].matches(r, hc) {
				return i
			}
		}
	}
	return -1
}
