package router

import (
	"net/http"
	"regexp"
	"strings"
)

// Request is what the router reads of one call. Header holds HTTP headers
// with canonical keys; Metadata holds gRPC metadata with lower-case keys;
// Getter reads single keys from a source that is costly to copy whole
// (incoming gRPC metadata). Any of them may be nil; they are consulted in
// that order. For gRPC, Path is the full method name (/pkg.Service/Method)
// and Method is POST.
type Request struct {
	Method   string
	Path     string
	Header   http.Header
	Metadata map[string][]string
	Getter   HeaderGetter
	// RawQuery is the URL's query without '?', for lane entry rules.
	RawQuery string
}

// HeaderGetter reads one header or metadata key of a request.
type HeaderGetter interface {
	// Get returns the first value of key, given in lower case, and
	// whether the request has it.
	Get(key string) (string, bool)
}

type condKind uint8

const (
	condExact condKind = iota
	condPrefix
	condRegex
	condPresent
	condAbsent
)

type stringCond struct {
	kind  condKind
	value string
	re    *regexp.Regexp
}

func (c *stringCond) match(v string, present bool) bool {
	switch c.kind {
	case condPresent:
		return present
	case condAbsent:
		return !present
	}
	if !present {
		return false
	}
	switch c.kind {
	case condExact:
		return v == c.value
	case condPrefix:
		return strings.HasPrefix(v, c.value)
	default:
		// Matching costs the value's length times the expression's size,
		// and the value may come from a stranger: a 21-byte expression
		// such as .*(?:[a-z]{1,60}b){3} takes 0.7 s over a 1 MiB header.
		return len(v) <= MaxRegexInputLen && c.re.MatchString(v)
	}
}

// MaxRegexInputLen is the longest header value or path a regex condition
// is matched against. A longer one does not match the regex of a route;
// an inbound route that would have to match one refuses the request (see
// InboundUndecided). Exact, prefix, present and absent conditions see
// every value. It bounds what a request can make the mesh spend on its
// regexes.
const MaxRegexInputLen = 4096

type headerCond struct {
	canonical string // http.Header key
	lower     string // gRPC metadata key
	slot      int    // the header's number within its service, most used first
	cond      stringCond
}

// header returns the first value of the header h names. The HTTP header
// is looked up here, inline; metadata and getters in other.
func (r *Request) header(h *headerCond) (string, bool) {
	if vs, ok := r.Header[h.canonical]; ok && len(vs) > 0 {
		return vs[0], true
	}
	return r.other(h)
}

// other looks h up in the request's gRPC metadata and getter.
func (r *Request) other(h *headerCond) (string, bool) {
	if vs, ok := r.Metadata[h.lower]; ok && len(vs) > 0 {
		return vs[0], true
	}
	if r.Getter != nil {
		return r.Getter.Get(h.lower)
	}
	return "", false
}

// headerCacheSize is how many of a service's header names (the most used
// ones) Route looks up at most once per call; conditions on further names
// look their header up each time.
const headerCacheSize = 16

// headerCache remembers, for one call, the headers already looked up, so
// that many routes testing the same header cost one map lookup rather than
// one per route. It lives on Route's stack.
type headerCache struct {
	known, present uint16 // bit i: slot i was looked up / was present
	values         [headerCacheSize]string
}

func (c *headerCache) header(r *Request, h *headerCond) (string, bool) {
	if h.slot >= headerCacheSize {
		return r.header(h)
	}
	bit := uint16(1) << h.slot
	if c.known&bit != 0 {
		return c.values[h.slot], c.present&bit != 0
	}
	v, ok := r.header(h)
	c.known |= bit
	if ok {
		c.present |= bit
		c.values[h.slot] = v
	}
	return v, ok
}

// emptyRequest stands in for a nil *Request; it is never written.
var emptyRequest Request

// tooLongForRegex reports whether a regex condition of rt would see a
// value longer than MaxRegexInputLen in r.
func (rt *route) tooLongForRegex(r *Request, hc *headerCache) bool {
	if rt.path != nil && rt.path.kind == condRegex && len(r.Path) > MaxRegexInputLen {
		return true
	}
	for i := range rt.headers {
		h := &rt.headers[i]
		if h.cond.kind != condRegex {
			continue
		}
		if v, ok := hc.header(r, h); ok && len(v) > MaxRegexInputLen {
			return true
		}
	}
	return false
}

// unconditional reports whether rt matches every request: no method,
// path or header condition.
func (rt *route) unconditional() bool {
	return len(rt.methods) == 0 && rt.path == nil && len(rt.headers) == 0
}

func (rt *route) matches(r *Request, hc *headerCache) bool {
	if len(rt.methods) > 0 {
		ok := false
		for _, m := range rt.methods {
			if m == r.Method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if rt.path != nil && !rt.path.match(r.Path, true) {
		return false
	}
	for i := range rt.headers {
		h := &rt.headers[i]
		v, ok := hc.header(r, h)
		if !h.cond.match(v, ok) {
			return false
		}
	}
	return true
}
