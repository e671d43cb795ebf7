package mesh_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestBadPolicyRejected feeds protection sections that are wrong; each is
// rejected as a whole with the place and reason, and the rules in force
// keep serving.
func TestBadPolicyRejected(t *testing.T) {
	cases := []struct{ section, want string }{
		{"breaker: {failureRatio: 1.5}", "services.svc.breaker.failureRatio"},
		{"breaker: {failureRatio: .nan}", "services.svc.breaker.failureRatio"},
		{"breaker: {openBase: 10s, openMax: 1s}", "services.svc.breaker.openMax"},
		{"breaker: {minRequests: -1}", "services.svc.breaker.minRequests: must be 0.."},
		{"breaker: {failureStatus: [200, 999]}", "services.svc.breaker.failureStatus[1]: 999 is not an HTTP status code"},
		{"outlierDetection: {multiplier: 0.5}", "services.svc.outlierDetection.multiplier"},
		{"retry: {attempts: 11}", "services.svc.retry.attempts: must be 0..10"},
		{"retry: {attempts: 1, budget: 2}", "services.svc.retry.budget: must be within 0..1"},
		{"retry: {attempts: 1, budget: .nan}", "services.svc.retry.budget: must be within 0..1"},
		{"retry: {attempts: 1, on: [teapot]}", `services.svc.retry.on[0]: unknown condition "teapot"`},
		{"retry: {attempts: 1, perTryTimeout: -1s}", "services.svc.retry.perTryTimeout: must be >= 0"},
		{"rateLimit: {rps: -1}", "services.svc.rateLimit.rps: must be a finite number > 0"},
		{"rateLimit: {rps: .nan}", "services.svc.rateLimit.rps"},
		{"rateLimit: {rps: .inf}", "services.svc.rateLimit.rps"},
		{"rateLimit: {rps: 10, burst: -2}", "services.svc.rateLimit.burst: must be >= 0"},
		{"timeout: -1s", "services.svc.timeout: must be >= 0"},
		{"inbound: [{match: {path: {prefix: /}}}]", "services.svc.inbound[0].rateLimit: required"},
		{"inbound: [{rateLimit: {rps: 0}}]", "services.svc.inbound[0].rateLimit.rps"},
	}
	good := "apiVersion: lightmesh/v1\nservices:\n  svc:\n    rateLimit: {rps: 100}\n"
	events := make(chan mesh.RulesEvent, 64)
	src := rules.NewMemory([]byte(good))
	m, err := mesh.New(context.Background(), mesh.WithRules(src), mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	<-events
	version := m.Status().Rules.Version
	for _, tc := range cases {
		src.Set([]byte("apiVersion: lightmesh/v1\nservices:\n  svc:\n    " + tc.section + "\n"))
		select {
		case ev := <-events:
			if ev.Err == nil || !strings.Contains(ev.Err.Error(), tc.want) {
				t.Errorf("%s: err = %v, want it to contain %q", tc.section, ev.Err, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no event", tc.section)
		}
		if v := m.Status().Rules.Version; v != version {
			t.Fatalf("%s: rules version moved to %s; the last good rules must keep serving", tc.section, v)
		}
	}
}
