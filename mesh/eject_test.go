package mesh_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"

	"github.com/lightmesh/lightmesh/mesh"
)

// TestEjectionCapHoldsWithEveryInstanceFailing: four instances all fail
// and every outlier breaker opens, yet with the default
// maxEjectionPercent (50) only two are ejected — the calls keep reaching
// the other two and the caller sees their 500s, not a CircuitOpenError for
// a route left without instances. maxEjectionPercent: 100 ejects all.
func TestEjectionCapHoldsWithEveryInstanceFailing(t *testing.T) {
	for _, tc := range []struct {
		cap     string
		serving int
	}{{"", 2}, {", maxEjectionPercent: 25", 3}, {", maxEjectionPercent: 100", 0}} {
		var fleet []*flaky
		for _, name := range []string{"a", "b", "c", "d"} {
			f := newFlaky(t, name)
			f.status.Store(http.StatusInternalServerError)
			fleet = append(fleet, f)
		}
		m, _, client := meshFor(t, svcDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h"+tc.cap+"}\n"), fleet...)
		for range 40 { // every breaker opens
			send(client, "GET", "http://svc/")
		}
		before := map[string]int64{}
		for _, f := range fleet {
			before[f.name] = f.hits.Load()
		}
		refused := 0
		for range 40 {
			code, _, err := send(client, "GET", "http://svc/")
			switch {
			case errors.Is(err, mesh.ErrCircuitOpen):
				refused++
			case err != nil || code != 500:
				t.Fatalf("cap %q: %d %v", tc.cap, code, err)
			}
		}
		serving := 0
		for _, f := range fleet {
			if f.hits.Load() > before[f.name] {
				serving++
			}
		}
		open := 0
		for _, b := range m.Status().Breakers {
			if b.Instance != "" && b.State == "open" {
				open++
			}
		}
		if open != 4 || serving != tc.serving || (tc.serving > 0) != (refused == 0) {
			t.Fatalf("cap %q: %d breakers open, %d instances still serving, %d calls refused; want 4 open, %d serving",
				tc.cap, open, serving, refused, tc.serving)
		}
		var text strings.Builder
		m.Explain(mesh.ExplainRequest{Service: "svc", Path: "/"}).WriteText(&text)
		// Explain lists the ejected instances its pick skipped: never more than
		// the cap allows, all four when it allows them all.
		if got := strings.Count(text.String(), "ejected "); got > 4-tc.serving || tc.serving == 0 && got != 4 {
			t.Fatalf("cap %q: explain lists %d ejected instances, want at most %d:\n%s", tc.cap, got, 4-tc.serving, text.String())
		}
		m.Close()
	}
}

// TestEjectionCapPrefersHealthyInstances: of three instances two fail
// and both their outlier breakers open, but the default cap (50% of 3:
// one) ejects only one. The one left over the cap is a last resort, not
// an equal share: while the healthy instance takes calls, every call
// reaches it and none fails (before, the over-cap instance took every
// other call and half of them failed).
func TestEjectionCapPrefersHealthyInstances(t *testing.T) {
	a, b, ok := newFlaky(t, "a"), newFlaky(t, "b"), newFlaky(t, "ok")
	a.status.Store(http.StatusInternalServerError)
	b.status.Store(http.StatusInternalServerError)
	m, _, client := meshFor(t, svcDoc("    outlierDetection: {minRequests: 2, failureRatio: 0.5, openBase: 1h, openMax: 1h}\n"), a, b, ok)
	meshtest.WaitFor(t, 5*time.Second, "both failing instances' breakers to open", func() bool {
		send(client, "GET", "http://svc/")
		open := 0
		for _, br := range m.Status().Breakers {
			if br.Instance != "" && br.State == "open" {
				open++
			}
		}
		return open == 2
	})
	failed := 0
	for range 40 {
		if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != http.StatusOK {
			failed++
		}
	}
	if failed > 0 {
		t.Fatalf("%d of 40 calls failed on the instance over the ejection cap while a healthy one was there", failed)
	}
}
