package router

import "sync"

// BuiltinDefaults returns the settings a service that no rule names
// takes when the defaults document does not set them either: protection
// that needs no numbers. breaker {mode: adaptive} (client-side
// throttling, no thresholds), loadBalancer p2c-ewma, and, for the mesh's
// local service, inboundShedding {mode: adaptive}. The defaults document
// turns each off for every such service: breaker: {mode: off},
// loadBalancer: round-robin, inboundShedding: {mode: off}. A service the
// rules name takes only what its rules and the defaults document say.
func BuiltinDefaults() Defaults {
	return Defaults{
		Breaker:         &Breaker{Mode: "adaptive"},
		LoadBalancer:    "p2c-ewma",
		InboundShedding: &InboundShedding{Mode: ShedModeAdaptive},
	}
}

// withBuiltins returns d with each setting BuiltinDefaults has and d
// lacks filled in, and the names of those settings.
func withBuiltins(d *Defaults) (Defaults, []string) {
	b := BuiltinDefaults()
	if d == nil {
		return b, []string{"breaker", "loadBalancer", "inboundShedding"}
	}
	out, taken := *d, []string(nil)
	if out.Breaker == nil {
		out.Breaker = b.Breaker
		taken = append(taken, "breaker")
	}
	if out.LoadBalancer == "" {
		out.LoadBalancer = b.LoadBalancer
		taken = append(taken, "loadBalancer")
	}
	if out.InboundShedding == nil {
		out.InboundShedding = b.InboundShedding
		taken = append(taken, "inboundShedding")
	}
	return out, taken
}

// builtinPolicy is the compiled BuiltinDefaults: the policy of every
// service while a mesh has no rules at all. Immutable once built.
var builtinPolicy = sync.OnceValue(func() *Policy {
	b := BuiltinDefaults()
	c := &compiler{}
	return c.defaultsPolicy(&b)
})

// defaultsPolicy compiles defaults d at path "defaults".
func (c *compiler) defaultsPolicy(d *Defaults) *Policy {
	return c.policy("defaults", Service{Timeout: d.Timeout, Retry: d.Retry, Breaker: d.Breaker,
		OutlierDetection: d.OutlierDetection, RateLimit: d.RateLimit, LoadBalancer: d.LoadBalancer, SlowStart: d.SlowStart,
		InboundShedding: d.InboundShedding}, nil)
}
