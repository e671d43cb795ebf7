package mesh_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestAdaptiveBreakerTripsAndRecovers: with breaker {mode: adaptive} and
// nothing else, a backend failing every call is spared most of them (the
// caller gets ErrCircuitOpen without a request sent), and once it recovers
// the throttling ends by traffic alone, long before the 10s window could
// forget the failures.
func TestAdaptiveBreakerTripsAndRecovers(t *testing.T) {
	be := newFlaky(t, "b")
	reg := prometheus.NewRegistry()
	m := newMesh(t, rules.NewMemory([]byte(svcDoc("    breaker: {mode: adaptive}\n"))),
		discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}}), mesh.WithRegisterer(reg))
	client := &http.Client{Transport: m.Transport(nil)}
	drop := func() float64 {
		return metricValue(t, reg, "lightmesh_breaker_drop_ratio", map[string]string{"destination_service": "svc", "upstream_instance": ""})
	}

	be.status.Store(http.StatusInternalServerError)
	refused := 0
	const offered = 400
	for range offered {
		code, _, err := send(client, "GET", "http://svc/")
		switch {
		case errors.Is(err, mesh.ErrCircuitOpen):
			refused++
		case err != nil || code != 500:
			t.Fatalf("failing backend: %d, %v", code, err)
		}
	}
	hits := be.hits.Load()
	if hits+int64(refused) != offered || hits > offered/4 {
		t.Fatalf("failing backend reached by %d of %d calls (%d refused); want at most a quarter", hits, offered, refused)
	}
	st := serviceBreaker(m, "svc")
	if st.Mode != "adaptive" || st.State != "half-open" || st.DropRatio < 0.8 {
		t.Fatalf("status while throttling: %+v", st)
	}
	if d := drop(); d < 0.8 {
		t.Fatalf("lightmesh_breaker_drop_ratio while throttling = %v, want > 0.8", d)
	}
	var text strings.Builder
	m.Explain(mesh.ExplainRequest{Service: "svc", Path: "/"}).WriteText(&text)
	if !strings.Contains(text.String(), "service breaker: half-open, adaptive, refusing 9") ||
		!strings.Contains(text.String(), "breaker: adaptive, k 1.5, window 10s") {
		t.Fatalf("explain while throttling does not show the adaptive breaker:\n%s", text.String())
	}

	be.status.Store(http.StatusOK)
	start := time.Now()
	streak := 0
	for i := 0; streak < 50; i++ {
		if i == 5000 || time.Since(start) > 5*time.Second {
			t.Fatalf("not recovered after %d calls, %v: %+v", i, time.Since(start), serviceBreaker(m, "svc"))
		}
		code, _, err := send(client, "GET", "http://svc/")
		switch {
		case errors.Is(err, mesh.ErrCircuitOpen):
			streak = 0
		case err != nil || code != 200:
			t.Fatalf("recovered backend: %d, %v", code, err)
		default:
			streak++
		}
	}
	if st := serviceBreaker(m, "svc"); st.State != "closed" || st.DropRatio != 0 {
		t.Fatalf("status after recovery: %+v", st)
	}
	if d := drop(); d != 0 {
		t.Fatalf("lightmesh_breaker_drop_ratio after recovery = %v", d)
	}
	t.Logf("refused %d of %d while failing; recovered in %v", refused, offered, time.Since(start))
}

// TestBreakerModeSwapUnderLoad switches the service breaker between
// window and adaptive while calls flow to a healthy backend: no call fails.
func TestBreakerModeSwapUnderLoad(t *testing.T) {
	be := newFlaky(t, "b")
	docs := []string{
		svcDoc("    breaker: {mode: adaptive}\n"),
		svcDoc("    breaker: {mode: window, minRequests: 5}\n"),
		svcDoc("    breaker: {mode: adaptive, k: 2, window: 1s}\n"),
		svcDoc(""),
	}
	_, src, client := meshFor(t, docs[0], be)
	done := make(chan struct{})
	errs := make(chan error, 4)
	var calls atomic.Int64
	for range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				calls.Add(1)
				if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != 200 {
					errs <- fmt.Errorf("during mode swaps: %d %v", code, err)
					return
				}
			}
		}()
	}
	for i := range 200 {
		src.Set([]byte(docs[i%len(docs)]))
		time.Sleep(time.Millisecond)
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() < 50 {
		t.Fatalf("only %d calls ran during the swaps", calls.Load())
	}
}
