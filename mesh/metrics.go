package mesh

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	oteltrace "go.opentelemetry.io/otel/trace"

	"github.com/lightmesh/lightmesh/breaker"
)

// metrics holds the mesh's Prometheus collectors. A nil *metrics records
// nothing, so every method is safe to call when metrics are off.
type metrics struct {
	requests           *prometheus.CounterVec
	duration           *prometheus.HistogramVec
	rejections         *prometheus.CounterVec
	retries            *prometheus.CounterVec
	breakerState       *prometheus.GaugeVec
	breakerTransitions *prometheus.CounterVec
	rulesInfo          *prometheus.GaugeVec
	ruleUpdates        *prometheus.CounterVec
	watcherConnected   prometheus.Gauge
}

// Directions of a request, as the "direction" label.
const (
	outbound = "outbound"
	inbound  = "inbound"
)

// Reasons a call was refused before reaching an instance, as the
// "reason" label of lightmesh_rejections_total.
const (
	reasonRateLimited = "rate_limited"
	reasonCircuitOpen = "circuit_open"
	reasonNoInstance  = "no_instance"
	reasonNoRoute     = "no_route"
)

// newMetrics creates the collectors and registers them on reg. Every label
// value comes from the rules or the mesh itself (service, subset and route
// names, status codes), never from raw request data, so series stay
// bounded.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "lightmesh"
	mt := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Requests through the mesh by direction, service, subset and status code (\"error\" when no response)."},
			[]string{"direction", "service", "subset", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "request_duration_seconds",
			Help:                            "Request latency until the response headers, retries included.",
			Buckets:                         []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: time.Hour},
			[]string{"direction", "service", "subset"}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rejections_total",
			Help: "Calls refused before reaching an instance, by reason (rate_limited, circuit_open, no_instance, no_route)."},
			[]string{"direction", "service", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "retries_total",
			Help: "Retries sent, by service."}, []string{"service"}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 half-open, 2 open. instance is empty for a service breaker."},
			[]string{"service", "instance"}),
		breakerTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "breaker_transitions_total",
			Help: "Circuit breaker state changes, by the state entered."}, []string{"service", "to"}),
		rulesInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "rules_info",
			Help: "The rule document in force: 1 for its source and version."}, []string{"source", "version"}),
		ruleUpdates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rule_updates_total",
			Help: "Rule documents received, by result (applied, rejected, unchanged)."}, []string{"result"}),
		watcherConnected: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "watcher_connected",
			Help: "1 while the rule source's watcher is connected."}),
	}
	for _, c := range []prometheus.Collector{mt.requests, mt.duration, mt.rejections, mt.retries, mt.breakerState,
		mt.breakerTransitions, mt.rulesInfo, mt.ruleUpdates, mt.watcherConnected} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return mt, nil
}

// statusCodes holds the "code" label of every valid HTTP status code, so
// recording one does not allocate.
var statusCodes = func() (codes [600]string) {
	for i := 100; i < 600; i++ {
		codes[i] = strconv.Itoa(i)
	}
	return codes
}()

func codeLabel(code int) string {
	if code >= 100 && code < 600 {
		return statusCodes[code]
	}
	return "error"
}

// observe records one finished request; code 0 means no response. When the
// request's span is sampled its trace id becomes the latency exemplar.
func (mt *metrics) observe(ctx context.Context, direction, service, subset string, code int, d time.Duration) {
	if mt == nil {
		return
	}
	mt.requests.WithLabelValues(direction, service, subset, codeLabel(code)).Inc()
	h := mt.duration.WithLabelValues(direction, service, subset)
	if sc := oteltrace.SpanContextFromContext(ctx); sc.IsSampled() {
		if eo, ok := h.(prometheus.ExemplarObserver); ok {
			eo.ObserveWithExemplar(d.Seconds(), prometheus.Labels{"trace_id": sc.TraceID().String()})
			return
		}
	}
	h.Observe(d.Seconds())
}

func (mt *metrics) reject(direction, service, reason string) {
	if mt != nil {
		mt.rejections.WithLabelValues(direction, service, reason).Inc()
	}
}

func (mt *metrics) retry(service string) {
	if mt != nil {
		mt.retries.WithLabelValues(service).Inc()
	}
}

func (mt *metrics) breakerChanged(service, instance string, to breaker.State) {
	if mt == nil {
		return
	}
	mt.breakerState.WithLabelValues(service, instance).Set(float64(to))
	mt.breakerTransitions.WithLabelValues(service, to.String()).Inc()
}

func (mt *metrics) rulesApplied(source, version string) {
	if mt == nil {
		return
	}
	mt.rulesInfo.Reset()
	mt.rulesInfo.WithLabelValues(source, version).Set(1)
	mt.ruleUpdates.WithLabelValues("applied").Inc()
}

func (mt *metrics) ruleUpdate(result string) {
	if mt != nil {
		mt.ruleUpdates.WithLabelValues(result).Inc()
	}
}

func (mt *metrics) watcher(connected bool) {
	if mt == nil {
		return
	}
	v := 0.0
	if connected {
		v = 1
	}
	mt.watcherConnected.Set(v)
}
