package mesh_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
)

// hostLog is a base RoundTripper that records the host of every request
// it sends and answers each with 200 "outside" instead of using the
// network, standing in for DNS and the internet. The mesh's own tries
// (to an instance's address) are sent for real.
type hostLog struct {
	mu    sync.Mutex
	hosts []string
}

func (h *hostLog) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.hosts = append(h.hosts, r.URL.Host)
	h.mu.Unlock()
	if strings.HasPrefix(r.URL.Host, "127.0.0.1:") {
		return http.DefaultTransport.RoundTrip(r)
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r, Header: http.Header{}}, nil
}

func (h *hostLog) sent(host string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, got := range h.hosts {
		if got == host {
			n++
		}
	}
	return n
}

// TestMeshServicesFoundOnFirstUse: a host that WithMeshServices names and
// no rule does is looked up on its first call and then routed by the mesh
// over its instances; one discovery does not know leaves the mesh (or,
// strict, fails with ErrUnknownService); one no pattern names is never
// looked up.
func TestMeshServicesFoundOnFirstUse(t *testing.T) {
	backends, list := meshtest.Fleet(t, "pay-1", "pay-2")
	disc := discovery.NewStatic(map[string][]discovery.Instance{"pay-api": list})
	for _, strict := range []bool{false, true} {
		opts := []mesh.Option{mesh.WithDiscovery(disc), mesh.WithMeshServices("*-api")}
		if strict {
			opts = append(opts, mesh.WithStrictServices())
		}
		m := meshtest.Start(t, 5*time.Second, func(ctx context.Context) (*mesh.Mesh, error) { return mesh.New(ctx, opts...) })
		base := &hostLog{}
		client := &http.Client{Transport: m.Transport(base)}

		// Every call from its instances, shared as p2c-ewma (the built-in
		// default of a service no rule names) shares them.
		got := meshtest.Routes(t, client, "pay-api", "", 10)
		if got["pay-1"]+got["pay-2"] != 10 || base.sent("pay-api") != 0 {
			t.Fatalf("strict=%v: pay-api answered %v, %d sent outside; want all 10 from its instances, none outside", strict, got, base.sent("pay-api"))
		}
		if st := m.Status(); !hasService(st, "pay-api") {
			t.Errorf("strict=%v: status lists no pay-api after its first use: %+v", strict, st.Services)
		}

		_, err := meshtest.Call(client, "ghost-api", "")
		switch {
		case strict && (!errors.Is(err, router.ErrUnknownService) || base.sent("ghost-api") != 0):
			t.Errorf("strict: a call to ghost-api gave %v with %d sent outside; want ErrUnknownService, nothing sent", err, base.sent("ghost-api"))
		case !strict && (err != nil || base.sent("ghost-api") != 1):
			t.Errorf("a call to ghost-api gave %v with %d sent outside; want it sent outside the mesh", err, base.sent("ghost-api"))
		}
		// Calls made while a lookup is under way wait for it too, rather
		// than fail on a service known with no instance yet.
		var wg sync.WaitGroup
		errs := make(chan error, 3)
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := meshtest.Call(client, "other-api", "")
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if strict != errors.Is(err, router.ErrUnknownService) || (!strict && err != nil) {
				t.Errorf("strict=%v: a concurrent first call to other-api: %v", strict, err)
			}
		}
		if want := map[bool]int{false: 3, true: 0}[strict]; base.sent("other-api") != want {
			t.Errorf("strict=%v: %d calls to other-api sent outside, want %d", strict, base.sent("other-api"), want)
		}
		// The miss is remembered: the next call does not wait again.
		start := time.Now()
		meshtest.Call(client, "ghost-api", "")
		if took := time.Since(start); took > time.Second {
			t.Errorf("strict=%v: the second call to ghost-api waited %v", strict, took)
		}

		if _, err := meshtest.Call(client, "example.com", ""); err != nil || base.sent("example.com") != 1 {
			t.Errorf("strict=%v: example.com gave %v, %d sent outside; want it sent outside, never looked up", strict, err, base.sent("example.com"))
		}
		// The lookup of ghost-api is over: the mesh stops discovering it.
		meshtest.WaitFor(t, 2*time.Second, "ghost-api forgotten", func() bool { return !hasService(m.Status(), "ghost-api") })
		if hasService(m.Status(), "example.com") {
			t.Errorf("strict=%v: status lists example.com: %+v", strict, m.Status().Services)
		}
	}
	if n := backends["pay-1"].Hits.Load() + backends["pay-2"].Hits.Load(); n != 20 {
		t.Errorf("pay-api's instances got %d requests, want 20", n)
	}

	if _, err := mesh.New(context.Background(), mesh.WithMeshServices("[")); err == nil {
		t.Error("New accepted the pattern \"[\"")
	}
}

func hasService(st mesh.Status, name string) bool {
	for _, s := range st.Services {
		if s.Name == name {
			return true
		}
	}
	return false
}

// TestMeshServicesMissUnderLoad: calls keep coming while the lookup of a
// host discovery does not know ends; every one leaves the mesh, none
// fails in the moment the mesh forgets the host again.
func TestMeshServicesMissUnderLoad(t *testing.T) {
	m := meshtest.Start(t, 5*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithDiscovery(discovery.NewStatic(nil)), mesh.WithMeshServices("*-api"))
	})
	base := &hostLog{}
	client := &http.Client{Transport: m.Transport(base)}
	var failed, sent atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(engine.FirstUseWait + 500*time.Millisecond)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := meshtest.Call(client, "ghost-api", ""); err != nil {
					if failed.Add(1) == 1 {
						t.Errorf("a call failed instead of leaving the mesh: %v", err)
					}
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d calls, %d failed", sent.Load(), failed.Load())
	if failed.Load() != 0 || base.sent("ghost-api") != int(sent.Load()) {
		t.Errorf("%d of %d calls failed, %d sent outside; want every one sent outside", failed.Load(), sent.Load(), base.sent("ghost-api"))
	}
}
