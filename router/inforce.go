package router

import (
	"math/bits"
	"strconv"
)

// InForce is what applies to the calls to one service: its rules composed
// with the defaults document, the built-in defaults and each route's
// overrides, every setting filled in. It is computed once, by
// Rules.InForce, from the compiled rules the mesh runs on, and every tool
// shows it (explain, diff, push --dry-run, the status page): two documents
// that write the same settings differently (a default written out, a
// section taken from the defaults) have equal InForce values. Its JSON form
// is what tools print and compare.
type InForce struct {
	Service string `json:"service"`
	// Named is false for a service the rules do not name: it runs on the
	// defaults alone.
	Named bool `json:"named"`
	// FromDefaults lists the settings the service takes from the defaults
	// document (timeout, retry, breaker, outlierDetection, rateLimit,
	// lanes, loadBalancer, slowStart, inboundShedding).
	FromDefaults []string `json:"fromDefaults,omitempty"`
	// Builtin lists the settings a service no rule names takes from
	// BuiltinDefaults, the defaults document not setting them.
	Builtin []string `json:"builtin,omitempty"`
	// Call is what applies to a call no route takes: the service's own
	// settings, or the defaults'.
	Call CallInForce `json:"call"`
	// Routes holds what applies to the calls of each route, in order.
	Routes []CallInForce `json:"routes,omitempty"`
	// Breaker is the service's breaker and OutlierDetection the breaker
	// of each instance; nil means none.
	Breaker          *BreakerInForce `json:"breaker,omitempty"`
	OutlierDetection *BreakerInForce `json:"outlierDetection,omitempty"`
	// Inbound holds the limit of each inbound route, in order.
	Inbound []InboundInForce `json:"inbound,omitempty"`
	// Lanes is the service's lanes rule (its own or the defaults'); nil
	// means none.
	Lanes *LanesInForce `json:"lanes,omitempty"`
	// SlowStart is the ramp of joining and recovering instances; nil
	// means none.
	SlowStart *SlowStartInForce `json:"slowStart,omitempty"`
	// LoadBalancer is round-robin, p2c-ewma or least-request.
	LoadBalancer string `json:"loadBalancer,omitempty"`
	// ServerID is the SPIFFE ID the service's servers must present to
	// its callers (mutual TLS); "" when calls go as the URL says.
	ServerID string `json:"serverID,omitempty"`
	// Authorization decides which callers the service serves; nil means
	// every caller.
	Authorization *AuthorizationInForce `json:"authorization,omitempty"`
	// InboundShedding is the shedding of the requests the service
	// receives as a mesh's local service: mode off or adaptive.
	InboundShedding *SheddingInForce `json:"inboundShedding,omitempty"`
}

// SlowStartInForce is a slowStart section with its default filled in.
type SlowStartInForce struct {
	Window     Duration `json:"window"`
	MinPercent int      `json:"minPercent"`
}

// CallInForce is what applies to the calls of one route.
type CallInForce struct {
	// Route is the route's name (routes[i] when it has none); "" for the
	// service's calls.
	Route string `json:"route,omitempty"`
	// Timeout bounds the whole call, retries included; Off means none.
	Timeout Duration `json:"timeout"`
	// Retry is nil when calls are not retried.
	Retry *RetryInForce `json:"retry,omitempty"`
	// RateLimit is nil when calls are not limited.
	RateLimit *RateLimitInForce `json:"rateLimit,omitempty"`
}

// RetryInForce is a retry section with every default filled in.
type RetryInForce struct {
	Attempts int `json:"attempts"`
	// PerTryTimeout bounds each try; Off means the call's timeout only.
	PerTryTimeout Duration `json:"perTryTimeout"`
	Backoff       Duration `json:"backoff"`
	Budget        float64  `json:"budget"`
	NonIdempotent bool     `json:"nonIdempotent"`
	// OnHTTP lists what HTTP calls are retried on (connect-failure, reset,
	// per-try-timeout, then status codes, 5xx for the whole class), and
	// OnGRPC what gRPC calls are retried on (the same, then code names).
	OnHTTP []string `json:"onHTTP"`
	OnGRPC []string `json:"onGRPC"`
}

// RateLimitInForce is a token bucket with its burst filled in.
type RateLimitInForce struct {
	RPS   float64 `json:"rps"`
	Burst int     `json:"burst"`
}

// BreakerInForce is a breaker section with every default filled in.
type BreakerInForce struct {
	// Mode is window or adaptive; K is the adaptive multiplier (0 in
	// window mode).
	Mode              string   `json:"mode"`
	K                 float64  `json:"k,omitempty"`
	Window            Duration `json:"window"`
	Buckets           int      `json:"buckets"`
	MinRequests       int      `json:"minRequests"`
	FailureRatio      float64  `json:"failureRatio"`
	SlowCallThreshold Duration `json:"slowCallThreshold"` // Off: slow calls not counted
	SlowCallRatio     float64  `json:"slowCallRatio"`
	OpenBase          Duration `json:"openBase"`
	OpenMax           Duration `json:"openMax"`
	Multiplier        float64  `json:"multiplier"`
	Jitter            float64  `json:"jitter"`
	HalfOpenProbes    int      `json:"halfOpenProbes"`
	// FailureStatus lists the HTTP status codes counted as failures (5xx
	// for the whole class); FailureCodes the gRPC codes, by name.
	FailureStatus []string `json:"failureStatus"`
	FailureCodes  []string `json:"failureCodes"`
	// MaxEjectionPercent is outlierDetection's cap (0 for a service
	// breaker).
	MaxEjectionPercent int `json:"maxEjectionPercent,omitempty"`
}

// InboundInForce is the limit of one inbound route.
type InboundInForce struct {
	Name      string           `json:"name"`
	RateLimit RateLimitInForce `json:"rateLimit"`
}

// InForce returns what applies to the calls to service, or nil when r is
// nil. For a service the rules do not name it is what the defaults give
// every such service (Named false; the plain call when there are none).
func (r *Rules) InForce(service string) *InForce {
	if r == nil {
		return nil
	}
	in := &InForce{Service: service}
	p := r.DefaultPolicy()
	if sr := r.services[service]; sr != nil {
		in.Named, p = true, sr.policy
	}
	in.FromDefaults = r.defaulted(service)
	if !in.Named {
		_, in.Builtin = withBuiltins(r.doc.Defaults)
	}
	in.Lanes = lanesInForce(r.laneRule(service))
	if id, ok := r.ServerID(service); ok {
		in.ServerID = id.String()
	}
	in.Authorization = r.Authorizer(service).inForce()
	if p == nil {
		in.Call = CallInForce{Timeout: Off}
		return in
	}
	in.Call = callInForce(&p.Default)
	for i := range p.Routes {
		in.Routes = append(in.Routes, callInForce(&p.Routes[i]))
	}
	in.Breaker = breakerInForce(p.Breaker)
	in.OutlierDetection = breakerInForce(p.Outlier)
	in.LoadBalancer = p.LoadBalancer.String()
	in.InboundShedding = sheddingInForce(p.Shed)
	if ss := p.SlowStart; ss != nil {
		in.SlowStart = &SlowStartInForce{Window: Duration(ss.Window), MinPercent: ss.MinPercent}
	}
	for _, ib := range p.Inbound {
		in.Inbound = append(in.Inbound, InboundInForce{Name: ib.Name, RateLimit: RateLimitInForce{RPS: ib.RateLimit.RPS, Burst: ib.RateLimit.Burst}})
	}
	return in
}

func callInForce(cp *CallPolicy) CallInForce {
	c := CallInForce{Route: cp.Route, Timeout: durationInForce(cp.Timeout.Nanoseconds())}
	if rp := cp.Retry; rp != nil {
		c.Retry = &RetryInForce{
			Attempts: rp.Attempts, PerTryTimeout: durationInForce(rp.PerTryTimeout.Nanoseconds()),
			Backoff: Duration(rp.Backoff), Budget: rp.Budget, NonIdempotent: rp.NonIdempotent,
			OnHTTP: rp.On.conditions(statusNames(&rp.On.Status), nil),
			OnGRPC: rp.On.conditions(nil, codeNames(rp.On.Codes)),
		}
	}
	if rl := cp.RateLimit; rl != nil {
		c.RateLimit = &RateLimitInForce{RPS: rl.RPS, Burst: rl.Burst}
	}
	return c
}

// durationInForce is ns as a Duration, Off for none.
func durationInForce(ns int64) Duration {
	if ns == 0 {
		return Off
	}
	return Duration(ns)
}

func breakerInForce(bp *BreakerPolicy) *BreakerInForce {
	if bp == nil {
		return nil
	}
	s := bp.Settings
	return &BreakerInForce{
		Mode: s.Mode.String(), K: s.K,
		Window: Duration(s.Window), Buckets: s.Buckets, MinRequests: int(s.MinRequests),
		FailureRatio: s.FailureRatio, SlowCallThreshold: durationInForce(s.SlowCallThreshold.Nanoseconds()),
		SlowCallRatio: s.SlowCallRatio, OpenBase: Duration(s.OpenBase), OpenMax: Duration(s.OpenMax),
		Multiplier: s.Multiplier, Jitter: s.Jitter, HalfOpenProbes: int(s.HalfOpenProbes),
		FailureStatus: statusNames(&bp.FailureStatus), FailureCodes: codeNames(bp.FailureCodes),
		MaxEjectionPercent: bp.MaxEjectionPercent,
	}
}

// conditions lists the retry conditions of o for one protocol: the
// transport ones, then status (HTTP) or codes (gRPC).
func (o *RetryOn) conditions(status, codes []string) []string {
	out := []string{}
	if o.ConnectFailure {
		out = append(out, "connect-failure")
	}
	if o.Reset {
		out = append(out, "reset")
	}
	if o.PerTryTimeout {
		out = append(out, "per-try-timeout")
	}
	out = append(out, status...)
	return append(out, codes...)
}

// statusNames lists the codes of s in order, 5xx for the whole class.
func statusNames(s *StatusSet) []string {
	out := []string{}
	all5xx := true
	for c := 500; c <= 599; c++ {
		all5xx = all5xx && s.Has(c)
	}
	for c := 100; c <= 599; c++ {
		switch {
		case all5xx && c == 500:
			out = append(out, "5xx")
		case all5xx && c > 500:
		case s.Has(c):
			out = append(out, strconv.Itoa(c))
		}
	}
	return out
}

// codeNames lists the gRPC codes of s by name, as Envoy writes them
// (unavailable, deadline-exceeded).
func codeNames(s CodeSet) []string {
	out := []string{}
	for s != 0 {
		c := uint32(bits.TrailingZeros32(uint32(s)))
		s &^= 1 << c
		out = append(out, GRPCCodeNames()[c-1]) // no set holds OK
	}
	return out
}

// PolicyInForce is the protection one route's calls get, as InForce
// computes it: the call's timeout, retry and rate limit (the route's),
// the service's breakers and balancing, and the settings taken from the
// defaults. Explain shows it.
type PolicyInForce struct {
	CallInForce
	Breaker          *BreakerInForce `json:"breaker,omitempty"`
	OutlierDetection *BreakerInForce `json:"outlierDetection,omitempty"`
	// LoadBalancer is round-robin, p2c-ewma or least-request; SlowStart
	// the ramp of joining instances (nil: none).
	LoadBalancer string            `json:"loadBalancer,omitempty"`
	SlowStart    *SlowStartInForce `json:"slowStart,omitempty"`
	// FromDefaults lists the settings the service takes from the
	// defaults document.
	FromDefaults []string `json:"fromDefaults,omitempty"`
	// Builtin lists the settings it takes from BuiltinDefaults (as
	// InForce.Builtin).
	Builtin []string `json:"builtin,omitempty"`
	// ServerID and Authorization are the service's (InForce's).
	ServerID      string                `json:"serverID,omitempty"`
	Authorization *AuthorizationInForce `json:"authorization,omitempty"`
}

// ForRoute returns what applies to the calls of route i of the service
// (the service's own calls when i is not one of its routes); nil for a
// nil InForce.
func (in *InForce) ForRoute(i int) *PolicyInForce {
	if in == nil {
		return nil
	}
	p := &PolicyInForce{CallInForce: in.Call, Breaker: in.Breaker, OutlierDetection: in.OutlierDetection,
		LoadBalancer: in.LoadBalancer, SlowStart: in.SlowStart, FromDefaults: in.FromDefaults, Builtin: in.Builtin,
		ServerID: in.ServerID, Authorization: in.Authorization}
	if i >= 0 && i < len(in.Routes) {
		p.CallInForce = in.Routes[i]
	}
	return p
}
