package mesh

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// trafficWindow is how far back the status page's rates look.
const trafficWindow = time.Minute

// trafficKey names the traffic to one subset of a service.
type trafficKey struct{ service, subset string }

type trafficCounts struct{ requests, errors float64 }

type trafficSample struct {
	at     time.Time
	totals map[trafficKey]trafficCounts
}

// trafficMeter reads the mesh's outbound request counters
// (lightmesh_requests_total) from the metrics registry and turns
// successive reads into rates: each read is kept, at most one a second
// for trafficWindow, and a rate is taken against the oldest kept. It
// costs nothing between reads: the request path only counts, as it does
// for metrics. A nil meter reads nothing.
type trafficMeter struct {
	gather prometheus.Gatherer

	mu      sync.Mutex
	samples []trafficSample // oldest first
}

// newTrafficMeter returns a meter over reg when it can be read (a
// *prometheus.Registry can), nil otherwise.
func newTrafficMeter(reg prometheus.Registerer) *trafficMeter {
	g, ok := reg.(prometheus.Gatherer)
	if !ok {
		return nil
	}
	return &trafficMeter{gather: g}
}

// read returns the traffic per service and subset at now.
func (t *trafficMeter) read(now time.Time) map[trafficKey]TrafficStatus {
	if t == nil {
		return nil
	}
	totals := t.totals()
	if totals == nil {
		return nil
	}
	t.mu.Lock()
	for len(t.samples) > 0 && now.Sub(t.samples[0].at) > trafficWindow {
		t.samples = t.samples[1:]
	}
	var base *trafficSample
	if len(t.samples) > 0 {
		base = &t.samples[0]
	}
	if n := len(t.samples); n == 0 || now.Sub(t.samples[n-1].at) >= time.Second {
		t.samples = append(t.samples, trafficSample{at: now, totals: totals})
	}
	t.mu.Unlock()
	out := make(map[trafficKey]TrafficStatus, len(totals))
	for k, c := range totals {
		ts := TrafficStatus{Subset: k.subset, Requests: c.requests, Errors: c.errors}
		if base != nil && now.After(base.at) {
			ts.Window = now.Sub(base.at)
			prev := base.totals[k]
			ts.RequestRate = (c.requests - prev.requests) / ts.Window.Seconds()
			ts.ErrorRate = (c.errors - prev.errors) / ts.Window.Seconds()
		}
		out[k] = ts
	}
	return out
}

// totals sums the outbound request counters by service and subset; nil
// when the registry cannot be read.
func (t *trafficMeter) totals() map[trafficKey]trafficCounts {
	families, err := t.gather.Gather()
	if err != nil && len(families) == 0 {
		return nil
	}
	out := map[trafficKey]trafficCounts{}
	for _, f := range families {
		if f.GetName() != "lightmesh_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			var k trafficKey
			var direction, code string
			for _, lp := range m.GetLabel() {
				switch lp.GetName() {
				case "direction":
					direction = lp.GetValue()
				case "destination_service":
					k.service = lp.GetValue()
				case "destination_subset":
					k.subset = lp.GetValue()
				case "code":
					code = lp.GetValue()
				}
			}
			if direction != "outbound" {
				continue
			}
			c := out[k]
			v := m.GetCounter().GetValue()
			c.requests += v
			if failedCode(code) {
				c.errors += v
			}
			out[k] = c
		}
	}
	return out
}

// failedCode reports whether a request's code (HTTP status, gRPC code
// name, or "error" without a response) is a failure: no response, an
// HTTP 5xx, or a gRPC code that says the server or the network failed.
func failedCode(code string) bool {
	if n, err := strconv.Atoi(code); err == nil {
		return n >= 500
	}
	switch code {
	case "error", "Unknown", "DeadlineExceeded", "ResourceExhausted", "Aborted", "Internal", "Unavailable", "DataLoss":
		return true
	}
	return false
}
