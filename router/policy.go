package router

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
)

// Policy is the compiled protection of one service: the breakers, limits,
// timeouts and retries a mesh applies around calls to it and, for the
// local service, around the requests it receives. It is part of the
// immutable Rules; the stateful parts built from it (breakers, token
// buckets, retry budgets) live in the mesh.
type Policy struct {
	// Routes holds the call policy of each route, by route index.
	Routes []CallPolicy
	// Default applies to calls of a service that has no routes.
	Default CallPolicy
	// Breaker is the service's circuit breaker; nil means none.
	Breaker *BreakerPolicy
	// Outlier gives every instance a breaker of its own; nil means no
	// ejection.
	Outlier *BreakerPolicy
	// Inbound holds the limit of each inbound route, by index.
	Inbound []InboundPolicy
	// SlowStart is the ramp of instances that join or recover; nil means
	// none.
	SlowStart *SlowStartPolicy
	// LoadBalancer is how an instance is chosen within a subset.
	LoadBalancer LoadBalancer
	// Shed is the adaptive limit on the requests the service receives
	// as the local service; nil means no shedding.
	Shed *ShedPolicy
}

// LoadBalancer is how a call's instance is chosen within its subset.
type LoadBalancer int

const (
	// RoundRobin is smooth weighted round-robin by discovery weight.
	RoundRobin LoadBalancer = iota
	// P2CEWMA draws two instances and takes the one with the lower
	// latency EWMA × (in-flight calls + 1) / weight.
	P2CEWMA
	// LeastRequest draws two instances and takes the one with fewer
	// in-flight calls per unit of weight.
	LeastRequest
)

// String returns the name a rule document gives lb.
func (lb LoadBalancer) String() string {
	switch lb {
	case P2CEWMA:
		return "p2c-ewma"
	case LeastRequest:
		return "least-request"
	}
	return "round-robin"
}

// SlowStartPolicy is a compiled slowStart section.
type SlowStartPolicy struct {
	// Window is how long the ramp lasts.
	Window time.Duration
	// MinPercent is the share of its weight an instance starts with.
	MinPercent int
}

// DefaultSlowStartMinPercent is slowStart.minPercent when it is not set,
// Envoy's min_weight_percent.
const DefaultSlowStartMinPercent = 10

// CallPolicy is what applies to the calls one route matches. Routes that
// do not set their own retry or rate limit share the service's: the same
// *RetryPolicy or *RateLimitPolicy value, so the mesh gives them one
// budget or one bucket.
type CallPolicy struct {
	// Route is the route's name ("" for Default).
	Route string
	// Timeout bounds the whole call, retries included; 0 means none.
	Timeout time.Duration
	// Retry is nil when the call is not retried.
	Retry *RetryPolicy
	// RateLimit is nil when the call is not limited.
	RateLimit *RateLimitPolicy
}

// Plain reports whether the policy adds nothing around a call: no
// timeout, no retry, no limit.
func (p *CallPolicy) Plain() bool { return p.Timeout == 0 && p.Retry == nil && p.RateLimit == nil }

// RetryPolicy says when and how often a failed call is tried again.
type RetryPolicy struct {
	// Scope names the budget across rule changes: "" for the service's
	// retry section, the route's name for a route's own.
	Scope string
	// Attempts is the number of retries after the first try.
	Attempts int
	// PerTryTimeout bounds each try; 0 means only the call's timeout.
	PerTryTimeout time.Duration
	// Backoff is the first wait between tries; it doubles each time, with
	// jitter, up to 10 times Backoff.
	Backoff time.Duration
	// Budget caps retries at this fraction of the calls sent (plus a
	// reserve of 10).
	Budget float64
	// NonIdempotent allows retrying HTTP methods other than GET, HEAD,
	// OPTIONS, TRACE, PUT and DELETE.
	NonIdempotent bool
	// On lists the conditions that trigger a retry.
	On RetryOn
}

// RetryOn is the set of conditions a retry policy retries on.
type RetryOn struct {
	// ConnectFailure: the try could not connect (it was never sent).
	ConnectFailure bool
	// Reset: the connection broke during the try.
	Reset bool
	// PerTryTimeout: the try ran out of its own time.
	PerTryTimeout bool
	// Status holds the HTTP status codes retried.
	Status StatusSet
	// Codes holds the gRPC status codes retried.
	Codes CodeSet
}

// RateLimitPolicy is a token bucket: RPS tokens a second, up to Burst.
type RateLimitPolicy struct {
	// Scope names the bucket across rule changes: "" for the service's
	// rateLimit section, the route's name for a route's own, and
	// "inbound:" + the inbound route's name for inbound limits.
	Scope string
	RPS   float64
	Burst int
}

// BreakerPolicy is a compiled breaker or outlierDetection section.
type BreakerPolicy struct {
	// Settings has every default filled in (breaker.Settings.WithDefaults).
	Settings breaker.Settings
	// FailureStatus holds the HTTP status codes counted as failures.
	FailureStatus StatusSet
	// FailureCodes holds the gRPC status codes counted as failures.
	FailureCodes CodeSet
	// MaxEjectionPercent (outlier detection only; 0 for a service
	// breaker) caps the share of the service's instances ejected at once,
	// at least one.
	MaxEjectionPercent int
}

// InboundPolicy is the limit of one inbound route.
type InboundPolicy struct {
	// Name is the inbound route's name ("inbound[i]" when unnamed).
	Name      string
	RateLimit RateLimitPolicy
}

// StatusSet is a set of HTTP status codes 100..599. The zero value is
// empty.
type StatusSet struct{ bits [10]uint64 }

func (s *StatusSet) add(code int) { s.bits[code/64] |= 1 << (code % 64) }

func (s *StatusSet) addRange(lo, hi int) {
	for c := lo; c <= hi; c++ {
		s.add(c)
	}
}

// Has reports whether code is in the set.
func (s *StatusSet) Has(code int) bool {
	return code >= 0 && code < 640 && s.bits[code/64]&(1<<(code%64)) != 0
}

// CodeSet is a set of gRPC status codes (0..16, as numbered by the gRPC
// specification). The zero value is empty.
type CodeSet uint32

// Has reports whether code is in the set.
func (s CodeSet) Has(code uint32) bool { return code < 32 && s&(1<<code) != 0 }

// grpcCodes names the gRPC status codes by their number, as the gRPC
// specification spells them. They are listed here rather than taken from
// google.golang.org/grpc/codes so that HTTP-only programs do not link
// grpc-go.
var grpcCodes = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// GRPCCodeName returns the name the gRPC specification gives code
// (DEADLINE_EXCEEDED), or "CODE_<n>" for a code it does not define.
func GRPCCodeName(code uint32) string {
	if code < uint32(len(grpcCodes)) {
		return grpcCodes[code]
	}
	return "CODE_" + strconv.FormatUint(uint64(code), 10)
}

// The gRPC codes the defaults name.
const (
	codeUnknown           = 2
	codeDeadlineExceeded  = 4
	codeResourceExhausted = 8
	codeInternal          = 13
	codeUnavailable       = 14
)

// grpcCode returns the number of the gRPC code named s, written as the
// specification does (DEADLINE_EXCEEDED), as grpc-go does
// (DeadlineExceeded) or as Envoy does (deadline-exceeded).
func grpcCode(s string) (uint32, bool) {
	norm := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r == '-' || r == '_' {
				return -1
			}
			return r
		}, strings.ToLower(s))
	}
	want := norm(s)
	for i, name := range grpcCodes {
		if norm(name) == want {
			return uint32(i), true
		}
	}
	return 0, false
}

// Defaults of the protection sections.
const (
	// DefaultRetryBackoff is retry.backoff when it is not set.
	DefaultRetryBackoff = 25 * time.Millisecond
	// DefaultRetryBudget is retry.budget when it is not set.
	DefaultRetryBudget = 0.2
	// MaxRetryAttempts caps retry.attempts.
	MaxRetryAttempts = 10
)

// DefaultMaxEjectionPercent is outlierDetection.maxEjectionPercent when
// it is not set. Envoy's 10% leaves a fleet of up to 19 instances one
// ejection; most services a mesh SDK serves run 2 to 10 instances, where
// half keeps a failing minority out while never ejecting every instance
// of a fleet of two or more.
const DefaultMaxEjectionPercent = 50

// defaultRetryOn is what retry.on means when empty: for HTTP
// connect-failure, reset, per-try-timeout, 502, 503 and 504; for gRPC
// connect-failure, reset, per-try-timeout and UNAVAILABLE.
var defaultRetryOn = [...]string{"connect-failure", "reset", "per-try-timeout", "502", "503", "504", "unavailable"}

// policy compiles the protection sections of service svc; routes are the
// compiled routes, for their names.
func (c *compiler) policy(path string, svc Service, routes []route) *Policy {
	p := &Policy{}
	svcRetry := c.retry(path+".retry", svc.Retry, "")
	svcLimit := c.rateLimit(path+".rateLimit", svc.RateLimit, "")
	timeout := c.timeout(path+".timeout", svc.Timeout)
	p.Default = CallPolicy{Timeout: timeout, Retry: svcRetry, RateLimit: svcLimit}
	for i, r := range svc.Routes {
		rp := fmt.Sprintf("%s.routes[%d]", path, i)
		name := routes[i].name
		cp := CallPolicy{Route: name, Timeout: timeout, Retry: svcRetry, RateLimit: svcLimit}
		if r.Timeout.IsSet() { // off runs the route without the service's timeout
			cp.Timeout = c.timeout(rp+".timeout", r.Timeout)
		}
		if r.Retry != nil {
			cp.Retry = c.retry(rp+".retry", r.Retry, name)
		}
		if r.RateLimit != nil {
			cp.RateLimit = c.rateLimit(rp+".rateLimit", r.RateLimit, name)
		}
		p.Routes = append(p.Routes, cp)
	}
	if svc.Breaker != nil {
		p.Breaker = c.breaker(path+".breaker", svc.Breaker, true)
	}
	if svc.OutlierDetection != nil {
		p.Outlier = c.breaker(path+".outlierDetection", svc.OutlierDetection, false)
	}
	switch svc.LoadBalancer {
	case "", "round-robin":
	case "p2c-ewma":
		p.LoadBalancer = P2CEWMA
	case "least-request":
		p.LoadBalancer = LeastRequest
	default:
		c.fail(path+".loadBalancer", "unknown load balancer %.40q (want round-robin, p2c-ewma or least-request)", svc.LoadBalancer)
	}
	if ss := svc.SlowStart; ss != nil {
		p.SlowStart = &SlowStartPolicy{Window: ss.Window.Std(), MinPercent: ss.MinPercent}
		if ss.Window.Std() <= 0 {
			c.fail(path+".slowStart.window", "must be > 0 (a duration such as 30s)")
		}
		switch {
		case ss.MinPercent < 0 || ss.MinPercent > 100:
			c.fail(path+".slowStart.minPercent", "must be 1..100")
		case ss.MinPercent == 0:
			p.SlowStart.MinPercent = DefaultSlowStartMinPercent
		}
	}
	p.Shed = c.shedding(path+".inboundShedding", svc.InboundShedding)
	names := make(map[string]int)
	for i, in := range svc.Inbound {
		ip := fmt.Sprintf("%s.inbound[%d]", path, i)
		name := in.Name
		if name == "" {
			name = fmt.Sprintf("inbound[%d]", i)
		} else if j, dup := names[name]; dup {
			c.fail(ip+".name", "duplicate inbound route name %s (also inbound[%d])", quote(name), j)
		} else {
			names[name] = i
		}
		ib := InboundPolicy{Name: name}
		if in.RateLimit == nil {
			c.missing(ip, "rateLimit")
		} else if rl := c.rateLimit(ip+".rateLimit", in.RateLimit, "inbound:"+name); rl != nil {
			ib.RateLimit = *rl
		}
		p.Inbound = append(p.Inbound, ib)
	}
	return p
}

func (c *compiler) timeout(path string, d Duration) time.Duration {
	if d.Std() < 0 {
		c.fail(path, "must be >= 0")
		return 0
	}
	return d.Std()
}

func (c *compiler) retry(path string, r *Retry, scope string) *RetryPolicy {
	if r == nil {
		return nil
	}
	rp := &RetryPolicy{Scope: scope, Attempts: r.Attempts, PerTryTimeout: r.PerTryTimeout.Std(),
		Backoff: r.Backoff.Std(), Budget: r.Budget, NonIdempotent: r.NonIdempotent}
	if r.Attempts < 0 || r.Attempts > MaxRetryAttempts {
		c.fail(path+".attempts", "must be 0..%d", MaxRetryAttempts)
	}
	if r.PerTryTimeout.Std() < 0 {
		c.fail(path+".perTryTimeout", "must be >= 0")
	}
	switch {
	case r.Backoff.Std() < 0:
		c.fail(path+".backoff", "must be >= 0")
	case r.Backoff.Std() == 0:
		rp.Backoff = DefaultRetryBackoff
	}
	switch {
	case !(r.Budget >= 0 && r.Budget <= 1): // also catches NaN
		c.fail(path+".budget", "must be within 0..1")
	case r.Budget == 0:
		rp.Budget = DefaultRetryBudget
	}
	on := r.On
	if len(on) == 0 {
		on = defaultRetryOn[:]
	}
	for i, cond := range on {
		switch cond = strings.ToLower(strings.TrimSpace(cond)); cond {
		case "connect-failure":
			rp.On.ConnectFailure = true
		case "reset":
			rp.On.Reset = true
		case "per-try-timeout":
			rp.On.PerTryTimeout = true
		case "5xx":
			rp.On.Status.addRange(500, 599)
		default:
			if code, err := strconv.Atoi(cond); err == nil && code >= 100 && code <= 599 {
				rp.On.Status.add(code)
			} else if gc, ok := grpcCode(cond); ok && gc != 0 {
				rp.On.Codes |= 1 << gc
			} else {
				c.fail(fmt.Sprintf("%s.on[%d]", path, i), "unknown condition %.40q (want connect-failure, reset, per-try-timeout, 5xx, an HTTP status code or a gRPC code name such as unavailable)", cond)
			}
		}
	}
	return rp
}

func (c *compiler) rateLimit(path string, rl *RateLimit, scope string) *RateLimitPolicy {
	if rl == nil {
		return nil
	}
	ok := true
	if !(rl.RPS > 0) || math.IsInf(rl.RPS, 1) { // also catches NaN
		c.fail(path+".rps", "must be a finite number > 0")
		ok = false
	}
	if rl.Burst < 0 {
		c.fail(path+".burst", "must be >= 0")
		ok = false
	}
	if !ok {
		return nil
	}
	burst := rl.Burst
	if burst == 0 {
		burst = max(1, int(min(rl.RPS, math.MaxInt32)))
	}
	return &RateLimitPolicy{Scope: scope, RPS: rl.RPS, Burst: burst}
}

// breaker compiles a breaker section: the service's (serviceLevel) or
// outlierDetection's. Mode adaptive is the service breaker's only (an
// outlier breaker ejects its instance and so needs an open state);
// maxEjectionPercent is outlierDetection's only.
func (c *compiler) breaker(path string, br *Breaker, serviceLevel bool) *BreakerPolicy {
	s := breaker.Settings{
		K: br.K, Window: br.Window.Std(), Buckets: br.Buckets, FailureRatio: br.FailureRatio,
		SlowCallThreshold: br.SlowCallThreshold.Std(), SlowCallRatio: br.SlowCallRatio,
		OpenBase: br.OpenBase.Std(), OpenMax: br.OpenMax.Std(), Multiplier: br.Multiplier, Jitter: br.Jitter,
	}
	switch br.Mode {
	case "off":
		return nil
	case "", "window":
	case "adaptive":
		if serviceLevel {
			s.Mode = breaker.ModeAdaptive
		} else {
			c.fail(path+".mode", "adaptive applies to breaker only; outlierDetection ejects instances and takes mode window")
		}
	default:
		c.fail(path+".mode", "unknown mode %.40q (want window, adaptive or off)", br.Mode)
	}
	if br.MinRequests < 0 || br.MinRequests > 1<<20 {
		c.fail(path+".minRequests", "must be 0..%d", 1<<20)
	} else {
		s.MinRequests = uint32(br.MinRequests)
	}
	if br.HalfOpenProbes < 0 || br.HalfOpenProbes > 1000 {
		c.fail(path+".halfOpenProbes", "must be 0..1000")
	} else {
		s.HalfOpenProbes = uint32(br.HalfOpenProbes)
	}
	if err := s.Validate(); err != nil {
		for _, e := range unjoin(err) {
			var se *breaker.SettingsError
			if errors.As(e, &se) {
				c.fail(path+"."+se.Field, "%s", se.Reason)
			} else {
				c.fail(path, "%v", e)
			}
		}
	}
	bp := &BreakerPolicy{Settings: s.WithDefaults()}
	switch {
	case serviceLevel && br.MaxEjectionPercent != 0:
		c.fail(path+".maxEjectionPercent", "applies to outlierDetection only")
	case serviceLevel:
	case br.MaxEjectionPercent < 0 || br.MaxEjectionPercent > 100:
		c.fail(path+".maxEjectionPercent", "must be 1..100")
	case br.MaxEjectionPercent == 0:
		bp.MaxEjectionPercent = DefaultMaxEjectionPercent
	default:
		bp.MaxEjectionPercent = br.MaxEjectionPercent
	}
	if len(br.FailureStatus) == 0 {
		bp.FailureStatus.addRange(500, 599)
	}
	for i, code := range br.FailureStatus {
		if code < 100 || code > 599 {
			c.fail(fmt.Sprintf("%s.failureStatus[%d]", path, i), "%d is not an HTTP status code", code)
			continue
		}
		bp.FailureStatus.add(code)
	}
	if len(br.FailureCodes) == 0 {
		for _, code := range []uint32{codeUnknown, codeDeadlineExceeded, codeInternal, codeUnavailable} {
			bp.FailureCodes |= 1 << code
		}
	}
	for i, name := range br.FailureCodes {
		code, ok := grpcCode(name)
		if !ok || code == 0 {
			c.fail(fmt.Sprintf("%s.failureCodes[%d]", path, i), "%.40q is not a gRPC error code name (such as unavailable or DEADLINE_EXCEEDED)", name)
			continue
		}
		bp.FailureCodes |= 1 << code
	}
	return bp
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// RetryConditions lists the retry.on conditions by name, as the
// validator reads them: connect-failure, reset, per-try-timeout, 5xx,
// then each gRPC code name but OK as Envoy writes it (unavailable,
// deadline-exceeded). An HTTP status code ("503") is a condition too,
// and code names are read in any case, with _ or - or neither
// (DEADLINE_EXCEEDED, DeadlineExceeded).
func RetryConditions() []string {
	return append([]string{"connect-failure", "reset", "per-try-timeout", "5xx"}, GRPCCodeNames()...)
}

// GRPCCodeNames lists the gRPC status codes but OK by name, as Envoy
// writes them (cancelled ... unauthenticated), in code order.
func GRPCCodeNames() []string {
	out := make([]string, 0, len(grpcCodes)-1)
	for _, name := range grpcCodes[1:] {
		out = append(out, strings.ReplaceAll(strings.ToLower(name), "_", "-"))
	}
	return out
}
