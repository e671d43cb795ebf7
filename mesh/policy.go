package mesh

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// state is everything the request path reads, published as one value.
type state struct {
	table    *router.Table
	policies map[string]*servicePolicy // services with rules only
}

// servicePolicy is the compiled protection of one service. Its breakers,
// limiters and budgets are stateful and carried over to the next policy
// when their settings do not change.
type servicePolicy struct {
	service   string
	routes    []callPolicy // by route index
	fallback  callPolicy   // for calls that matched no route (services without routes)
	breaker   *breaker.Breaker
	failure   statusSet
	outlier   *breaker.Settings
	instances map[string]*breaker.Breaker // by address, when outlier is set
	inbound   []inboundLimit              // by inbound route index
}

// inboundLimit is the server-side limit of one inbound route; key names it
// across rule swaps (its name, or its position when unnamed).
type inboundLimit struct {
	key     string
	limiter *breaker.Limiter // nil when the route has no valid limit
}

// callPolicy is what applies to one route: its timeout, retries and limit.
type callPolicy struct {
	route   string
	timeout time.Duration
	retry   *retryPolicy
	limiter *breaker.Limiter
}

type retryPolicy struct {
	attempts      int
	perTry        time.Duration
	backoff       time.Duration
	nonIdempotent bool
	on            retryOn
	budget        *retryBudget
}

// MaxRetryAttempts caps retry.attempts in a rule document.
const MaxRetryAttempts = 10

type retryOn struct {
	connectFailure, reset, perTryTimeout bool
	status                               statusSet
}

// statusSet is a set of HTTP status codes 100..599.
type statusSet struct{ bits [10]uint64 }

func (s *statusSet) add(code int) { s.bits[code/64] |= 1 << (code % 64) }
func (s *statusSet) has(code int) bool {
	return code >= 0 && code < 640 && s.bits[code/64]&(1<<(code%64)) != 0
}
func (s *statusSet) addRange(lo, hi int) {
	for c := lo; c <= hi; c++ {
		s.add(c)
	}
}

// retryBudget lets retries add at most ratio of the calls sent, plus a
// reserve: every call deposits ratio tokens and every retry takes one.
// Counted in thousandths so it stays lock-free.
type retryBudget struct {
	ratio   float64
	milli   atomic.Int64
	deposit int64
}

// retryReserve is the number of retries a budget starts with and can hold
// beyond what calls have earned, so low-traffic services can still retry.
const retryReserve = 10

func newRetryBudget(ratio float64) *retryBudget {
	b := &retryBudget{ratio: ratio, deposit: int64(ratio * 1000)}
	b.milli.Store(retryReserve * 1000)
	return b
}

func (b *retryBudget) onCall() {
	const full = retryReserve * 1000
	for {
		v := b.milli.Load()
		if v >= full {
			return // full: no write, so a full budget costs one shared read
		}
		if b.milli.CompareAndSwap(v, min(v+b.deposit, full)) {
			return
		}
	}
}

func (b *retryBudget) take() bool {
	for {
		v := b.milli.Load()
		if v < 1000 {
			return false
		}
		if b.milli.CompareAndSwap(v, v-1000) {
			return true
		}
	}
}

// policyBuilder compiles the protection sections of a rule document,
// reusing the stateful parts of the previous policies whose settings are
// unchanged. It collects every problem with its place in the document.
type policyBuilder struct {
	old      map[string]*servicePolicy
	problems []error
	onChange func(service, instance string, from, to breaker.State)
}

func (b *policyBuilder) fail(path, format string, args ...any) {
	b.problems = append(b.problems, &router.FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

// buildPolicies compiles the policies of every service in doc. Nothing is
// returned unless the whole document is valid.
func buildPolicies(rules *router.Rules, old map[string]*servicePolicy, onChange func(service, instance string, from, to breaker.State)) (map[string]*servicePolicy, error) {
	b := &policyBuilder{old: old, onChange: onChange}
	doc := rules.Document()
	out := make(map[string]*servicePolicy, len(doc.Services))
	for _, name := range rules.Services() {
		out[name] = b.service("services."+name, name, doc.Services[name])
	}
	if len(b.problems) > 0 {
		return nil, fmt.Errorf("mesh: invalid document: %w", errors.Join(b.problems...))
	}
	return out, nil
}

func (b *policyBuilder) service(path, name string, svc router.Service) *servicePolicy {
	prev := b.old[name]
	p := &servicePolicy{service: name}
	if prev != nil {
		// withInstances keeps those whose settings still match.
		p.instances = prev.instances
	}
	svcRetry := b.retry(path+".retry", svc.Retry, prev, "")
	svcLimit := b.limiter(path+".rateLimit", svc.RateLimit, prev, "*")
	if svc.Timeout < 0 {
		b.fail(path+".timeout", "must be >= 0")
	}
	p.fallback = callPolicy{timeout: svc.Timeout.Std(), retry: svcRetry, limiter: svcLimit}
	for i, r := range svc.Routes {
		rp := fmt.Sprintf("%s.routes[%d]", path, i)
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("routes[%d]", i)
		}
		cp := callPolicy{route: name, timeout: svc.Timeout.Std(), retry: svcRetry, limiter: svcLimit}
		if r.Timeout < 0 {
			b.fail(rp+".timeout", "must be >= 0")
		} else if r.Timeout > 0 {
			cp.timeout = r.Timeout.Std()
		}
		if r.Retry != nil {
			cp.retry = b.retry(rp+".retry", r.Retry, prev, name)
		}
		if r.RateLimit != nil {
			cp.limiter = b.limiter(rp+".rateLimit", r.RateLimit, prev, name)
		}
		p.routes = append(p.routes, cp)
	}
	if svc.Breaker != nil {
		s, failure := b.breakerSettings(path+".breaker", svc.Breaker)
		p.failure = failure
		if prev != nil && prev.breaker != nil && prev.breaker.Settings() == s.WithDefaults() {
			p.breaker = prev.breaker
		} else {
			p.breaker = b.newBreaker(name, "", s)
		}
	} else {
		p.failure.addRange(500, 599)
	}
	if svc.OutlierDetection != nil {
		s, _ := b.breakerSettings(path+".outlierDetection", svc.OutlierDetection)
		s = s.WithDefaults()
		p.outlier = &s
	}
	for i, in := range svc.Inbound {
		ip := fmt.Sprintf("%s.inbound[%d]", path, i)
		key := "inbound:" + in.Name
		if in.Name == "" {
			key += strconv.Itoa(i)
		}
		if in.RateLimit == nil {
			b.fail(ip+".rateLimit", "required")
		}
		p.inbound = append(p.inbound, inboundLimit{key: key, limiter: b.limiter(ip+".rateLimit", in.RateLimit, prev, key)})
	}
	return p
}

func (b *policyBuilder) newBreaker(service, instance string, s breaker.Settings) *breaker.Breaker {
	name := service
	if instance != "" {
		name += "/" + instance
	}
	var opts []breaker.Option
	if b.onChange != nil {
		onChange := b.onChange
		opts = append(opts, breaker.WithOnStateChange(func(_ string, from, to breaker.State) { onChange(service, instance, from, to) }))
	}
	return breaker.New(name, s, opts...)
}

func (b *policyBuilder) breakerSettings(path string, br *router.Breaker) (breaker.Settings, statusSet) {
	s := breaker.Settings{
		Window: br.Window.Std(), Buckets: br.Buckets, FailureRatio: br.FailureRatio,
		SlowCallThreshold: br.SlowCallThreshold.Std(), SlowCallRatio: br.SlowCallRatio,
		OpenBase: br.OpenBase.Std(), OpenMax: br.OpenMax.Std(), Multiplier: br.Multiplier, Jitter: br.Jitter,
	}
	if br.MinRequests < 0 || br.MinRequests > 1<<20 {
		b.fail(path+".minRequests", "must be 0..%d", 1<<20)
	} else {
		s.MinRequests = uint32(br.MinRequests)
	}
	if br.HalfOpenProbes < 0 || br.HalfOpenProbes > 1000 {
		b.fail(path+".halfOpenProbes", "must be 0..1000")
	} else {
		s.HalfOpenProbes = uint32(br.HalfOpenProbes)
	}
	if err := s.Validate(); err != nil {
		var se *breaker.SettingsError
		for _, e := range unjoin(err) {
			if errors.As(e, &se) {
				b.fail(path+"."+se.Field, "%s", se.Reason)
			} else {
				b.fail(path, "%v", e)
			}
		}
	}
	var failure statusSet
	if len(br.FailureStatus) == 0 {
		failure.addRange(500, 599)
	}
	for i, code := range br.FailureStatus {
		if code < 100 || code > 599 {
			b.fail(fmt.Sprintf("%s.failureStatus[%d]", path, i), "%d is not an HTTP status code", code)
			continue
		}
		failure.add(code)
	}
	return s, failure
}

func (b *policyBuilder) retry(path string, r *router.Retry, prev *servicePolicy, route string) *retryPolicy {
	if r == nil {
		return nil
	}
	rp := &retryPolicy{attempts: r.Attempts, perTry: r.PerTryTimeout.Std(), backoff: r.Backoff.Std(), nonIdempotent: r.NonIdempotent}
	if r.Attempts < 0 || r.Attempts > MaxRetryAttempts {
		b.fail(path+".attempts", "must be 0..%d", MaxRetryAttempts)
	}
	if r.PerTryTimeout < 0 {
		b.fail(path+".perTryTimeout", "must be >= 0")
	}
	if r.Backoff < 0 {
		b.fail(path+".backoff", "must be >= 0")
	} else if r.Backoff == 0 {
		rp.backoff = 25 * time.Millisecond
	}
	ratio := r.Budget
	switch {
	case !(ratio >= 0 && ratio <= 1): // also catches NaN
		b.fail(path+".budget", "must be within 0..1")
	case ratio == 0:
		ratio = 0.2
	}
	on := r.On
	if len(on) == 0 {
		on = []string{"connect-failure", "reset", "per-try-timeout", "502", "503", "504"}
	}
	for i, cond := range on {
		switch cond = strings.ToLower(strings.TrimSpace(cond)); cond {
		case "connect-failure":
			rp.on.connectFailure = true
		case "reset":
			rp.on.reset = true
		case "per-try-timeout":
			rp.on.perTryTimeout = true
		case "5xx":
			rp.on.status.addRange(500, 599)
		default:
			code, err := strconv.Atoi(cond)
			if err != nil || code < 100 || code > 599 {
				b.fail(fmt.Sprintf("%s.on[%d]", path, i), "unknown condition %q (want connect-failure, reset, per-try-timeout, 5xx or a status code)", cond)
				continue
			}
			rp.on.status.add(code)
		}
	}
	if prev != nil {
		if old := prev.budgetFor(route); old != nil && old.ratio == ratio {
			rp.budget = old
		}
	}
	if rp.budget == nil {
		rp.budget = newRetryBudget(ratio)
	}
	return rp
}

// budgetFor returns the budget the route (or, for "", the service) used.
func (p *servicePolicy) budgetFor(route string) *retryBudget {
	if route == "" {
		if p.fallback.retry != nil {
			return p.fallback.retry.budget
		}
		return nil
	}
	for _, cp := range p.routes {
		if cp.route == route && cp.retry != nil {
			return cp.retry.budget
		}
	}
	return nil
}

// limiter returns a limiter for rl, resizing the previous policy's limiter
// with the same key in place so its bucket carries over.
func (b *policyBuilder) limiter(path string, rl *router.RateLimit, prev *servicePolicy, key string) *breaker.Limiter {
	if rl == nil {
		return nil
	}
	if !(rl.RPS > 0) || math.IsInf(rl.RPS, 1) { // also catches NaN
		b.fail(path+".rps", "must be a finite number > 0")
		return nil
	}
	if rl.Burst < 0 {
		b.fail(path+".burst", "must be >= 0")
		return nil
	}
	burst := rl.Burst
	if burst == 0 {
		burst = max(1, int(rl.RPS))
	}
	if prev != nil {
		if old := prev.limiterFor(key); old != nil {
			return old.Carry(rl.RPS, burst)
		}
	}
	return breaker.NewLimiter(rl.RPS, burst)
}

func (p *servicePolicy) limiterFor(key string) *breaker.Limiter {
	switch {
	case key == "*":
		return p.fallback.limiter
	case strings.HasPrefix(key, "inbound:"):
		for _, il := range p.inbound {
			if il.key == key {
				return il.limiter
			}
		}
		return nil
	}
	for _, cp := range p.routes {
		if cp.route == key {
			return cp.limiter
		}
	}
	return nil
}

// withInstances returns a copy of p whose per-instance breakers cover
// list, keeping the breakers of instances that stay.
func (p *servicePolicy) withInstances(list []discovery.Instance, b *policyBuilder) *servicePolicy {
	if p.outlier == nil {
		return p
	}
	next := *p
	next.instances = make(map[string]*breaker.Breaker, len(list))
	for _, in := range list {
		if old := p.instances[in.Address]; old != nil && old.Settings() == *p.outlier {
			next.instances[in.Address] = old
			continue
		}
		next.instances[in.Address] = b.newBreaker(p.service, in.Address, *p.outlier)
	}
	return &next
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
