package engine

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// TestPublishHandsCarriedBucketsOver: a rule change that changes a rate
// limit carries its bucket over; once the new State is published, calls
// that loaded the old State before (a gRPC call, a call held up) take
// their tokens from the same bucket as new calls, and the calls the old
// State admitted while the new one was built are taken from it too: over
// the change the service admits no more than its burst, not twice it.
func TestPublishHandsCarriedBucketsOver(t *testing.T) {
	load := func(rps string) *router.Rules {
		rules, err := router.Load([]byte("apiVersion: lightmesh/v1\nservices:\n  svc:\n    rateLimit: {rps: " + rps + ", burst: 5}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return rules
	}
	table := router.NewTable(nil, map[string][]discovery.Instance{"svc": {{Address: "10.0.0.1:80"}}})
	old := NewState(table).WithRules(load("0.001"), nil)
	e := New(old, nil, slog.Default(), "", nil)
	admit := func(st *State, n int) int {
		ok := 0
		for range n {
			var c Call
			req := &router.Request{Method: http.MethodGet, Path: "/", Header: http.Header{}}
			if err := c.Begin(st, "svc", req, nil); err != nil {
				t.Fatal(err)
			}
			if c.Admit(time.Now()) == nil {
				ok++
			}
			c.Release()
		}
		return ok
	}
	next := old.WithRules(load("0.002"), nil)
	admitted := admit(old, 2) // while the new State is built
	e.Publish(next)
	admitted += admit(old, 10) + admit(next, 10)
	if admitted != 5 {
		t.Fatalf("%d calls admitted over a rate-limit change, old and new State together; want the burst, 5", admitted)
	}
}
