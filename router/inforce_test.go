package router_test

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/router"
)

func mustLoad(t *testing.T, doc string) *router.Rules {
	t.Helper()
	r, err := router.Load([]byte(doc))
	if err != nil {
		t.Fatalf("Load: %v\n%s", err, doc)
	}
	return r
}

// TestInForceComposesDefaults: what is in force for a service is its own
// settings, the defaults' for the ones it lacks and the built-in defaults
// inside each section; writing a default out changes nothing in force.
func TestInForceComposesDefaults(t *testing.T) {
	implicit := mustLoad(t, `apiVersion: lightmesh/v1
defaults: {timeout: 2s, breaker: {minRequests: 5}}
services:
  user-api:
    retry: {attempts: 2}
    subsets: {all: {labels: {}}}
    routes:
      - name: slow
        timeout: 5s
        destinations: [{subset: all}]
`)
	explicit := mustLoad(t, `apiVersion: lightmesh/v1
services:
  user-api:
    timeout: 2s
    retry: {attempts: 2, budget: 0.2, backoff: 25ms,
            "on": [connect-failure, reset, per-try-timeout, "502", "503", "504", unavailable]}
    breaker: {window: 10s, buckets: 10, minRequests: 5, failureRatio: 0.5, openBase: 1s, openMax: 60s,
              multiplier: 2, halfOpenProbes: 3, failureCodes: [unknown, deadline-exceeded, internal, unavailable]}
    subsets: {all: {labels: {}}}
    routes:
      - name: slow
        timeout: 5s
        destinations: [{subset: all}]
`)
	a, b := implicit.InForce("user-api"), explicit.InForce("user-api")
	if !slices.Equal(a.FromDefaults, []string{"timeout", "breaker"}) || len(b.FromDefaults) != 0 {
		t.Errorf("from defaults: %v and %v", a.FromDefaults, b.FromDefaults)
	}
	a.FromDefaults, b.FromDefaults = nil, nil
	if !reflect.DeepEqual(a, b) {
		t.Errorf("the same settings, written out or defaulted, differ in force:\n%+v\n%+v", a, b)
	}
	if a.Call.Timeout.Std() != 2*time.Second || a.Routes[0].Timeout.Std() != 5*time.Second {
		t.Errorf("timeouts in force: call %v, route %v", a.Call.Timeout, a.Routes[0].Timeout)
	}
	r := a.Call.Retry
	if r == nil || r.PerTryTimeout != router.Off || r.Budget != 0.2 || !slices.Equal(r.OnGRPC, []string{"connect-failure", "reset", "per-try-timeout", "unavailable"}) ||
		!slices.Equal(r.OnHTTP, []string{"connect-failure", "reset", "per-try-timeout", "502", "503", "504"}) {
		t.Errorf("retry in force: %+v", r)
	}
	if br := a.Breaker; br == nil || br.FailureRatio != 0.5 || br.MinRequests != 5 || !slices.Equal(br.FailureStatus, []string{"5xx"}) {
		t.Errorf("breaker in force: %+v", br)
	}
	other := implicit.InForce("order-api")
	if other.Named || other.Call.Timeout.Std() != 2*time.Second || other.Breaker == nil {
		t.Errorf("a service the rules do not name: %+v", other)
	}
	if none := explicit.InForce("order-api"); none.Call.Timeout != router.Off || none.Call.Retry != nil || none.Breaker == nil || none.Breaker.Mode != "adaptive" || none.LoadBalancer != "p2c-ewma" {
		t.Errorf("no defaults: %+v", none)
	}
}

// splitsDoc is the document of service with n distinct weighted splits of
// about 65,000 schedule steps each, their weights from 65000-off down.
func splitsDoc(service string, n, off int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: lightmesh/v1\nservices:\n  %s:\n    subsets: {a: {labels: {v: a}}, b: {labels: {v: b}}}\n    routes:\n", service)
	for i := range n {
		fmt.Fprintf(&b, "      - match: {headers: {x-n: {exact: \"%d\"}}}\n        destinations: [{subset: a, weight: 1}, {subset: b, weight: %d}]\n", i, 65000-off-i)
	}
	return b.String()
}

// TestComposeBudgetsPerDocument: two per-service documents, each within
// the document budgets alone, compose into one rule set although their
// sum is over them: a team's valid document is never rejected for
// another's.
func TestComposeBudgetsPerDocument(t *testing.T) {
	var parts []*router.Document
	for i, svc := range []string{"user-api", "order-api"} {
		r, err := router.LoadPart(svc, []byte(splitsDoc(svc, 40, 40*i)))
		if err != nil {
			t.Fatalf("%s alone: %v", svc, err)
		}
		parts = append(parts, r.Document())
	}
	composed, err := router.Compose(nil, parts...)
	if err != nil {
		t.Fatalf("composed: %v", err)
	}
	if got := composed.Services(); !slices.Equal(got, []string{"order-api", "user-api"}) {
		t.Errorf("services %v", got)
	}
	// One document holding both is over its budget.
	both := splitsDoc("user-api", 40, 0) + strings.TrimPrefix(splitsDoc("order-api", 40, 40), "apiVersion: lightmesh/v1\nservices:\n")
	var ve *router.ValidationError
	if _, err := router.Load([]byte(both)); !errors.As(err, &ve) || !strings.Contains(err.Error(), "over the limit") {
		t.Errorf("one document with both: %v", err)
	}
}
