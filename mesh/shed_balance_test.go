package mesh_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A caller balancing by p2c-ewma (the built-in default) over an instance
// that sheds and one that has room keeps its calls off the shedding
// instance: its 429s come back at once, and read as fast successes they
// made it the cheapest instance, so the caller sent it most calls and
// got most of them refused while the other instance idled (seen: 98%
// of the calls refused before a 429 counted as a failure and no latency
// sample for balancing; 11-14% after, bound 35% for a loaded run).
func TestP2CEWMAAvoidsASheddingInstance(t *testing.T) {
	// The shedding instance: the saturated handler of the shedding
	// tests behind a mesh whose adaptive limit is held at 1.
	_, shedding := shedServer(t, rules.NewMemory([]byte(
		"apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: adaptive, initialLimit: 1, minLimit: 1, maxLimit: 1}\n")))
	var roomy atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		roomy.Add(1)
		time.Sleep(shedWork)
	}))
	t.Cleanup(other.Close)
	list := []discovery.Instance{
		{Address: strings.TrimPrefix(shedding.URL, "http://")},
		{Address: strings.TrimPrefix(other.URL, "http://")},
	}
	// No rules name svc: the built-in p2c-ewma balances it.
	m := newMesh(t, rules.NewMemory([]byte("apiVersion: lightmesh/v1\nservices: {}\n")),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": list}), mesh.WithServices("svc"))
	client := &http.Client{Transport: m.Transport(nil)}
	var calls, refused atomic.Int64
	errs := make(chan error, 4)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for range 4 {
		go func() {
			for n := 0; n < 2000 && time.Now().Before(deadline); n++ {
				code, _, err := send(client, "GET", "http://svc/")
				if err != nil {
					errs <- err
					return
				}
				calls.Add(1)
				if code == http.StatusTooManyRequests {
					refused.Add(1)
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	share := float64(refused.Load()) / float64(calls.Load())
	t.Logf("%d calls, %d refused (429), %d served by the instance with room", calls.Load(), refused.Load(), roomy.Load())
	if share > 0.35 {
		t.Fatalf("%.2f of %d calls were shed by the instance at its limit while the other had room; want under 0.35", share, calls.Load())
	}
}

// An HTTP caller's window breaker stays closed while the server it calls
// sheds the requests beyond its capacity with 429: the server serves
// what it can, and an open breaker would refuse those too. The gRPC twin
// (RESOURCE_EXHAUSTED) is meshgrpc's TestBreakerDoesNotOpenOnShedding.
func TestBreakerDoesNotOpenOnShedding(t *testing.T) {
	_, shedding := shedServer(t, rules.NewMemory([]byte(
		"apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: adaptive, initialLimit: 1, minLimit: 1, maxLimit: 1}\n")))
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    breaker: {minRequests: 10, failureRatio: 0.5}\n"))),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {{Address: strings.TrimPrefix(shedding.URL, "http://")}}}))
	client := &http.Client{Transport: m.Transport(nil)}
	var ok, shed, open atomic.Int64
	errs := make(chan error, 4)
	deadline := time.Now().Add(time.Second)
	for range 4 {
		go func() {
			for n := 0; n < 2000 && time.Now().Before(deadline); n++ {
				code, _, err := send(client, "GET", "http://svc/")
				switch {
				case errors.Is(err, mesh.ErrCircuitOpen):
					open.Add(1)
				case err != nil:
					errs <- err
					return
				case code == http.StatusTooManyRequests:
					shed.Add(1)
				default:
					ok.Add(1)
				}
			}
			errs <- nil
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d served, %d shed, %d refused by the open breaker", ok.Load(), shed.Load(), open.Load())
	if open.Load() != 0 || ok.Load() < 25 {
		t.Fatalf("%d requests refused by the caller's breaker and %d served in 1s; want none refused and at least 25 served (the server serves 50/s)", open.Load(), ok.Load())
	}
}
