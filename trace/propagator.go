package trace

import (
	"context"
	"encoding/hex"
	"net/http"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Wire names.
const (
	// RequestIDHeader is the first header carrying the request id by
	// default (see WithRequestIDHeaders).
	RequestIDHeader = "X-Request-Id"
	// TraceIDHeader is the request-id header many hand-written
	// middlewares set; by default it is read too, after RequestIDHeader.
	TraceIDHeader = "X-Trace-Id"

	requestIDKey   = "x-request-id" // RequestIDHeader as a carrier key
	requestIDCanon = "X-Request-Id"

	// maxBaggageBytes and maxBaggageMembers are the W3C baggage limits
	// (https://www.w3.org/TR/baggage/#limits). Inject keeps the merged
	// baggage within them.
	maxBaggageBytes   = 8192
	maxBaggageMembers = 64
	// maxBaggageListMembers caps the comma-separated list-members (valid,
	// invalid, duplicate or empty) across all incoming baggage headers,
	// twice the 64 that the W3C spec requires propagating. otel parses each
	// list-member with a few allocations and only stops at 64 distinct valid
	// keys, so without this cap 8 KiB of "k=v,k=v,..." costs thousands of
	// allocations per request.
	maxBaggageListMembers = 128
)

// ScopeName is the instrumentation scope name of the spans a Propagator
// creates.
const ScopeName = "github.com/lightmesh/lightmesh/trace"

// laneKey is a configured lane key with its precomputed wire forms.
// idKey is a header that carries the request id.
type idKey struct {
	key   string // carrier key, lowercase: "x-request-id"
	canon string // canonical HTTP header name: "X-Request-Id"
}

type laneKey struct {
	key   string // carrier key, lowercase: "x-env"
	canon string // canonical HTTP header name: "X-Env"
	bag   string // baggage member key: "lightmesh.lane.x-env"
}

// Propagator injects and extracts trace context, baggage, the lane and the
// request id, and optionally creates HTTP client and server spans. It is
// immutable after New and safe for concurrent use.
type Propagator struct {
	prop   propagation.TextMapPropagator
	tracer trace.Tracer
	mode   Mode
	keys   []laneKey // sorted by key
	ids    []idKey   // request-id headers, in order of preference
	// noInboundLane: Extract reads no lane (WithoutInboundLanes).
	noInboundLane bool
	// mint is the format of the request ids MintRequestID mints.
	mint RequestIDFormat
	// w3c: prop is exactly W3C trace context + baggage, so Inject writes
	// traceparent itself, into an OutgoingHeader's own storage.
	w3c bool
	// lastBaggage is the baggage header last built for a lane read from
	// request headers (a lane in ctx caches its own): services that
	// forward the lane header send the same few lanes over and over.
	lastBaggage atomic.Pointer[builtBaggage]
}

// builtBaggage is a lane and its baggage header value.
type builtBaggage struct {
	labels []Label
	value  string
}

// headerLaneBaggage returns the baggage value for out, reusing the last
// one built when out is the same lane.
func (p *Propagator) headerLaneBaggage(out []Label) string {
	if last := p.lastBaggage.Load(); last != nil && slices.Equal(last.labels, out) {
		return last.value
	}
	b := &builtBaggage{labels: slices.Clone(out), value: laneBaggage(out)}
	p.lastBaggage.Store(b)
	return b.value
}

// New returns a Propagator configured by opts. Configuration is resolved
// once, here: see WithTracerProvider, WithPropagator, WithMode and
// WithLaneKeys for the defaults.
func New(opts ...Option) *Propagator {
	c := config{mode: ModePropagate}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	prop := c.prop
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	keys := c.laneKeys
	if keys == nil {
		keys = []string{DefaultLaneKey}
	}
	idNames := c.idKeys
	if idNames == nil {
		idNames = []string{RequestIDHeader, TraceIDHeader}
	}
	ids := compileIDKeys(idNames)
	resolved := resolvePropagator(prop, c.prop == nil)
	return &Propagator{
		prop:   resolved,
		w3c:    reflect.DeepEqual(resolved, propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		tracer: c.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		mode:   c.mode,
		keys:   compileLaneKeys(keys, ids),
		ids:    ids,

		noInboundLane: c.noInboundLane,
		mint:          c.mint,
	}
}

// compileIDKeys lowercases, validates and dedupes request-id header names,
// keeping their order.
func compileIDKeys(names []string) []idKey {
	var out []idKey
	for _, n := range names {
		k := strings.ToLower(strings.TrimSpace(n))
		if (k != requestIDKey && checkKey(k) != "") || slices.ContainsFunc(out, func(ik idKey) bool { return ik.key == k }) {
			continue
		}
		out = append(out, idKey{key: k, canon: textproto.CanonicalMIMEHeaderKey(k)})
	}
	return out
}

// resolvePropagator returns the propagator a Propagator uses given p, the
// configured one or (global) the global one: W3C TraceContext+Baggage for a
// global propagator that propagates nothing (otel's default before
// otel.SetTextMapPropagator), and p with W3C Baggage added when p does not
// propagate the baggage field.
func resolvePropagator(p propagation.TextMapPropagator, global bool) propagation.TextMapPropagator {
	fields := p.Fields()
	if global && len(fields) == 0 {
		return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	if !slices.Contains(fields, "baggage") {
		return propagation.NewCompositeTextMapPropagator(p, propagation.Baggage{})
	}
	return p
}

// compileLaneKeys lowercases, validates, dedupes, sorts and caps keys,
// dropping those that are request-id headers.
func compileLaneKeys(keys []string, ids []idKey) []laneKey {
	var out []laneKey
	for _, k := range keys {
		k = strings.ToLower(strings.TrimSpace(k))
		if checkKey(k) != "" || slices.ContainsFunc(out, func(lk laneKey) bool { return lk.key == k }) ||
			slices.ContainsFunc(ids, func(ik idKey) bool { return ik.key == k }) {
			continue
		}
		if len(out) == MaxLaneLabels {
			break
		}
		out = append(out, laneKey{key: k, canon: textproto.CanonicalMIMEHeaderKey(k), bag: BaggagePrefix + k})
	}
	slices.SortFunc(out, func(a, b laneKey) int { return strings.Compare(a.key, b.key) })
	return out
}

// Mode returns the Propagator's mode.
func (p *Propagator) Mode() Mode { return p.mode }

// LaneKeys returns a copy of the lane keys Extract reads, sorted.
func (p *Propagator) LaneKeys() []string {
	out := make([]string, len(p.keys))
	for i, lk := range p.keys {
		out[i] = lk.key
	}
	return out
}

// Fields returns the carrier keys Inject may write: those of the underlying
// propagator, the lane keys and the request-id headers. Lane labels set in
// code under other keys are written too.
func (p *Propagator) Fields() []string {
	f := slices.Clone(p.prop.Fields())
	for _, lk := range p.keys {
		f = append(f, lk.key)
	}
	for _, ik := range p.ids {
		f = append(f, ik.key)
	}
	return f
}

// InboundLanes reports whether Extract reads the lane of incoming requests:
// true unless the Propagator was made WithoutInboundLanes.
func (p *Propagator) InboundLanes() bool { return !p.noInboundLane }

// RequestIDHeaders returns the canonical names of the headers that carry
// the request id, in order of preference (see WithRequestIDHeaders).
func (p *Propagator) RequestIDHeaders() []string {
	out := make([]string, len(p.ids))
	for i, ik := range p.ids {
		out[i] = ik.canon
	}
	return out
}

// Extract returns a copy of ctx carrying what carrier holds: the trace
// context (traceparent, tracestate) and baggage via the underlying propagator,
// the lane and the request id. For each lane key the header wins over the
// "lightmesh.lane.<key>" baggage member; a header or member whose value is
// not a valid label value is ignored. If the carrier holds a lane it replaces
// the lane in ctx; otherwise ctx's lane is kept. Invalid or oversized input is
// ignored and never fails the request. A nil carrier returns ctx. With
// WithoutInboundLanes, Extract reads no lane and drops the lightmesh.lane.*
// baggage members.
func (p *Propagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if carrier == nil {
		return ctx
	}
	c := wrapCarrier(carrier)
	if hostileBaggage(c) {
		c = noBaggageCarrier{c}
	}
	if p.noInboundLane {
		// Strip what the propagator read from the carrier, whatever
		// header it read baggage from (W3C baggage, or uberctx-* and
		// ot-baggage-* for Jaeger and OT propagators); baggage the
		// context had already, the code's own, is kept.
		own := baggage.FromContext(ctx)
		ctx = p.prop.Extract(ctx, c)
		if bag := baggage.FromContext(ctx); bag.Len() > 0 && bag.String() != own.String() {
			ctx = withoutLaneMembers(ctx)
		}
		return p.extractRequestID(ctx, c)
	}
	ctx = p.prop.Extract(ctx, c)

	var buf [MaxLaneLabels]Label
	n := 0
	var bag baggage.Baggage
	bagLoaded := false
	for i := range p.keys {
		lk := &p.keys[i]
		v := strings.TrimSpace(getKey(c, lk.key, lk.canon))
		if !validValue(v) {
			if !bagLoaded {
				bag, bagLoaded = baggage.FromContext(ctx), true
			}
			if bag.Len() == 0 {
				continue
			}
			if v = bag.Member(lk.bag).Value(); !validValue(v) {
				continue
			}
		}
		buf[n] = Label{Key: lk.key, Value: v}
		n++
	}
	if n > 0 {
		ctx = context.WithValue(ctx, laneCtxKey, newLane(buf[:n]))
	}
	return p.extractRequestID(ctx, c)
}

// extractRequestID returns ctx with the first valid request id c holds, if
// any.
func (p *Propagator) extractRequestID(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	for i := range p.ids {
		if id := strings.TrimSpace(getKey(c, p.ids[i].key, p.ids[i].canon)); validRequestID(id) {
			return context.WithValue(ctx, requestIDCtxKey, id)
		}
	}
	return ctx
}

// withoutLaneMembers returns ctx with the lightmesh.lane.* members removed
// from its baggage.
func withoutLaneMembers(ctx context.Context) context.Context {
	bag := baggage.FromContext(ctx)
	if bag.Len() == 0 {
		return ctx
	}
	out := bag
	for _, m := range bag.Members() {
		if strings.HasPrefix(m.Key(), BaggagePrefix) {
			out = out.DeleteMember(m.Key())
		}
	}
	if out.Len() == bag.Len() {
		return ctx
	}
	return baggage.ContextWithBaggage(ctx, out)
}

// Inject writes what ctx carries into carrier: trace context and baggage via
// the underlying propagator, the lane as headers and as "lightmesh.lane.<key>"
// baggage members, and the request id as X-Request-Id.
//
// The outgoing lane is ctx's lane, except that a valid lane header the caller
// already set on the carrier wins for its key (and configured lane keys set
// only as headers join the lane). Lane headers and X-Request-Id are written
// only when the carrier does not already carry them. A baggage header the
// caller set is merged with ctx's baggage, its members winning, never
// dropped (one that does not parse is sent as the caller wrote it). In the baggage, the
// lightmesh.lane.* member of every label of the outgoing lane is set and that
// of every configured lane key outside it is removed; other members are kept.
// If adding the lane members would break the W3C baggage limits (64 members,
// 8192 bytes), the baggage is sent without them and the lane travels in
// headers only. A nil carrier is ignored.
func (p *Propagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	if carrier == nil {
		return
	}
	if h, ok := carrier.(propagation.HeaderCarrier); ok && h == nil {
		return // nothing can be written to a nil header map
	}
	if o, ok := carrier.(*OutgoingHeader); ok && (o == nil || o.Header == nil) {
		return
	}
	c := wrapCarrier(carrier)
	lane := LaneFromContext(ctx)
	sc := trace.SpanContextFromContext(ctx)
	id := RequestIDFromContext(ctx)
	if o, ok := carrier.(*OutgoingHeader); ok && o.Shared {
		o.adds = p.mostAdded(lane, sc, id)
	}

	// Outgoing lane: ctx lane overridden by explicit headers, then configured
	// keys present only as headers.
	var buf [2 * MaxLaneLabels]Label
	out := buf[:0]
	asLane := true // out is exactly ctx's lane
	for _, lb := range lane.labels() {
		lk := p.laneKey(lb.Key)
		canon := ""
		if lk != nil {
			canon = lk.canon
		}
		if v := strings.TrimSpace(getKey(c, lb.Key, canon)); v != "" {
			if validValue(v) && v != lb.Value {
				lb.Value, asLane = v, false
			}
		} else {
			setKey(c, lb.Key, canon, lb.Value)
		}
		out = append(out, lb)
	}
	for i := range p.keys {
		lk := &p.keys[i]
		if _, ok := lane.Get(lk.key); ok {
			continue
		}
		if v := strings.TrimSpace(getKey(c, lk.key, lk.canon)); validValue(v) {
			out = append(out, Label{Key: lk.key, Value: v})
			asLane = false
		}
	}

	caller := getKey(c, "baggage", "Baggage")
	if caller == "" && baggage.FromContext(ctx).Len() == 0 {
		// The common case: no baggage but the lane's. Its members need no
		// escaping (lane values are baggage-safe), so the header is written
		// directly — once per lane, when the lane comes from ctx — instead
		// of building an otel Baggage for every call.
		if sc.IsValid() {
			if p.w3c {
				injectTraceContext(sc, c) // all W3C would write without baggage
			} else {
				p.prop.Inject(ctx, c) // with no span and no baggage there is nothing to inject
			}
		}
		switch {
		case len(out) == 0:
		case asLane:
			setKey(c, "baggage", "Baggage", lane.baggage())
		default:
			setKey(c, "baggage", "Baggage", p.headerLaneBaggage(out))
		}
		p.injectRequestID(id, c)
		return
	}
	if caller != "" {
		// The caller set a baggage header of its own: merge it with the
		// context's baggage (the header wins for a key both have) instead
		// of overwriting it. One that cannot be read is left as it is.
		if bag, ok := parseCallerBaggage(c); ok {
			ctx = baggage.ContextWithBaggage(ctx, mergeMembers(baggage.FromContext(ctx), bag))
		} else {
			c = keepBaggageCarrier{c}
		}
	}
	ctx = p.mergeBaggage(ctx, out)
	p.prop.Inject(ctx, c)
	p.injectRequestID(id, c)
}

// mostAdded returns how many headers Inject may add for a call with lane,
// sc and request id id: the lane's headers, traceparent and tracestate,
// baggage and the request-id headers; with a propagator other than W3C's,
// room for four more. An OutgoingHeader sizes its copy of the caller's
// header by it: a map sized for up to 8 keys is one small group, while a
// larger hint makes a table, a directory and more groups (3 allocations
// instead of 2, twice the bytes), so sizing for the usual four
// propagation headers would make a caller's five or six headers cost that.
func (p *Propagator) mostAdded(lane Lane, sc trace.SpanContext, id string) int {
	n := len(lane.labels()) + 1 // and baggage
	if sc.IsValid() {
		n++
		if sc.TraceState().Len() > 0 {
			n++
		}
	}
	if id != "" {
		n += len(p.ids)
	}
	if !p.w3c {
		n += 4
	}
	return n
}

// injectRequestID writes the request id id under each request-id header
// the carrier lacks or holds an invalid id under (over-long, not printable
// ASCII: one a proxy copied from its incoming request, say), so that such
// a value is never passed on beside the id ctx carries.
func (p *Propagator) injectRequestID(id string, c propagation.TextMapCarrier) {
	if id == "" {
		return
	}
	for i := range p.ids {
		if !validRequestID(strings.TrimSpace(getKey(c, p.ids[i].key, p.ids[i].canon))) {
			setKey(c, p.ids[i].key, p.ids[i].canon, id)
		}
	}
}

// laneBaggage returns the W3C baggage header value carrying labels as
// lightmesh.lane.* members. Lane keys and values need no escaping.
func laneBaggage(labels []Label) string {
	n := 0
	for _, lb := range labels {
		n += len(BaggagePrefix) + len(lb.Key) + 1 + len(lb.Value) + 1
	}
	var b strings.Builder
	b.Grow(n)
	for i, lb := range labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(BaggagePrefix)
		b.WriteString(lb.Key)
		b.WriteByte('=')
		b.WriteString(lb.Value)
	}
	return b.String()
}

// mergeBaggage returns ctx with its baggage updated to carry out as
// lightmesh.lane.* members and no member for configured keys outside out. It
// returns ctx itself when the baggage already matches.
func (p *Propagator) mergeBaggage(ctx context.Context, out []Label) context.Context {
	bag := baggage.FromContext(ctx)
	if len(out) == 0 && bag.Len() == 0 {
		return ctx
	}
	changed := false
	for _, lb := range out {
		if m := bag.Member(p.bagKey(lb.Key)); m.Key() == "" || m.Value() != lb.Value {
			changed = true
			break
		}
	}
	if !changed && bag.Len() > 0 {
		for i := range p.keys {
			if !containsKey(out, p.keys[i].key) && bag.Member(p.keys[i].bag).Key() != "" {
				changed = true
				break
			}
		}
	}
	if !changed {
		return ctx
	}

	had := bag.Len()
	nb := bag
	for i := range p.keys {
		if !containsKey(out, p.keys[i].key) && nb.Member(p.keys[i].bag).Key() != "" {
			nb = nb.DeleteMember(p.keys[i].bag)
		}
	}
	base := nb
	added := false
	for _, lb := range out {
		bk := p.bagKey(lb.Key)
		if m := nb.Member(bk); m.Key() != "" && m.Value() == lb.Value {
			continue
		}
		m, err := baggage.NewMemberRaw(bk, lb.Value)
		if err != nil {
			continue
		}
		if next, err := nb.SetMember(m); err == nil {
			nb, added = next, true
		}
	}
	// The lane members alone (at most 2*MaxLaneLabels of at most ~210 bytes)
	// are far below the limits; only user baggage can push the total over.
	if added && had > 0 && (nb.Len() > maxBaggageMembers || len(nb.String()) > maxBaggageBytes) {
		// Send the user's baggage without any lane member rather than a
		// baggage the next hop would drop whole, or a stale lane value.
		nb = base
		for _, lb := range out {
			if bk := p.bagKey(lb.Key); nb.Member(bk).Key() != "" {
				nb = nb.DeleteMember(bk)
			}
		}
	}
	return baggage.ContextWithBaggage(ctx, nb)
}

// parseCallerBaggage reads the baggage headers the caller set on c, within
// the W3C limits; ok is false when they are over them or do not parse.
func parseCallerBaggage(c propagation.TextMapCarrier) (baggage.Baggage, bool) {
	if hostileBaggage(c) {
		return baggage.Baggage{}, false
	}
	var values []string
	if vg, ok := c.(propagation.ValuesGetter); ok {
		values = vg.Values("baggage")
	} else {
		values = []string{c.Get("baggage")}
	}
	bag, err := baggage.Parse(strings.Join(values, ","))
	if err != nil {
		return baggage.Baggage{}, false
	}
	return bag, true
}

// mergeMembers returns base with every member of over set on it.
func mergeMembers(base, over baggage.Baggage) baggage.Baggage {
	for _, m := range over.Members() {
		if next, err := base.SetMember(m); err == nil {
			base = next
		}
	}
	return base
}

// keepBaggageCarrier leaves the carrier's baggage header alone: Inject
// writes everything else.
type keepBaggageCarrier struct {
	propagation.TextMapCarrier
}

// Set sets key unless it is baggage.
func (c keepBaggageCarrier) Set(key, value string) {
	if !isBaggageKey(key) {
		c.TextMapCarrier.Set(key, value)
	}
}

// laneKey returns the configured lane key k, or nil.
func (p *Propagator) laneKey(k string) *laneKey {
	for i := range p.keys {
		if p.keys[i].key == k {
			return &p.keys[i]
		}
	}
	return nil
}

// bagKey returns the baggage member key of the label key k.
func (p *Propagator) bagKey(k string) string {
	if lk := p.laneKey(k); lk != nil {
		return lk.bag
	}
	return BaggagePrefix + k
}

func containsKey(labels []Label, k string) bool {
	for _, lb := range labels {
		if lb.Key == k {
			return true
		}
	}
	return false
}

// hostileBaggage reports whether the baggage in c exceeds maxBaggageBytes in
// total or maxBaggageListMembers list-members, and must be ignored whole.
func hostileBaggage(c propagation.TextMapCarrier) bool {
	if vg, ok := c.(propagation.ValuesGetter); ok {
		vals := vg.Values("baggage")
		if len(vals) > maxBaggageListMembers {
			return true
		}
		size, n := 0, 0
		for _, v := range vals {
			size += len(v) + 1
			if size > maxBaggageBytes+1 {
				return true
			}
			n += strings.Count(v, ",") + 1
		}
		return n > maxBaggageListMembers
	}
	v := c.Get("baggage")
	return len(v) > maxBaggageBytes || strings.Count(v, ",") >= maxBaggageListMembers
}

// noBaggageCarrier hides the baggage of a carrier whose baggage is hostile.
type noBaggageCarrier struct {
	propagation.TextMapCarrier
}

func isBaggageKey(k string) bool { return strings.EqualFold(k, "baggage") }

// Get returns "" for baggage and the carrier's value otherwise.
func (c noBaggageCarrier) Get(key string) string {
	if isBaggageKey(key) {
		return ""
	}
	return c.TextMapCarrier.Get(key)
}

// Values returns nil for baggage and the carrier's values otherwise.
func (c noBaggageCarrier) Values(key string) []string {
	if isBaggageKey(key) {
		return nil
	}
	if vg, ok := c.TextMapCarrier.(propagation.ValuesGetter); ok {
		return vg.Values(key)
	}
	if v := c.TextMapCarrier.Get(key); v != "" {
		return []string{v}
	}
	return nil
}

// headerCarrier is propagation.HeaderCarrier with allocation-free key
// canonicalization for the keys this package and the W3C propagators use.
// It is used when the header holds at most one baggage header: it does not
// implement propagation.ValuesGetter, so otel's Baggage propagator parses
// that header once instead of parsing and then rebuilding it.
type headerCarrier http.Header

// multiHeaderCarrier is headerCarrier for a header holding several baggage
// headers: like HeaderCarrier it implements propagation.ValuesGetter, so all
// of them are read.
type multiHeaderCarrier http.Header

var (
	_ propagation.TextMapCarrier = headerCarrier(nil)
	_ propagation.ValuesGetter   = multiHeaderCarrier(nil)
)

// wrapCarrier returns carrier, or headerCarrier or multiHeaderCarrier when
// carrier is a propagation.HeaderCarrier.
func wrapCarrier(carrier propagation.TextMapCarrier) propagation.TextMapCarrier {
	if h, ok := carrier.(propagation.HeaderCarrier); ok {
		if len(h["Baggage"]) > 1 {
			return multiHeaderCarrier(h)
		}
		return headerCarrier(h)
	}
	return carrier
}

// asHeader returns the http.Header behind a carrier made by wrapCarrier.
func asHeader(c propagation.TextMapCarrier) (http.Header, bool) {
	switch h := c.(type) {
	case headerCarrier:
		return http.Header(h), true
	case multiHeaderCarrier:
		return http.Header(h), true
	case *OutgoingHeader:
		return h.Header, true
	}
	return nil, false
}

// OutgoingHeader is the carrier of an outgoing request's header for
// Inject. It sets headers as propagation.HeaderCarrier does, but takes the
// value slice of each header it sets from Spare while Spare has room, so
// that the propagation headers of a request cost one allocation (Spare's
// array, which the caller can allocate with the request) rather than one
// each; with the W3C propagator, the traceparent value is made in the
// OutgoingHeader's own storage too. The header refers to Spare's array
// and to the OutgoingHeader afterwards: do not reuse either.
//
// With Shared set, Header is the caller's own map, which must not change:
// the first Set replaces Header with a copy of it (the copy shares each
// header's value slice, capped so that an append never writes into the
// caller's array) and clears Shared. A request to which Inject adds
// nothing thus costs no header copy at all.
type OutgoingHeader struct {
	Header http.Header
	Spare  []string
	Shared bool

	traceparent [traceparentLen]byte // the traceparent value's bytes
	// adds is the number of headers Inject expects to set: the copy of a
	// shared Header is sized for them (0: Set outside Inject, room for 4).
	adds int
}

// traceparentLen is the length of a version 00 traceparent value.
const traceparentLen = 2 + 1 + 32 + 1 + 16 + 1 + 2

// injectTraceContext writes sc as W3C trace context, as otel's
// propagation.TraceContext does: tracestate when there is one and
// traceparent with the sampled and random flags only. Into an
// OutgoingHeader the value is made in its own storage, no allocation.
func injectTraceContext(sc trace.SpanContext, c propagation.TextMapCarrier) {
	if ts := sc.TraceState().String(); ts != "" {
		setKey(c, "tracestate", "Tracestate", ts)
	}
	var buf *[traceparentLen]byte
	if o, ok := c.(*OutgoingHeader); ok {
		buf = &o.traceparent
	} else {
		buf = new([traceparentLen]byte)
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := [1]byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))}
	buf[0], buf[1], buf[2], buf[35], buf[52] = '0', '0', '-', '-', '-'
	hex.Encode(buf[3:35], tid[:])
	hex.Encode(buf[36:52], sid[:])
	hex.Encode(buf[53:55], flags[:])
	// The bytes are never written again: the OutgoingHeader is not reused.
	setKey(c, "traceparent", "Traceparent", unsafe.String(&buf[0], traceparentLen))
}

var _ propagation.TextMapCarrier = (*OutgoingHeader)(nil)

// Get returns the first value of key.
func (o *OutgoingHeader) Get(key string) string { return headerGet(o.Header, key) }

// Set sets key to value, replacing existing values.
func (o *OutgoingHeader) Set(key, value string) { o.set(canonicalKey(key), value) }

// Keys returns the header names.
func (o *OutgoingHeader) Keys() []string { return headerKeys(o.Header) }

func (o *OutgoingHeader) set(canon, value string) {
	if o.Shared {
		adds := o.adds
		if adds == 0 {
			adds = 4
		}
		out := make(http.Header, len(o.Header)+adds)
		for k, v := range o.Header {
			out[k] = v[:len(v):len(v)]
		}
		o.Header, o.Shared = out, false
	}
	n := len(o.Spare)
	if n == cap(o.Spare) {
		o.Header[canon] = []string{value}
		return
	}
	o.Spare = append(o.Spare, value)
	o.Header[canon] = o.Spare[n : n+1 : n+1] // capped: an append reallocates
}

func canonicalKey(k string) string {
	switch k {
	case "traceparent":
		return "Traceparent"
	case "tracestate":
		return "Tracestate"
	case "baggage":
		return "Baggage"
	case requestIDKey:
		return requestIDCanon
	}
	return textproto.CanonicalMIMEHeaderKey(k)
}

func headerGet(h http.Header, key string) string {
	if v := h[canonicalKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func headerKeys(h http.Header) []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}

// Get returns the first value of key.
func (h headerCarrier) Get(key string) string { return headerGet(http.Header(h), key) }

// Set sets key to value, replacing existing values.
func (h headerCarrier) Set(key, value string) { h[canonicalKey(key)] = []string{value} }

// Keys returns the header names.
func (h headerCarrier) Keys() []string { return headerKeys(http.Header(h)) }

// Get returns the first value of key.
func (h multiHeaderCarrier) Get(key string) string { return headerGet(http.Header(h), key) }

// Set sets key to value, replacing existing values.
func (h multiHeaderCarrier) Set(key, value string) { h[canonicalKey(key)] = []string{value} }

// Keys returns the header names.
func (h multiHeaderCarrier) Keys() []string { return headerKeys(http.Header(h)) }

// Values returns all values of key.
func (h multiHeaderCarrier) Values(key string) []string { return h[canonicalKey(key)] }

// getKey returns the first value of key in c; canon, if not "", is key's
// canonical header name, used without re-canonicalizing for header carriers.
func getKey(c propagation.TextMapCarrier, key, canon string) string {
	if h, ok := asHeader(c); ok {
		if canon == "" {
			canon = textproto.CanonicalMIMEHeaderKey(key)
		}
		if v := h[canon]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return c.Get(key)
}

// setKey sets key to value in c; canon as for getKey.
func setKey(c propagation.TextMapCarrier, key, canon, value string) {
	if o, ok := c.(*OutgoingHeader); ok {
		if canon == "" {
			canon = textproto.CanonicalMIMEHeaderKey(key)
		}
		o.set(canon, value)
		return
	}
	if h, ok := asHeader(c); ok {
		if canon == "" {
			canon = textproto.CanonicalMIMEHeaderKey(key)
		}
		h[canon] = []string{value}
		return
	}
	c.Set(key, value)
}
