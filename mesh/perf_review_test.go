package mesh_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// durationSum returns the sum and count of the outbound request duration
// histogram of service svc.
func durationSum(t *testing.T, reg *prometheus.Registry) (sum float64, count uint64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "lightmesh_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			sum += h.GetSampleSum()
			count += h.GetSampleCount()
		}
	}
	return sum, count
}

// A call whose timeout runs out during a retry's backoff lasts the whole
// timeout for the caller; the latency histogram must say so too. With a
// slow-call threshold the breaker reads each try's end, and the call's
// latency was taken from that end, so the backoff the caller waited was
// missing from lightmesh_request_duration_seconds.
func TestLatencyMetricCountsBackoffThatEndsTheCall(t *testing.T) {
	for _, breaker := range []string{"", "    breaker: {minRequests: 100, slowCallThreshold: 10s}\n"} {
		bad := newFlaky(t, "bad")
		bad.status.Store(http.StatusServiceUnavailable)
		doc := svcDoc("    timeout: 300ms\n    retry: {attempts: 2, backoff: 2s}\n" + breaker)
		reg := prometheus.NewRegistry()
		m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{"svc": {bad.instance()}}), mesh.WithRegisterer(reg))
		client := &http.Client{Transport: m.Transport(nil)}
		start := time.Now()
		resp, err := client.Get("http://svc/")
		took := time.Since(start)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("breaker %q: got %d, want the call's timeout", breaker, resp.StatusCode)
		}
		if !errors.Is(err, context.DeadlineExceeded) || took < 250*time.Millisecond {
			t.Fatalf("breaker %q: %v after %v, want a timeout after 300ms", breaker, err, took)
		}
		sum, count := durationSum(t, reg)
		if count != 1 {
			t.Fatalf("breaker %q: %d observations, want 1", breaker, count)
		}
		if got := time.Duration(sum * float64(time.Second)); got < 250*time.Millisecond || got > took {
			t.Errorf("breaker %q: the caller waited %v, lightmesh_request_duration_seconds observed %v", breaker, took, got)
		}
	}
}
