package router

import (
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
)

func TestPolicyCompiled(t *testing.T) {
	rules := mustLoad(t, `apiVersion: lightmesh/v1
services:
  svc:
    subsets: {all: {}}
    timeout: 2s
    retry: {attempts: 2, perTryTimeout: 500ms}
    rateLimit: {rps: 100.5}
    breaker: {minRequests: 5, failureStatus: [503], failureCodes: [unavailable, DeadlineExceeded]}
    outlierDetection: {failureStatus: [500], failureCodes: [INTERNAL]}
    routes:
      - name: own
        timeout: 1s
        retry: {attempts: 1, budget: 0.5, backoff: 5ms, on: [5xx, resource-exhausted], nonIdempotent: true}
        rateLimit: {rps: 10, burst: 3}
        destinations: [{subset: all}]
      - destinations: [{subset: all}]
    inbound:
      - {rateLimit: {rps: 5}}
      - {name: api, rateLimit: {rps: 1, burst: 4}}
  bare: {}
`)
	p := rules.Policy("svc")
	if p == nil || rules.Policy("nope") != nil {
		t.Fatal("Policy lookup")
	}
	if len(p.Routes) != 2 {
		t.Fatalf("%d route policies", len(p.Routes))
	}
	own, inherit := p.Routes[0], p.Routes[1]
	if own.Route != "own" || own.Timeout != time.Second || inherit.Route != "routes[1]" || inherit.Timeout != 2*time.Second {
		t.Fatalf("routes: %+v / %+v", own, inherit)
	}
	// A route without its own retry or limit shares the service's value:
	// one budget and one bucket for all of them.
	if inherit.Retry != p.Default.Retry || inherit.RateLimit != p.Default.RateLimit || own.Retry == p.Default.Retry {
		t.Fatal("inherited sections are not shared, or own sections are")
	}
	sr := p.Default.Retry
	if sr.Scope != "" || sr.Attempts != 2 || sr.PerTryTimeout != 500*time.Millisecond || sr.Backoff != DefaultRetryBackoff || sr.Budget != DefaultRetryBudget || sr.NonIdempotent {
		t.Fatalf("service retry %+v", sr)
	}
	// The default conditions.
	if !sr.On.ConnectFailure || !sr.On.Reset || !sr.On.PerTryTimeout || !sr.On.Status.Has(503) || sr.On.Status.Has(500) || !sr.On.Codes.Has(codeUnavailable) || sr.On.Codes.Has(codeInternal) {
		t.Fatalf("default retry conditions %+v", sr.On)
	}
	or := own.Retry
	if or.Scope != "own" || or.Budget != 0.5 || or.Backoff != 5*time.Millisecond || !or.NonIdempotent ||
		or.On.ConnectFailure || !or.On.Status.Has(500) || !or.On.Status.Has(599) || !or.On.Codes.Has(codeResourceExhausted) || or.On.Codes.Has(codeUnavailable) {
		t.Fatalf("route retry %+v", or)
	}
	if l := p.Default.RateLimit; l.Scope != "" || l.RPS != 100.5 || l.Burst != 100 {
		t.Fatalf("service limit %+v (burst defaults to rps)", l)
	}
	if l := own.RateLimit; l.Scope != "own" || l.RPS != 10 || l.Burst != 3 {
		t.Fatalf("route limit %+v", l)
	}
	if p.Breaker.Settings != (breaker.Settings{MinRequests: 5}).WithDefaults() {
		t.Fatalf("breaker settings %+v", p.Breaker.Settings)
	}
	if !p.Breaker.FailureStatus.Has(503) || p.Breaker.FailureStatus.Has(500) || !p.Breaker.FailureCodes.Has(codeDeadlineExceeded) || p.Breaker.FailureCodes.Has(codeInternal) {
		t.Fatalf("breaker classification %+v", p.Breaker)
	}
	if !p.Outlier.FailureStatus.Has(500) || p.Outlier.FailureStatus.Has(503) || !p.Outlier.FailureCodes.Has(codeInternal) || p.Outlier.FailureCodes.Has(codeUnavailable) {
		t.Fatalf("outlier classification %+v", p.Outlier)
	}
	if len(p.Inbound) != 2 || p.Inbound[0].Name != "inbound[0]" || p.Inbound[0].RateLimit != (RateLimitPolicy{Scope: "inbound:inbound[0]", RPS: 5, Burst: 5}) ||
		p.Inbound[1].RateLimit != (RateLimitPolicy{Scope: "inbound:api", RPS: 1, Burst: 4}) {
		t.Fatalf("inbound %+v", p.Inbound)
	}

	bare := rules.Policy("bare")
	if bare.Breaker != nil || bare.Outlier != nil || !bare.Default.Plain() || len(bare.Routes) != 0 {
		t.Fatalf("a service without sections: %+v", bare)
	}
}

func TestPolicyDefaultsClassification(t *testing.T) {
	p := mustLoad(t, "apiVersion: lightmesh/v1\nservices:\n  svc:\n    breaker: {}\n").Policy("svc")
	for code := 500; code <= 599; code++ {
		if !p.Breaker.FailureStatus.Has(code) {
			t.Fatalf("%d is not a failure by default", code)
		}
	}
	if p.Breaker.FailureStatus.Has(499) || p.Breaker.FailureStatus.Has(429) {
		t.Fatal("4xx counted as failures by default")
	}
	for _, name := range []string{"UNAVAILABLE", "deadline-exceeded", "internal", "Unknown"} {
		code, ok := grpcCode(name)
		if !ok || !p.Breaker.FailureCodes.Has(code) {
			t.Fatalf("%s is not a failure by default", name)
		}
	}
	for _, name := range []string{"CANCELLED", "NOT_FOUND", "INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"} { // RESOURCE_EXHAUSTED: a shedding server's answer, as 429
		code, _ := grpcCode(name)
		if p.Breaker.FailureCodes.Has(code) {
			t.Fatalf("%s is a failure by default", name)
		}
	}
}
