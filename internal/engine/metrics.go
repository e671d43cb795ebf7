package engine

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/router"
)

// Metrics holds a mesh's Prometheus collectors. A nil *Metrics records
// nothing, so every method is safe to call when metrics are off.
//
// Label names avoid those a scrape attaches to every target (instance,
// job) and those scrape configs commonly add (service, namespace, pod):
// destination_service, destination_subset, upstream_instance. Every label
// value comes from the rules or the mesh itself (service, subset and route
// names, status codes), never from raw request data, so series stay
// bounded.
type Metrics struct {
	reg                prometheus.Registerer
	collectors         []prometheus.Collector
	requests           *prometheus.CounterVec
	duration           *prometheus.HistogramVec
	rejections         *prometheus.CounterVec
	retries            *prometheus.CounterVec
	laneFallbacks      *prometheus.CounterVec
	breakerTransitions *prometheus.CounterVec
	rulesInfo          *prometheus.GaugeVec
	ruleUpdates        *prometheus.CounterVec
	documentInfo       *prometheus.GaugeVec
	documentUpdates    *prometheus.CounterVec
	cpConnected        *prometheus.GaugeVec
	cpLastEvent        *prometheus.GaugeVec

	// series caches the collectors of each destination, copy-on-write:
	// the request path reads it without a lock, and only the first call
	// to a destination takes seriesMu to add it.
	series   atomic.Pointer[map[seriesKey]*series]
	seriesMu sync.Mutex
}

// seriesKey names the series of one destination.
type seriesKey struct{ direction, protocol, service, subset string }

// series holds the collectors of one destination, looked up once: its
// latency histogram, its request counters by code (copy-on-write too) and
// when it last took an exemplar.
type series struct {
	mt           *Metrics
	key          seriesKey
	duration     prometheus.Observer
	exemplar     prometheus.ExemplarObserver // nil when the histogram takes none
	lastExemplar atomic.Int64                // unix ns
	codes        atomic.Pointer[map[string]prometheus.Counter]
	codesMu      sync.Mutex
}

// exemplarEvery is how often a series takes a trace-id exemplar at most:
// Prometheus keeps one per bucket, so one per request would only cost.
const exemplarEvery = time.Second

// seriesOf returns the collectors of k.
func (mt *Metrics) seriesOf(k seriesKey) *series {
	if m := mt.series.Load(); m != nil {
		if s := (*m)[k]; s != nil {
			return s
		}
	}
	mt.seriesMu.Lock()
	defer mt.seriesMu.Unlock()
	old := mt.series.Load()
	if old != nil {
		if s := (*old)[k]; s != nil {
			return s
		}
	}
	s := &series{mt: mt, key: k, duration: mt.duration.WithLabelValues(k.direction, k.protocol, k.service, k.subset)}
	s.exemplar, _ = s.duration.(prometheus.ExemplarObserver)
	next := make(map[seriesKey]*series, 1)
	if old != nil {
		next = make(map[seriesKey]*series, len(*old)+1)
		for kk, v := range *old {
			next[kk] = v
		}
	}
	next[k] = s
	mt.series.Store(&next)
	return s
}

// counter returns the request counter of code in s.
func (s *series) counter(mt *Metrics, code string) prometheus.Counter {
	if m := s.codes.Load(); m != nil {
		if c := (*m)[code]; c != nil {
			return c
		}
	}
	s.codesMu.Lock()
	defer s.codesMu.Unlock()
	old := s.codes.Load()
	if old != nil {
		if c := (*old)[code]; c != nil {
			return c
		}
	}
	c := mt.requests.WithLabelValues(s.key.direction, s.key.protocol, s.key.service, s.key.subset, code)
	next := make(map[string]prometheus.Counter, 1)
	if old != nil {
		next = make(map[string]prometheus.Counter, len(*old)+1)
		for kk, v := range *old {
			next[kk] = v
		}
	}
	next[code] = c
	s.codes.Store(&next)
	return c
}

// routeSeries keeps, next to a route's protection, the outbound series its
// calls record to, one per protocol: the first call of the route fills it
// and later ones find their collectors without hashing the four label
// values. A call whose destination differs (another subset of a split, a
// fallback) looks its series up in the map.
type routeSeries struct{ http, grpc atomic.Pointer[series] }

// outbound returns the outbound series of call c.
func (mt *Metrics) outbound(c *Call, protocol string) *series {
	k := seriesKey{Outbound, protocol, c.result.Service, c.result.Subset}
	if c.route == nil || c.route.series == nil {
		return mt.seriesOf(k)
	}
	slot := &c.route.series.http
	if protocol == GRPC {
		slot = &c.route.series.grpc
	}
	if s := slot.Load(); s != nil && s.mt == mt && s.key == k {
		return s
	}
	s := mt.seriesOf(k)
	slot.CompareAndSwap(nil, s) // the first one stays: no write per call
	return s
}

// Directions of a request, as the "direction" label.
const (
	Outbound = "outbound"
	Inbound  = "inbound"
)

// Protocols, as the "protocol" label.
const (
	HTTP = "http"
	GRPC = "grpc"
)

// NewMetrics creates the collectors and registers them on reg. The
// breaker-state gauge is read from state at scrape time, so it reports
// exactly the breakers in force (none for instances that are gone). On
// error nothing stays registered.
// local is the mesh's local service, whose adaptive inbound limit
// (inboundShedding) the metrics report; "" for none.
func NewMetrics(reg prometheus.Registerer, state func() *State, local string) (*Metrics, error) {
	const ns = "lightmesh"
	mt := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Requests through the mesh that reached an instance (outbound) or the handler (inbound), by status code (HTTP status, gRPC code name, or \"error\" without a response)."},
			[]string{"direction", "protocol", "destination_service", "destination_subset", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "request_duration_seconds",
			Help:                            "Latency of requests that reached an instance or the handler, until the response headers, retries included.",
			Buckets:                         []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour},
			[]string{"direction", "protocol", "destination_service", "destination_subset"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rejections_total",
			Help: "Calls refused before reaching an instance or the handler, by reason (rate_limited, shed, circuit_open, no_instance, no_route)."},
			[]string{"direction", "protocol", "destination_service", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "retries_total",
			Help: "Retries sent, by destination service."}, []string{"destination_service"}),
		// One series per service, none per lane value: lanes come and go
		// with every feature branch, and a series per lane would grow
		// without bound; which lane fell back is in the call's span and in
		// explain.
		laneFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "lane_fallbacks_total",
			Help: "Outbound calls that carried a lane the destination has a lanes rule for and were served by a base (non-lane) instance, because the lane had no available instance there."}, []string{"destination_service"}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "breaker_transitions_total",
			Help: "Circuit breaker state changes, by the state entered."}, []string{"destination_service", "to"}),
		rulesInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "rules_info",
			Help: "The rule document in force: 1 for its source and version."}, []string{"source", "version"}),
		documentInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "rule_document_info",
			Help: "Per-service rule layout: 1 for each document in force, by document name and version."}, []string{"document", "version"}),
		documentUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rule_document_updates_total",
			Help: "Per-service rule layout: documents received, by document name and result (applied, rejected, unchanged, missing)."}, []string{"document", "result"}),
		ruleUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rule_updates_total",
			Help: "Rule documents received, by result (applied, rejected, unchanged)."}, []string{"result"}),
		cpConnected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "control_plane_connected",
			Help: "1 while the watcher (rules or discovery) is connected to its control plane, 0 while it is waiting or reconnecting."}, []string{"watcher"}),
		cpLastEvent: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "control_plane_last_event_timestamp_seconds",
			Help: "Unix time of the last delivery from the control plane (a rule document or an instance list); time() minus it is the age."}, []string{"watcher"}),
	}
	for _, c := range []prometheus.Collector{mt.requests, mt.duration, mt.rejections, mt.retries, mt.laneFallbacks,
		&breakerCollector{state: state}, &shedCollector{state: state, local: local}, mt.breakerTransitions, mt.rulesInfo, mt.ruleUpdates, mt.documentInfo, mt.documentUpdates, mt.cpConnected, mt.cpLastEvent} {
		if err := reg.Register(c); err != nil {
			mt.Unregister()
			return nil, err
		}
		mt.collectors = append(mt.collectors, c)
	}
	return mt, nil
}

// Unregister removes every collector from the registerer, so a new mesh
// may register on it again.
func (mt *Metrics) Unregister() {
	if mt == nil {
		return
	}
	for _, c := range mt.collectors {
		mt.reg.Unregister(c)
	}
	mt.collectors = nil
}

// breakerStateDesc describes lightmesh_breaker_state.
var breakerStateDesc = prometheus.NewDesc("lightmesh_breaker_state",
	"Circuit breaker state, read from the rules in force at scrape time: 0 closed, 1 half-open, 2 open. upstream_instance is empty for a service breaker.",
	[]string{"destination_service", "upstream_instance"}, nil)

// breakerDropDesc describes lightmesh_breaker_drop_ratio.
var breakerDropDesc = prometheus.NewDesc("lightmesh_breaker_drop_ratio",
	"Share of calls the breaker refuses at scrape time: for an adaptive breaker its throttling probability max(0, (requests - k*accepts) / (requests + 1)), for a window breaker 1 while open and 0 otherwise.",
	[]string{"destination_service", "upstream_instance"}, nil)

// instanceEWMADesc describes lightmesh_instance_latency_ewma_seconds.
var instanceEWMADesc = prometheus.NewDesc("lightmesh_instance_latency_ewma_seconds",
	"Latency average of each instance of a service balanced by p2c-ewma or least-request, read at scrape time: what the balancer compares (with the calls in flight).",
	[]string{"destination_service", "upstream_instance"}, nil)

// instanceInFlightDesc describes lightmesh_instance_in_flight.
var instanceInFlightDesc = prometheus.NewDesc("lightmesh_instance_in_flight",
	"Calls in flight to each instance of a service balanced by p2c-ewma or least-request, read at scrape time.",
	[]string{"destination_service", "upstream_instance"}, nil)

// breakerCollector reports the state of every breaker of the current State.
type breakerCollector struct{ state func() *State }

// Describe implements prometheus.Collector.
func (c *breakerCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- breakerStateDesc
	ch <- breakerDropDesc
	ch <- instanceEWMADesc
	ch <- instanceInFlightDesc
}

// Collect implements prometheus.Collector.
func (c *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.state().Breakers() {
		ch <- prometheus.MustNewConstMetric(breakerStateDesc, prometheus.GaugeValue, float64(b.Breaker.State()), b.Service, b.Instance)
		ch <- prometheus.MustNewConstMetric(breakerDropDesc, prometheus.GaugeValue, b.Breaker.DropRatio(), b.Service, b.Instance)
	}
	for _, l := range c.state().Loads() {
		ch <- prometheus.MustNewConstMetric(instanceEWMADesc, prometheus.GaugeValue, l.EWMA.Seconds(), l.Service, l.Instance)
		ch <- prometheus.MustNewConstMetric(instanceInFlightDesc, prometheus.GaugeValue, float64(l.InFlight), l.Service, l.Instance)
	}
}

// statusCodes holds the "code" label of every valid HTTP status code, so
// recording one does not allocate.
var statusCodes = func() (codes [600]string) {
	for i := 100; i < 600; i++ {
		codes[i] = strconv.Itoa(i)
	}
	return codes
}()

// HTTPCode returns the "code" label of an HTTP status code; 0 means no
// response ("error").
func HTTPCode(code int) string {
	if code >= 100 && code < 600 {
		return statusCodes[code]
	}
	return "error"
}

// Observe records one call that reached an instance (outbound) or the
// handler (inbound): its code label and latency. When the call's span is
// sampled its trace id becomes the latency exemplar, at most once a second
// per series.
func (mt *Metrics) Observe(ctx context.Context, direction, protocol, service, subset, code string, d time.Duration) {
	if mt == nil {
		return
	}
	mt.observe(ctx, mt.seriesOf(seriesKey{direction, protocol, service, subset}), code, d, time.Time{})
}

// observe records one call to s that ended at end (zero: read the clock
// if an exemplar needs it).
func (mt *Metrics) observe(ctx context.Context, s *series, code string, d time.Duration, end time.Time) {
	s.counter(mt, code).Inc()
	// With the end known, the exemplar's once-a-second check comes before
	// the span context: most calls stop at that atomic load instead of
	// walking the caller's context chain.
	if s.exemplar != nil && (end.IsZero() || end.UnixNano()-s.lastExemplar.Load() >= int64(exemplarEvery)) {
		if sc := oteltrace.SpanContextFromContext(ctx); sc.IsSampled() {
			if end.IsZero() {
				end = time.Now()
			}
			now := end.UnixNano()
			if last := s.lastExemplar.Load(); now-last >= int64(exemplarEvery) && s.lastExemplar.CompareAndSwap(last, now) {
				s.exemplar.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": sc.TraceID().String()})
				return
			}
		}
	}
	s.duration.Observe(d.Seconds())
}

// Reject counts a call refused before it reached an instance or handler.
func (mt *Metrics) Reject(direction, protocol, service, reason string) {
	if mt != nil {
		mt.rejections.WithLabelValues(direction, protocol, service, reason).Inc()
	}
}

// Finish records an outbound call c after Run: its code and latency d
// (measured from the time Admit was given) when a try was sent, its
// rejection reason when none was.
func (mt *Metrics) Finish(ctx context.Context, c *Call, protocol, code string, d time.Duration, err error) {
	if mt == nil {
		return
	}
	if c.Sent() {
		end := c.end
		if end.IsZero() && !c.start.IsZero() {
			// d was read from the call's start: its end is known
			// without a second clock read for the exemplar.
			end = c.start.Add(d)
		}
		mt.observe(ctx, mt.outbound(c, protocol), code, d, end)
		if c.result.Lane != "" && c.result.Subset != router.LaneSubset {
			mt.laneFallbacks.WithLabelValues(c.result.Service).Inc()
		}
		return
	}
	if reason := RejectionReason(err); reason != "" {
		mt.Reject(Outbound, protocol, c.result.Service, reason)
	}
}

func (mt *Metrics) retry(service string) {
	if mt != nil {
		mt.retries.WithLabelValues(service).Inc()
	}
}

// BreakerChanged counts a breaker's transition.
func (mt *Metrics) BreakerChanged(service string, to breaker.State) {
	if mt != nil {
		mt.breakerTransitions.WithLabelValues(service, to.String()).Inc()
	}
}

// RulesApplied records the rule document now in force.
func (mt *Metrics) RulesApplied(source, version string) {
	if mt == nil {
		return
	}
	mt.rulesInfo.Reset()
	mt.rulesInfo.WithLabelValues(source, version).Set(1)
	mt.ruleUpdates.WithLabelValues("applied").Inc()
}

// RuleUpdate counts a rule document received with result rejected or
// unchanged.
func (mt *Metrics) RuleUpdate(result string) {
	if mt != nil {
		mt.ruleUpdates.WithLabelValues(result).Inc()
	}
}

// DocumentUpdate counts one document of a per-service layout received,
// with result applied, rejected, unchanged or missing; applied also
// records version as the document's version in force.
func (mt *Metrics) DocumentUpdate(document, version, result string) {
	if mt == nil {
		return
	}
	mt.documentUpdates.WithLabelValues(document, result).Inc()
	if result == "applied" {
		mt.documentInfo.DeletePartialMatch(prometheus.Labels{"document": document})
		mt.documentInfo.WithLabelValues(document, version).Set(1)
	}
}

// DocumentDropped records that the mesh stopped watching document: its
// series go, so documents watched for a while (a first use of a host
// named by request data) cannot grow the registry without bound.
func (mt *Metrics) DocumentDropped(document string) {
	if mt != nil {
		mt.documentInfo.DeletePartialMatch(prometheus.Labels{"document": document})
		mt.documentUpdates.DeletePartialMatch(prometheus.Labels{"document": document})
	}
}

// VersionInForce records version as the one in force of document (""
// for the one document of a single-document layout, named source there)
// without counting an update: the content in force delivered again under
// a new version, as a revert in etcd is.
func (mt *Metrics) VersionInForce(document, source, version string) {
	if mt == nil {
		return
	}
	if document == "" {
		mt.rulesInfo.Reset()
		mt.rulesInfo.WithLabelValues(source, version).Set(1)
		return
	}
	mt.documentInfo.DeletePartialMatch(prometheus.Labels{"document": document})
	mt.documentInfo.WithLabelValues(document, version).Set(1)
}

// ControlPlane records the connection of watcher ("rules" or
// "discovery") and the time of its last delivery (zero: none yet).
func (mt *Metrics) ControlPlane(watcher string, connected bool, lastEvent time.Time) {
	if mt == nil {
		return
	}
	v := 0.0
	if connected {
		v = 1
	}
	mt.cpConnected.WithLabelValues(watcher).Set(v)
	if !lastEvent.IsZero() {
		mt.cpLastEvent.WithLabelValues(watcher).Set(float64(lastEvent.UnixNano()) / 1e9)
	}
}
