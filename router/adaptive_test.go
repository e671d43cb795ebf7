package router_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/router"
)

func TestBreakerModeAdaptive(t *testing.T) {
	r, err := router.Load([]byte(`apiVersion: lightmesh/v1
defaults:
  breaker: {mode: adaptive}
services:
  own:
    breaker: {mode: adaptive, k: 2, window: 4s}
  windowed:
    breaker: {minRequests: 5}
`))
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Policy("own").Breaker.Settings; s.Mode != breaker.ModeAdaptive || s.K != 2 {
		t.Errorf("own breaker = %+v, want adaptive with k 2", s)
	}
	if s := r.Policy("windowed").Breaker.Settings; s.Mode != breaker.ModeWindow || s.K != 0 {
		t.Errorf("windowed breaker = %+v, want window mode", s)
	}
	if s := r.DefaultPolicy().Breaker.Settings; s.Mode != breaker.ModeAdaptive || s.K != breaker.DefaultK {
		t.Errorf("default breaker = %+v, want adaptive with k %v", s, breaker.DefaultK)
	}
	if got := r.Policy("windowed").Breaker.MaxEjectionPercent; got != 0 {
		t.Errorf("a service breaker has maxEjectionPercent %d", got)
	}
	in := r.InForce("unnamed")
	if in.Breaker == nil || in.Breaker.Mode != "adaptive" || in.Breaker.K != breaker.DefaultK {
		t.Errorf("in force for an unnamed service: %+v", in.Breaker)
	}
}

func TestBreakerModeErrorsNameThePlace(t *testing.T) {
	for _, tc := range []struct{ section, want string }{
		{"breaker: {mode: sre}", `services.s.breaker.mode: unknown mode "sre" (want window, adaptive or off)`},
		{"breaker: {mode: adaptive, k: 0.5}", `services.s.breaker.k: must be a finite number >= 1`},
		{"breaker: {mode: adaptive, failureRatio: 0.3}", `services.s.breaker.failureRatio: applies to mode window only`},
		{"breaker: {k: 2}", `services.s.breaker.k: applies to mode adaptive only`},
		{"outlierDetection: {mode: adaptive}", `services.s.outlierDetection.mode: adaptive applies to breaker only`},
		{"outlierDetection: {maxEjectionPercent: 101}", `services.s.outlierDetection.maxEjectionPercent: must be 1..100`},
		{"breaker: {maxEjectionPercent: 20}", `services.s.breaker.maxEjectionPercent: applies to outlierDetection only`},
	} {
		_, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  s:\n    " + tc.section + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.section, err, tc.want)
		}
	}
}

func TestMaxEjectionPercentDefault(t *testing.T) {
	r, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  a: {outlierDetection: {}}\n  b: {outlierDetection: {maxEjectionPercent: 10}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Policy("a").Outlier.MaxEjectionPercent; got != 50 {
		t.Errorf("default maxEjectionPercent = %d, want 50", got)
	}
	if got := r.InForce("b").OutlierDetection.MaxEjectionPercent; got != 10 {
		t.Errorf("in force maxEjectionPercent = %d, want 10", got)
	}
}

func TestSlowStart(t *testing.T) {
	r, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  a: {slowStart: {window: 30s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ss := r.Policy("a").SlowStart; ss == nil || ss.Window != 30*time.Second || ss.MinPercent != 10 {
		t.Errorf("slowStart = %+v, want 30s from 10%%", ss)
	}
	if in := r.InForce("a"); in.SlowStart == nil || in.SlowStart.MinPercent != 10 {
		t.Errorf("in force: %+v", in.SlowStart)
	}
	for section, want := range map[string]string{
		"slowStart: {}": "services.s.slowStart.window: must be > 0",
		"slowStart: {window: 1s, minPercent: 0.5}": "services.s.slowStart.minPercent",
		"slowStart: {window: 1s, minPercent: 101}": "services.s.slowStart.minPercent: must be 1..100",
	} {
		_, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  s:\n    " + section + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", section, err, want)
		}
	}
}

func TestLoadBalancer(t *testing.T) {
	r, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  a: {loadBalancer: p2c-ewma}\n  b: {loadBalancer: least-request}\n  c: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for svc, want := range map[string]router.LoadBalancer{"a": router.P2CEWMA, "b": router.LeastRequest, "c": router.RoundRobin} {
		if got := r.Policy(svc).LoadBalancer; got != want {
			t.Errorf("%s: loadBalancer %v, want %v", svc, got, want)
		}
	}
	if got := r.InForce("a").LoadBalancer; got != "p2c-ewma" {
		t.Errorf("in force: %q", got)
	}
	_, err = router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  s: {loadBalancer: p2c}\n"))
	if err == nil || !strings.Contains(err.Error(), `services.s.loadBalancer: unknown load balancer "p2c" (want round-robin, p2c-ewma or least-request)`) {
		t.Errorf("error %v", err)
	}
}

func TestDefaultsGiveLoadBalancerAndSlowStart(t *testing.T) {
	r, err := router.Load([]byte(`apiVersion: lightmesh/v1
defaults:
  loadBalancer: p2c-ewma
  slowStart: {window: 10s}
services:
  named: {timeout: 1s}
  own: {loadBalancer: least-request}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"named", "unnamed"} {
		in := r.InForce(svc)
		if in.LoadBalancer != "p2c-ewma" || in.SlowStart == nil || in.SlowStart.Window.Std() != 10*time.Second {
			t.Errorf("%s: %+v", svc, in)
		}
	}
	if in := r.InForce("named"); !slices.Contains(in.FromDefaults, "loadBalancer") || !slices.Contains(in.FromDefaults, "slowStart") {
		t.Errorf("fromDefaults = %v", in.FromDefaults)
	}
	if got := r.Policy("own").LoadBalancer; got != router.LeastRequest {
		t.Errorf("own loadBalancer = %v", got)
	}
	_, err = router.Load([]byte("apiVersion: lightmesh/v1\ndefaults:\n  loadBalancer: random\n"))
	if err == nil || !strings.Contains(err.Error(), `defaults.loadBalancer: unknown load balancer "random"`) {
		t.Errorf("error %v", err)
	}
}
