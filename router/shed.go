package router

import (
	"math"
	"strings"
	"time"
)

// InboundShedding is the inboundShedding section of a service (or of
// the defaults): how the mesh sheds the requests the local service
// receives when it is over the concurrency it can serve (see
// ShedPolicy). Zero fields take the defaults named beside them.
type InboundShedding struct {
	// Mode is adaptive (a concurrency limit that follows the service's
	// measured latency) or off.
	Mode string `yaml:"mode" json:"mode"`
	// Tolerance is how many times its no-load latency the service's
	// average latency may reach before the limit comes down: 1.1..10,
	// zero means 1.5.
	Tolerance float64 `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// InitialLimit is the limit before any latency is measured: zero
	// means 100.
	InitialLimit int `yaml:"initialLimit,omitempty" json:"initialLimit,omitempty"`
	// MinLimit and MaxLimit bound the limit: zero means 4 and 10000.
	MinLimit int `yaml:"minLimit,omitempty" json:"minLimit,omitempty"`
	MaxLimit int `yaml:"maxLimit,omitempty" json:"maxLimit,omitempty"`
	// Window is how often the limit is recomputed from the latencies of
	// the requests finished meanwhile (at least MinSamples of them):
	// zero means 100ms.
	Window Duration `yaml:"window,omitempty" json:"window,omitempty"`
}

// The defaults of an inboundShedding section.
const (
	DefaultShedTolerance    = 1.5
	DefaultShedInitialLimit = 100
	DefaultShedMinLimit     = 4
	DefaultShedMaxLimit     = 10000
	DefaultShedWindow       = 100 * time.Millisecond
	// ShedMinSamples is how many finished requests a window needs before
	// it recomputes the limit.
	ShedMinSamples = 10
)

// ShedPolicy is a compiled inboundShedding section in mode adaptive,
// every default filled in: a limit on the requests the local service
// serves at once, recomputed every Window from their latency. When a
// window's average latency exceeds Tolerance × the no-load latency (the
// lowest window average of the last minute or so), the limit becomes
// limit × Tolerance × noLoad / average — by Little's law, Tolerance ×
// the concurrency the service actually completes — and otherwise, while
// requests use at least half the limit, it grows: by its square root
// while the average stays below half way to the tolerance, else by one.
type ShedPolicy struct {
	Tolerance    float64
	InitialLimit int
	MinLimit     int
	MaxLimit     int
	Window       time.Duration
}

// ShedModeAdaptive and ShedModeOff are the modes of inboundShedding.
const (
	ShedModeAdaptive = "adaptive"
	ShedModeOff      = "off"
)

// shedding compiles an inboundShedding section; nil for none or mode
// off.
func (c *compiler) shedding(path string, s *InboundShedding) *ShedPolicy {
	if s == nil {
		return nil
	}
	switch s.Mode {
	case ShedModeAdaptive:
	case ShedModeOff:
		return nil
	case "":
		c.missing(path, "mode")
		return nil
	default:
		c.fail(path+".mode", "unknown mode %.40q (want adaptive or off)", s.Mode)
		return nil
	}
	p := &ShedPolicy{Tolerance: s.Tolerance, InitialLimit: s.InitialLimit, MinLimit: s.MinLimit, MaxLimit: s.MaxLimit, Window: s.Window.Std()}
	if p.Tolerance == 0 {
		p.Tolerance = DefaultShedTolerance
	} else if !(p.Tolerance >= 1.1 && p.Tolerance <= 10) || math.IsNaN(p.Tolerance) {
		c.fail(path+".tolerance", "must be 1.1..10")
	}
	limit := func(field string, v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 1 || *v > 1_000_000:
			c.fail(path+"."+field, "must be 1..1000000")
		}
	}
	limit("minLimit", &p.MinLimit, DefaultShedMinLimit)
	limit("maxLimit", &p.MaxLimit, DefaultShedMaxLimit)
	limit("initialLimit", &p.InitialLimit, DefaultShedInitialLimit)
	if p.MinLimit > p.MaxLimit {
		c.fail(path+".minLimit", "must be <= maxLimit (%d)", p.MaxLimit)
	}
	p.InitialLimit = min(max(p.InitialLimit, p.MinLimit), p.MaxLimit)
	switch {
	case p.Window == 0:
		p.Window = DefaultShedWindow
	case p.Window < 10*time.Millisecond || p.Window > time.Minute:
		c.fail(path+".window", "must be 10ms..1m")
	}
	return p
}

// ShedExempt reports whether a request to path (an HTTP path, or a gRPC
// full method) is never shed: health checks (/healthz, /readyz, /livez,
// /health, /ready, /live, and gRPC's grpc.health.v1.Health service), a
// Prometheus scrape (/metrics), Go's profiles (under /debug/pprof/) and
// the mesh's own endpoints (under /lightmesh/, where the status page is
// mounted). Shedding a probe gets an overloaded instance restarted or
// taken out of its load balancer, and shedding a scrape or a profile
// hides the overload from the people handling it.
func ShedExempt(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/livez", "/health", "/ready", "/live", "/metrics":
		return true
	}
	return strings.HasPrefix(path, "/grpc.health.v1.Health/") || strings.HasPrefix(path, "/lightmesh/") ||
		strings.HasPrefix(path, "/debug/pprof/")
}

// SheddingInForce is what inboundShedding applies: mode off, or adaptive
// with every tuning field filled in.
type SheddingInForce struct {
	Mode         string   `json:"mode"`
	Tolerance    float64  `json:"tolerance,omitempty"`
	InitialLimit int      `json:"initialLimit,omitempty"`
	MinLimit     int      `json:"minLimit,omitempty"`
	MaxLimit     int      `json:"maxLimit,omitempty"`
	Window       Duration `json:"window,omitempty"`
}

// sheddingInForce describes p; nil (nothing shown) for off.
func sheddingInForce(p *ShedPolicy) *SheddingInForce {
	if p == nil {
		return nil
	}
	return &SheddingInForce{Mode: ShedModeAdaptive, Tolerance: p.Tolerance, InitialLimit: p.InitialLimit,
		MinLimit: p.MinLimit, MaxLimit: p.MaxLimit, Window: Duration(p.Window)}
}
