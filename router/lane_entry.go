package router

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// LaneEntry puts calls entering the service into a lane, by rule: the
// edge service's own calls then carry the lane to every later hop, with
// no application code. Exactly one of Header, Cookie and Query names
// where the entry reads a value. Without Percent, that value is the
// lane; with Percent, it is a key (a user id, say) and Percent percent
// of keys, chosen by a stable hash of the key, go into Lane: the same
// key always lands on the same side.
type LaneEntry struct {
	// Header is a request header (or gRPC metadata key) to read.
	Header string `yaml:"header,omitempty" json:"header,omitempty"`
	// Cookie is an HTTP cookie to read; gRPC calls have none.
	Cookie string `yaml:"cookie,omitempty" json:"cookie,omitempty"`
	// Query is a URL query parameter to read; gRPC calls have none.
	Query string `yaml:"query,omitempty" json:"query,omitempty"`
	// Percent, when set (0 < Percent <= 100), makes the value read a key
	// and puts this share of keys into Lane, to the nearest 0.01 percent
	// (a share below 0.005 percent puts no key in).
	Percent float64 `yaml:"percent,omitempty" json:"percent,omitempty"`
	// Lane is the lane a Percent entry puts its share of keys into;
	// required with Percent, not allowed without.
	Lane string `yaml:"lane,omitempty" json:"lane,omitempty"`
}

// laneEntry is a compiled LaneEntry.
type laneEntry struct {
	header    *headerCond
	cookie    string
	query     string
	threshold uint64 // keys whose bucket is below it go into lane
	lane      string // "": the value read is the lane
}

// entryBuckets is the resolution of a Percent entry: 0.01 percent.
const entryBuckets = 10000

func (c *compiler) laneEntries(path string, entries []LaneEntry) []laneEntry {
	var out []laneEntry
	for i, e := range entries {
		ep := fmt.Sprintf("%s.entry[%d]", path, i)
		n := 0
		var le laneEntry
		if e.Header != "" {
			n++
			if !validHeaderName(e.Header) {
				c.fail(ep+".header", "%s is not a header name", quote(e.Header))
			}
			h := newHeaderCond(e.Header)
			le.header = &h
		}
		if e.Cookie != "" {
			n++
			le.cookie = e.Cookie
		}
		if e.Query != "" {
			n++
			le.query = e.Query
		}
		if n != 1 {
			c.fail(ep, "set exactly one of header, cookie and query (%d set)", n)
		}
		switch {
		case e.Percent != 0 && (e.Percent < 0 || e.Percent > 100 || e.Percent != e.Percent):
			c.fail(ep+".percent", "must be in (0, 100]")
		case e.Percent != 0 && e.Lane == "":
			c.missing(ep, "lane")
		case e.Percent == 0 && e.Lane != "":
			c.fail(ep+".lane", "only with percent: without it, the value read is the lane")
		case e.Percent != 0:
			le.threshold = uint64(e.Percent*entryBuckets/100 + 0.5)
			le.lane = e.Lane
			if !validLaneValue(e.Lane) {
				c.fail(ep+".lane", "%s is not a lane value (1..128 bytes of visible ASCII other than \" , ; \\ %%)", quote(e.Lane))
			}
		}
		out = append(out, le)
	}
	return out
}

// newHeaderCond returns the condition slot of header name, unconditioned.
func newHeaderCond(name string) headerCond {
	return headerCond{canonical: http.CanonicalHeaderKey(name), lower: strings.ToLower(name), slot: headerCacheSize}
}

// validLaneValue reports whether v can travel as a lane value (a header
// value and a W3C baggage value alike).
func validLaneValue(v string) bool {
	if v == "" || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == ',' || c == ';' || c == '\\' || c == '%' {
			return false
		}
	}
	return true
}

// LaneHeader returns the header that carries the lanes of service and
// whether service has lanes (its own Lanes rule or the defaults').
func (r *Rules) LaneHeader(service string) (string, bool) {
	lr := r.laneRule(service)
	if lr == nil {
		return "", false
	}
	return lr.header.lower, true
}

func (r *Rules) laneRule(service string) *laneRule {
	if r == nil {
		return nil
	}
	if sr := r.services[service]; sr != nil {
		return sr.lanes
	}
	return r.defaultLanes
}

// EntryLane applies the entry rules of service, the service a call
// enters, to req: it returns the lane the first entry that yields one
// puts the call into, and the header that carries it. ok is false when
// no entry applies (or the service has none). A value read that is not
// a valid lane value is ignored.
func (r *Rules) EntryLane(service string, req *Request) (header, lane string, ok bool) {
	lr := r.laneRule(service)
	if lr == nil || len(lr.entry) == 0 || req == nil {
		return "", "", false
	}
	var query url.Values
	for i := range lr.entry {
		e := &lr.entry[i]
		var v string
		var found bool
		switch {
		case e.header != nil:
			v, found = req.header(e.header)
		case e.cookie != "":
			v, found = req.cookie(e.cookie)
		case e.query != "":
			if query == nil {
				query, _ = url.ParseQuery(req.RawQuery)
			}
			v, found = query.Get(e.query), query.Has(e.query)
		}
		if !found || v == "" {
			continue
		}
		if e.lane == "" {
			if validLaneValue(v) {
				return lr.header.lower, v, true
			}
			continue
		}
		if keyBucket(e.lane, v) < e.threshold {
			return lr.header.lower, e.lane, true
		}
	}
	return "", "", false
}

var cookieHeader = newHeaderCond("Cookie")

// cookie returns the value of the request's cookie name. Like
// http.Request.Cookie, it skips the other cookies of the line whatever
// they hold: browsers send cookies net/http's strict parser refuses (a
// JSON value, a name without '='), and one of them must not hide the
// lane's.
func (r *Request) cookie(name string) (string, bool) {
	line, ok := r.header(&cookieHeader)
	if !ok {
		return "", false
	}
	for part := range strings.SplitSeq(line, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k != name {
			continue
		}
		if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// keyBucket places key in one of entryBuckets buckets by FNV-1a over the
// lane and the key: stable across processes and restarts, so a key stays
// on its side, and salted with the lane, so that two lanes of 5% take
// different users.
func keyBucket(lane, key string) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(lane); i++ {
		h = (h ^ uint64(lane[i])) * prime
	}
	h = (h ^ 0) * prime
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * prime
	}
	// FNV's low bits mix poorly for short keys: fold the high half in.
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h % entryBuckets
}
