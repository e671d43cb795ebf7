package engine

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/shardmap"
	"github.com/lightmesh/lightmesh/router"
)

// State is everything the request path reads, published as one value: the
// routing table and, for each service the rules name, the stateful
// protection built from its policy. A State is never changed once
// published; WithRules and WithInstances derive the next one.
type State struct {
	table    *router.Table
	services shardmap.Map[*Service] // sharded: WithInstances copies one shard
	// carried are the limiters WithRules carried over from the State
	// before: Publish has them take their old limiters' buckets over.
	carried []*breaker.Limiter
	shed    *Shedder // the local service's; carried over to every next State
}

// Service is the protection of one service: its compiled policy and the
// breakers, buckets and budgets built from it.
type Service struct {
	name    string
	policy  *router.Policy
	routes  []Route // by route index
	def     Route   // for a service without routes
	breaker *breaker.Breaker
	// outlier holds a breaker per instance address; nil without outlier
	// detection.
	outlier map[string]*breaker.Breaker
	inbound []*breaker.Limiter // by inbound route index
	// since holds, per instance address, when the instance's slow-start
	// ramp began (Unix ns); nil without slowStart.
	since map[string]*atomic.Int64
	// load holds, per instance address, the load the p2c-ewma and
	// least-request balancers compare; nil with round-robin.
	load map[string]*instLoad
}

// Route is the protection of the calls one route takes.
type Route struct {
	policy  *router.CallPolicy
	limiter *breaker.Limiter // nil: no limit
	budget  *Budget          // nil: no retries
	series  *routeSeries     // the route's outbound metric series, by protocol
}

// Policy returns the route's compiled policy.
func (r *Route) Policy() *router.CallPolicy { return r.policy }

// OnBreakerChange is called by every breaker the engine creates when its
// state changes; instance is "" for a service breaker.
type OnBreakerChange func(service, instance string, from, to breaker.State)

// NewState returns a State with table and no protection.
func NewState(table *router.Table) *State {
	return &State{table: table, shed: NewShedder()}
}

// Table returns the routing table.
func (s *State) Table() *router.Table { return s.table }

// Service returns the protection of service, or nil when the rules do not
// name it.
func (s *State) Service(name string) *Service { svc, _ := s.services.Get(name); return svc }

// WithRules returns the State for new rules, validated already, and the
// same instances. Breakers whose settings did not change, buckets and
// budgets of the same scope are carried over from s: breakers and budgets
// as they are, buckets with the tokens they hold (breaker.Limiter.Carry).
// Nothing s holds is changed, so until the result is published the rules
// in force keep serving exactly as before; once it is, each carried
// bucket takes its old one over (Engine.Publish), so that the calls still
// holding s spend no second copy of it.
func (s *State) WithRules(rules *router.Rules, onChange OnBreakerChange) *State {
	table := s.table.WithRules(rules)
	services := make(map[string]*Service)
	var carried []*breaker.Limiter
	for _, name := range rules.Services() {
		services[name] = buildService(name, rules.Policy(name), s.Service(name), table.Instances(name, ""), onChange, &carried)
	}
	// Services the rules do not name take the defaults, each with
	// breakers and buckets of its own.
	if def := rules.DefaultPolicy(); def != nil {
		for _, name := range table.Services() {
			if services[name] == nil {
				services[name] = buildService(name, def, s.Service(name), table.Instances(name, ""), onChange, &carried)
			}
		}
	}
	return &State{table: table, services: shardmap.From(services), carried: carried, shed: s.shed}
}

// WithInstances returns the State in which service has list (nil removes
// the service's instances), with per-instance breakers to match: those of
// instances that stay are kept.
func (s *State) WithInstances(service string, list []discovery.Instance, onChange OnBreakerChange) *State {
	next := &State{table: s.table.WithInstances(service, list), services: s.services, carried: s.carried, shed: s.shed}
	rules := s.table.Rules()
	svc := s.Service(service)
	switch {
	case rules.Policy(service) != nil:
		// Named by the rules: its protection stays, whatever discovery says.
	case list == nil:
		// Gone from discovery and not named: its defaulted protection goes.
		if svc != nil {
			next.services = s.services.Without(service)
		}
		return next
	case svc == nil && rules.DefaultPolicy() != nil:
		// New to discovery and not named: it takes the defaults.
		next.services = s.services.With(service, buildService(service, rules.DefaultPolicy(), nil, next.table.Instances(service, ""), onChange, nil))
		return next
	}
	if svc != nil && (svc.policy.Outlier != nil || svc.policy.SlowStart != nil || svc.policy.LoadBalancer != router.RoundRobin) {
		copy := *svc
		list := next.table.Instances(service, "")
		if svc.policy.Outlier != nil {
			copy.outlier = outlierBreakers(svc, svc, list, onChange)
		}
		copy.since = slowStarts(svc, svc, list)
		copy.load = loads(svc, svc, list)
		next.services = s.services.With(service, &copy)
	}
	return next
}

// buildService builds the protection of service name; limiters carried
// from old's with new settings are appended to carried.
func buildService(name string, p *router.Policy, old *Service, instances []discovery.Instance, onChange OnBreakerChange, carried *[]*breaker.Limiter) *Service {
	svc := &Service{name: name, policy: p}
	oldLimiters, oldBudgets := old.scopes()
	limiter := func(rl *router.RateLimitPolicy) *breaker.Limiter {
		if rl == nil {
			return nil
		}
		if prev := oldLimiters[rl.Scope]; prev != nil {
			next := prev.Carry(rl.RPS, rl.Burst)
			if next != prev && carried != nil {
				*carried = append(*carried, next)
			}
			return next
		}
		return breaker.NewLimiter(rl.RPS, rl.Burst)
	}
	// Routes sharing the service's limit or retry share one bucket or
	// budget: build each once, by the policy value they point to.
	limiters := map[*router.RateLimitPolicy]*breaker.Limiter{}
	budgets := map[*router.RetryPolicy]*Budget{}
	route := func(cp *router.CallPolicy) Route {
		r := Route{policy: cp, series: new(routeSeries)}
		if rl := cp.RateLimit; rl != nil {
			if limiters[rl] == nil {
				limiters[rl] = limiter(rl)
			}
			r.limiter = limiters[rl]
		}
		if rp := cp.Retry; rp != nil {
			if budgets[rp] == nil {
				if prev := oldBudgets[rp.Scope]; prev != nil && prev.ratio == rp.Budget {
					budgets[rp] = prev
				} else {
					budgets[rp] = NewBudget(rp.Budget)
				}
			}
			r.budget = budgets[rp]
		}
		return r
	}
	svc.def = route(&p.Default)
	svc.routes = make([]Route, len(p.Routes))
	for i := range p.Routes {
		svc.routes[i] = route(&p.Routes[i])
	}
	for i := range p.Inbound {
		svc.inbound = append(svc.inbound, limiter(&p.Inbound[i].RateLimit))
	}
	if bp := p.Breaker; bp != nil {
		if old != nil && old.breaker != nil && old.breaker.Settings() == bp.Settings {
			svc.breaker = old.breaker
		} else {
			svc.breaker = newBreaker(name, "", bp.Settings, onChange)
		}
	}
	if p.Outlier != nil {
		svc.outlier = outlierBreakers(svc, old, instances, onChange)
	}
	svc.since = slowStarts(svc, old, instances)
	svc.load = loads(svc, old, instances)
	return svc
}

// outlierBreakers returns a breaker per instance of list for svc, taking
// those of old whose settings are svc's.
func outlierBreakers(svc, old *Service, list []discovery.Instance, onChange OnBreakerChange) map[string]*breaker.Breaker {
	s := svc.policy.Outlier.Settings
	out := make(map[string]*breaker.Breaker, len(list))
	for _, in := range list {
		if old != nil {
			if b := old.outlier[in.Address]; b != nil && b.Settings() == s {
				out[in.Address] = b
				continue
			}
		}
		out[in.Address] = newBreaker(svc.name, in.Address, s, onChange)
	}
	return out
}

// scopes returns the buckets and budgets of s by scope; nil maps for a nil s.
func (s *Service) scopes() (map[string]*breaker.Limiter, map[string]*Budget) {
	if s == nil {
		return nil, nil
	}
	limiters, budgets := map[string]*breaker.Limiter{}, map[string]*Budget{}
	add := func(r *Route) {
		if r.limiter != nil {
			limiters[r.policy.RateLimit.Scope] = r.limiter
		}
		if r.budget != nil {
			budgets[r.policy.Retry.Scope] = r.budget
		}
	}
	add(&s.def)
	for i := range s.routes {
		add(&s.routes[i])
	}
	for i, l := range s.inbound {
		if l != nil {
			limiters[s.policy.Inbound[i].RateLimit.Scope] = l
		}
	}
	return limiters, budgets
}

func newBreaker(service, instance string, s breaker.Settings, onChange OnBreakerChange) *breaker.Breaker {
	name := service
	if instance != "" {
		name += "/" + instance
	}
	var opts []breaker.Option
	if onChange != nil {
		opts = append(opts, breaker.WithOnStateChange(func(_ string, from, to breaker.State) { onChange(service, instance, from, to) }))
	}
	return breaker.New(name, s, opts...)
}

// InboundLimit applies the rate limit of the inbound route of service
// local that req matches (the first one, as the rules order them). It
// reports whether req is over the limit, with the wait until the next
// token. A request the routes cannot place (router.InboundUndecided) is
// over the limit.
func (s *State) InboundLimit(local string, req *router.Request) (wait time.Duration, limited bool) {
	svc := s.Service(local)
	if local == "" || svc == nil || len(svc.inbound) == 0 {
		return 0, false
	}
	i, _ := s.table.Rules().MatchInbound(local, req)
	if i == router.InboundUndecided {
		return time.Second, true // see there: refused rather than placed by a padded value
	}
	if i < 0 || i >= len(svc.inbound) || svc.inbound[i] == nil || svc.inbound[i].Allow() {
		return 0, false
	}
	return svc.inbound[i].RetryAfter(), true
}

// BreakerInfo describes one breaker of a State, for status pages and
// metrics.
type BreakerInfo struct {
	Service string
	// Instance is the instance address of an outlier breaker, "" for the
	// service breaker.
	Instance string
	Breaker  *breaker.Breaker
}

// Breakers lists every breaker of s: per service (sorted), the service
// breaker first, then the instance breakers by address.
func (s *State) Breakers() []BreakerInfo {
	var out []BreakerInfo
	for _, name := range s.services.Keys() {
		svc := s.Service(name)
		if svc.breaker != nil {
			out = append(out, BreakerInfo{Service: name, Breaker: svc.breaker})
		}
		for _, addr := range slices.Sorted(maps.Keys(svc.outlier)) {
			out = append(out, BreakerInfo{Service: name, Instance: addr, Breaker: svc.outlier[addr]})
		}
	}
	return out
}

// LimiterInfo describes one token bucket of a State.
type LimiterInfo struct {
	Service, Scope string
	Limiter        *breaker.Limiter
}

// Limiters lists every token bucket of s by service and scope, sorted.
func (s *State) Limiters() []LimiterInfo {
	var out []LimiterInfo
	for _, name := range s.services.Keys() {
		limiters, _ := s.Service(name).scopes()
		for _, scope := range slices.Sorted(maps.Keys(limiters)) {
			out = append(out, LimiterInfo{Service: name, Scope: scope, Limiter: limiters[scope]})
		}
	}
	return out
}
