package router

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// APIVersion is the only schema version this package reads.
const APIVersion = "lightmesh/v1"

// Document is a decoded rule document, before validation and compilation.
// Field names follow Istio's VirtualService and DestinationRule where the
// concept is the same.
type Document struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	// Defaults are the fleet-wide settings that every service without a
	// setting of its own takes, including services discovery knows that
	// no rule names; nil means none.
	Defaults *Defaults          `yaml:"defaults,omitempty" json:"defaults,omitempty"`
	Services map[string]Service `yaml:"services,omitempty" json:"services,omitempty"`
}

// Defaults holds the settings a service takes when it has none of its
// own, field by field: a service that sets its own retry keeps it and
// still takes the default timeout. A route's own timeout, retry or rate
// limit replaces the service's, defaulted or not. A service opts out of
// a default retry with retry: {attempts: 0}.
type Defaults struct {
	Timeout          Duration   `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Retry            *Retry     `yaml:"retry,omitempty" json:"retry,omitempty"`
	Breaker          *Breaker   `yaml:"breaker,omitempty" json:"breaker,omitempty"`
	OutlierDetection *Breaker   `yaml:"outlierDetection,omitempty" json:"outlierDetection,omitempty"`
	RateLimit        *RateLimit `yaml:"rateLimit,omitempty" json:"rateLimit,omitempty"`
	// Lanes makes lanes of an instance label for every service without
	// a Lanes rule of its own; nil means none.
	Lanes        *Lanes     `yaml:"lanes,omitempty" json:"lanes,omitempty"`
	LoadBalancer string     `yaml:"loadBalancer,omitempty" json:"loadBalancer,omitempty"`
	SlowStart    *SlowStart `yaml:"slowStart,omitempty" json:"slowStart,omitempty"`
	// InboundShedding applies to every local service without one of its
	// own; nil means none.
	InboundShedding *InboundShedding `yaml:"inboundShedding,omitempty" json:"inboundShedding,omitempty"`
}

// Fill returns svc with each setting it lacks taken from d, and the
// names of the settings taken (timeout, retry, breaker,
// outlierDetection, rateLimit, lanes, loadBalancer, slowStart,
// inboundShedding), in that order. A nil d fills nothing.
func (d *Defaults) Fill(svc Service) (Service, []string) {
	if d == nil {
		return svc, nil
	}
	var taken []string
	if !svc.Timeout.IsSet() && d.Timeout.Std() != 0 {
		svc.Timeout = d.Timeout
		taken = append(taken, "timeout")
	}
	if svc.Retry == nil && d.Retry != nil {
		svc.Retry = d.Retry
		taken = append(taken, "retry")
	}
	if svc.Breaker == nil && d.Breaker != nil {
		svc.Breaker = d.Breaker
		taken = append(taken, "breaker")
	}
	if svc.OutlierDetection == nil && d.OutlierDetection != nil {
		svc.OutlierDetection = d.OutlierDetection
		taken = append(taken, "outlierDetection")
	}
	if svc.RateLimit == nil && d.RateLimit != nil {
		svc.RateLimit = d.RateLimit
		taken = append(taken, "rateLimit")
	}
	if svc.Lanes == nil && d.Lanes != nil {
		svc.Lanes = d.Lanes
		taken = append(taken, "lanes")
	}
	if svc.LoadBalancer == "" && d.LoadBalancer != "" {
		svc.LoadBalancer = d.LoadBalancer
		taken = append(taken, "loadBalancer")
	}
	if svc.SlowStart == nil && d.SlowStart != nil {
		svc.SlowStart = d.SlowStart
		taken = append(taken, "slowStart")
	}
	if svc.InboundShedding == nil && d.InboundShedding != nil {
		svc.InboundShedding = d.InboundShedding
		taken = append(taken, "inboundShedding")
	}
	return svc, taken
}

// Service holds the rules for calls to one logical service.
type Service struct {
	// Subsets name groups of the service's instances by their labels.
	Subsets map[string]Subset `yaml:"subsets,omitempty" json:"subsets,omitempty"`
	// Routes are tried in order; the first whose match accepts the request wins.
	Routes []Route `yaml:"routes,omitempty" json:"routes,omitempty"`
	// Timeout bounds a whole call, retries included; zero means none.
	// A route's own timeout replaces it.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// Retry retries failed calls; nil means no retries. A route's own
	// retry replaces it.
	Retry *Retry `yaml:"retry,omitempty" json:"retry,omitempty"`
	// Breaker is the circuit breaker over all calls to the service; nil
	// means none.
	Breaker *Breaker `yaml:"breaker,omitempty" json:"breaker,omitempty"`
	// OutlierDetection gives every instance a breaker of its own with
	// these settings; an instance whose breaker is open is skipped by the
	// balancer (ejected) until it half-opens. Nil means no ejection.
	OutlierDetection *Breaker `yaml:"outlierDetection,omitempty" json:"outlierDetection,omitempty"`
	// RateLimit caps the calls this process sends to the service; nil
	// means no limit. A route's own limit applies instead of it.
	RateLimit *RateLimit `yaml:"rateLimit,omitempty" json:"rateLimit,omitempty"`
	// LoadBalancer picks among a subset's instances: round-robin (the
	// default, weighted by discovery), p2c-ewma (the better of two random
	// instances by latency EWMA × in-flight calls, over weight) or
	// least-request (the better of two by in-flight calls, over weight).
	LoadBalancer string `yaml:"loadBalancer,omitempty" json:"loadBalancer,omitempty"`
	// SlowStart ramps the share of calls an instance gets over a window
	// after it joins the service's instances or its outlier breaker closes
	// again; nil means every instance takes its full share at once.
	SlowStart *SlowStart `yaml:"slowStart,omitempty" json:"slowStart,omitempty"`
	// Inbound holds server-side rules for requests this service receives:
	// the first inbound route matching a request applies its rate limit.
	Inbound []InboundRoute `yaml:"inbound,omitempty" json:"inbound,omitempty"`
	// InboundShedding sheds the requests the service receives (as the
	// mesh's local service) beyond an adaptive concurrency limit; nil
	// means off (see InboundShedding).
	InboundShedding *InboundShedding `yaml:"inboundShedding,omitempty" json:"inboundShedding,omitempty"`
	// Lanes routes calls by the lane they carry to the instances of that
	// lane, base otherwise; nil means no lanes (see Lanes).
	Lanes *Lanes `yaml:"lanes,omitempty" json:"lanes,omitempty"`
	// Authorization decides which callers (by SPIFFE ID) may call what
	// on the service; nil means every caller may (package identity
	// enforces it).
	Authorization *Authorization `yaml:"authorization,omitempty" json:"authorization,omitempty"`
	// ServerID is the SPIFFE ID the service's servers present: when set,
	// calls to the service use mutual TLS (with the mesh's identity) and
	// accept only a server with this ID. Empty means calls as the URL says.
	ServerID string `yaml:"serverID,omitempty" json:"serverID,omitempty"`
}

// SlowStart ramps an instance's share of calls, as Envoy's
// slow_start_config does: over Window its weight grows linearly from
// MinPercent of its discovery weight to all of it.
type SlowStart struct {
	// Window is how long the ramp lasts; it must be set (> 0).
	Window Duration `yaml:"window" json:"window"`
	// MinPercent is the share of its weight an instance starts with,
	// 1..100; zero means 10.
	MinPercent int `yaml:"minPercent,omitempty" json:"minPercent,omitempty"`
}

// Retry says when and how often a failed call is tried again. Every retry
// goes to another instance when one is available.
type Retry struct {
	// Attempts is the number of retries after the first try (0..10).
	Attempts int `yaml:"attempts" json:"attempts"`
	// PerTryTimeout bounds each try; zero means only the call's timeout.
	PerTryTimeout Duration `yaml:"perTryTimeout,omitempty" json:"perTryTimeout,omitempty"`
	// Budget caps retries at this fraction of the calls sent to the
	// service (0.2: retries add at most 20% load, plus a reserve of 10);
	// zero means 0.2.
	Budget float64 `yaml:"budget,omitempty" json:"budget,omitempty"`
	// On lists the conditions that trigger a retry: connect-failure,
	// reset, per-try-timeout, 5xx, an HTTP status code such as "503", or
	// a gRPC code name such as unavailable. Empty means connect-failure,
	// reset, per-try-timeout, 502, 503, 504 and (for gRPC) unavailable.
	On []string `yaml:"on,omitempty" json:"on,omitempty"`
	// Backoff is the first wait between tries (doubled each time, with
	// jitter, at most 10 times Backoff); zero means 25ms.
	Backoff Duration `yaml:"backoff,omitempty" json:"backoff,omitempty"`
	// NonIdempotent allows retrying methods other than GET, HEAD,
	// OPTIONS, TRACE, PUT and DELETE. Off by default.
	NonIdempotent bool `yaml:"nonIdempotent,omitempty" json:"nonIdempotent,omitempty"`
}

// Breaker is a circuit breaker policy; zero fields take the defaults of
// package breaker.
type Breaker struct {
	// Mode is window (the default: trip on a failure ratio, stay open,
	// probe), adaptive (SRE client-side throttling, no thresholds; see
	// breaker.ModeAdaptive) or off (no breaker: what turns off a breaker
	// the defaults or BuiltinDefaults would give). outlierDetection takes
	// window or off.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// K is the adaptive multiplier (mode adaptive only): calls are refused
	// with probability max(0, (requests − k·accepts) / (requests + 1)).
	// Zero means 1.5.
	K                 float64  `yaml:"k,omitempty" json:"k,omitempty"`
	Window            Duration `yaml:"window,omitempty" json:"window,omitempty"`
	Buckets           int      `yaml:"buckets,omitempty" json:"buckets,omitempty"`
	MinRequests       int      `yaml:"minRequests,omitempty" json:"minRequests,omitempty"`
	FailureRatio      float64  `yaml:"failureRatio,omitempty" json:"failureRatio,omitempty"`
	SlowCallThreshold Duration `yaml:"slowCallThreshold,omitempty" json:"slowCallThreshold,omitempty"`
	SlowCallRatio     float64  `yaml:"slowCallRatio,omitempty" json:"slowCallRatio,omitempty"`
	OpenBase          Duration `yaml:"openBase,omitempty" json:"openBase,omitempty"`
	OpenMax           Duration `yaml:"openMax,omitempty" json:"openMax,omitempty"`
	Multiplier        float64  `yaml:"multiplier,omitempty" json:"multiplier,omitempty"`
	Jitter            float64  `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	HalfOpenProbes    int      `yaml:"halfOpenProbes,omitempty" json:"halfOpenProbes,omitempty"`
	// MaxEjectionPercent (outlierDetection only) caps the share of the
	// service's instances ejected at once, at least one: 1..100, zero
	// means 50.
	MaxEjectionPercent int `yaml:"maxEjectionPercent,omitempty" json:"maxEjectionPercent,omitempty"`
	// FailureStatus lists the HTTP status codes that count as failures;
	// empty means every 5xx. Transport errors and timeouts always count.
	FailureStatus []int `yaml:"failureStatus,omitempty" json:"failureStatus,omitempty"`
	// FailureCodes lists the gRPC status codes that count as failures, by
	// name (unavailable, DEADLINE_EXCEEDED); empty means UNAVAILABLE,
	// DEADLINE_EXCEEDED, INTERNAL and UNKNOWN: not RESOURCE_EXHAUSTED,
	// what a shedding or rate-limited server answers, as HTTP's 429 is no
	// 5xx. The caller's own cancellation or deadline never counts.
	FailureCodes []string `yaml:"failureCodes,omitempty" json:"failureCodes,omitempty"`
}

// RateLimit is a token bucket: RPS tokens a second, up to Burst at once.
type RateLimit struct {
	RPS   float64 `yaml:"rps" json:"rps"`
	Burst int     `yaml:"burst,omitempty" json:"burst,omitempty"`
}

// InboundRoute limits the requests a service receives that Match accepts.
type InboundRoute struct {
	Name      string     `yaml:"name,omitempty" json:"name,omitempty"`
	Match     *Match     `yaml:"match,omitempty" json:"match,omitempty"`
	RateLimit *RateLimit `yaml:"rateLimit" json:"rateLimit"`
}

// Subset selects the instances whose metadata labels include all of Labels.
// Empty Labels selects every instance of the service.
type Subset struct {
	Labels map[string]string `yaml:"labels" json:"labels"`
}

// Route sends matching requests to one subset or splits them by weight.
type Route struct {
	// Name labels the route in metrics, traces and errors; it defaults to
	// "routes[i]" and must be unique within the service when set.
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Match selects the requests this route takes; nil matches everything.
	Match *Match `yaml:"match,omitempty" json:"match,omitempty"`
	// Destinations are the subsets the route sends to, split by Weight.
	Destinations []Destination `yaml:"destinations" json:"destinations"`
	// Fallback names the subset used when the chosen destination has no
	// available instance. Empty means no fallback: the call fails with
	// ErrNoInstance.
	Fallback string `yaml:"fallback,omitempty" json:"fallback,omitempty"`
	// Timeout, Retry and RateLimit replace the service's for this route.
	Timeout   Duration   `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	Retry     *Retry     `yaml:"retry,omitempty" json:"retry,omitempty"`
	RateLimit *RateLimit `yaml:"rateLimit,omitempty" json:"rateLimit,omitempty"`
}

// Match holds the conditions a request must all meet. Empty conditions are
// not checked.
type Match struct {
	// Headers maps a header name (case-insensitive) to a condition on its
	// first value.
	Headers map[string]StringMatch `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Path is a condition on the URL path (or the gRPC full method name).
	Path *StringMatch `yaml:"path,omitempty" json:"path,omitempty"`
	// Methods lists the accepted HTTP methods. They are upper-cased when
	// compiled and compared exactly with the request's method, which HTTP
	// defines as case-sensitive (GET, not get).
	Methods []string `yaml:"methods,omitempty" json:"methods,omitempty"`
}

// StringMatch is one condition on a string; exactly one field is set.
type StringMatch struct {
	// Exact matches the whole value; an empty string matches a header that
	// is present with an empty value.
	Exact *string `yaml:"exact,omitempty" json:"exact,omitempty"`
	// Prefix matches values starting with it.
	Prefix *string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
	// Regex is an RE2 expression that must match the whole value (it is
	// anchored at both ends).
	Regex *string `yaml:"regex,omitempty" json:"regex,omitempty"`
	// Present true requires the header, with any value; false requires it
	// to be absent. Not valid for paths.
	Present *bool `yaml:"present,omitempty" json:"present,omitempty"`
}

// Destination is one subset a route sends to.
type Destination struct {
	Subset string `yaml:"subset" json:"subset"`
	// Weight is this destination's share of the route's traffic. It may be
	// omitted on every destination (an equal split) or set on every one.
	Weight *int `yaml:"weight,omitempty" json:"weight,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("250ms").
// The zero value means unset: the setting takes its default. Written
// "off" (or as zero, "0s"), a duration is Off: set, to none. A service's
// timeout: off keeps a default timeout from applying to it, and a
// route's timeout: off runs the route's calls without the service's.
// Only timeout and perTryTimeout may be written so; Load refuses off and
// zero elsewhere.
type Duration time.Duration

// Off is a duration set to none ("off" or "0s" in a document). Std
// returns 0 for it.
const Off Duration = math.MinInt64

// parseDuration reads a duration as a document writes it: a Go duration
// string, or "off".
func parseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return Off, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if Duration(v) == Off {
		return 0, errors.New("duration out of range") // the lowest one is Off's mark
	}
	if v == 0 {
		return Off, nil
	}
	return Duration(v), nil
}

// UnmarshalYAML reads a duration string such as "2s", or "off".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: duration must be a string such as \"2s\"", n.Line)
	}
	v, err := parseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q", n.Line, s)
	}
	*d = v
	return nil
}

// UnmarshalText reads a duration string such as "2s", or "off", so that
// JSON written with MarshalText reads back.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := parseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q", b)
	}
	*d = v
	return nil
}

// MarshalText writes the duration as a string such as "2s", or "off".
func (d Duration) MarshalText() ([]byte, error) {
	if d == Off {
		return []byte("off"), nil
	}
	return []byte(time.Duration(d).String()), nil
}

// Std returns d as a time.Duration: 0 for Off.
func (d Duration) Std() time.Duration {
	if d == Off {
		return 0
	}
	return time.Duration(d)
}

// IsSet reports whether d was written, as a duration or as off.
func (d Duration) IsSet() bool { return d != 0 }
