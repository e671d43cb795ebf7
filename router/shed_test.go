package router_test

import (
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/router"
)

// inboundShedding compiles with its defaults filled in, is taken from
// the defaults by a service without one, and mode off turns it off even
// over the defaults'.
func TestInboundShedding(t *testing.T) {
	r, err := router.Load([]byte(`apiVersion: lightmesh/v1
defaults:
  inboundShedding: {mode: adaptive, tolerance: 2}
services:
  a: {inboundShedding: {mode: adaptive, window: 50ms, minLimit: 2}}
  b: {timeout: 1s}
  c: {inboundShedding: {mode: off}}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := router.ShedPolicy{Tolerance: 1.5, InitialLimit: 100, MinLimit: 2, MaxLimit: 10000, Window: 50 * time.Millisecond}
	if p := r.Policy("a").Shed; p == nil || *p != want {
		t.Errorf("a: %+v, want %+v", p, want)
	}
	if p := r.Policy("b").Shed; p == nil || p.Tolerance != 2 || p.Window != 100*time.Millisecond {
		t.Errorf("b (from the defaults): %+v", p)
	}
	if in := r.InForce("b"); in.InboundShedding == nil || in.InboundShedding.Mode != "adaptive" || !strings.Contains(strings.Join(in.FromDefaults, ","), "inboundShedding") {
		t.Errorf("b in force: %+v from defaults %v", in.InboundShedding, in.FromDefaults)
	}
	if p := r.Policy("c").Shed; p != nil {
		t.Errorf("c (mode off): %+v", p)
	}
	if in := r.InForce("c"); in.InboundShedding != nil {
		t.Errorf("c in force: %+v, want nothing shown for off", in.InboundShedding)
	}
	if in := r.InForce("unnamed"); in.InboundShedding == nil || in.InboundShedding.Tolerance != 2 {
		t.Errorf("a service no rule names: %+v, want the defaults'", in.InboundShedding)
	}
}

// Bad inboundShedding sections are rejected with the place in the
// document.
func TestInboundSheddingValidation(t *testing.T) {
	for section, want := range map[string]string{
		"services:\n  s: {inboundShedding: {}}":                                           "services.s.inboundShedding.mode: required",
		"services:\n  s: {inboundShedding: {mode: bbr}}":                                  `services.s.inboundShedding.mode: unknown mode "bbr" (want adaptive or off)`,
		"services:\n  s: {inboundShedding: {mode: adaptive, tolerance: 1}}":               "services.s.inboundShedding.tolerance: must be 1.1..10",
		"services:\n  s: {inboundShedding: {mode: adaptive, minLimit: -1}}":               "services.s.inboundShedding.minLimit: must be 1..1000000",
		"services:\n  s: {inboundShedding: {mode: adaptive, minLimit: 50, maxLimit: 10}}": "services.s.inboundShedding.minLimit: must be <= maxLimit (10)",
		"services:\n  s: {inboundShedding: {mode: adaptive, window: 1ms}}":                "services.s.inboundShedding.window: must be 10ms..1m",
		"services:\n  s: {inboundShedding: {mode: adaptive, limit: 5}}":                   "services.s.inboundShedding.limit: unknown field",
		"defaults:\n  inboundShedding: {mode: adaptive, maxLimit: 0.5}":                   "defaults.inboundShedding.maxLimit",
	} {
		_, err := router.Load([]byte("apiVersion: lightmesh/v1\n" + section + "\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", section, err, want)
		}
	}
}
