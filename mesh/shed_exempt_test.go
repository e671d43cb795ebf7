package mesh_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// A service at its adaptive limit still answers its probes under their
// other common names (/health, /ready, /live), Prometheus' scrape of
// /metrics and Go's /debug/pprof/: shedding is on by default for every
// local service no rule names, and a kubelet whose liveness probe of
// /health got 429 restarted the overloaded pod, and a scrape that got
// 429 left the overload without figures, just when they were needed.
func TestInboundSheddingSparesProbesScrapesAndProfiles(t *testing.T) {
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rules.NewMemory([]byte(
			"apiVersion: lightmesh/v1\nservices:\n  me:\n    inboundShedding: {mode: adaptive, initialLimit: 1, minLimit: 1, maxLimit: 1}\n"))),
			mesh.WithLocalService("me"))
	})
	held, release := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		close(held)
		<-release
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {})
	srv := httptest.NewServer(m.Handler(mux))
	t.Cleanup(srv.Close)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.Get(srv.URL + "/hold"); err == nil {
			resp.Body.Close()
		}
	}()
	<-held
	defer func() { close(release); <-done }()
	get := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/work"); code != http.StatusTooManyRequests {
		t.Fatalf("GET /work with the one place taken: %d, want 429", code)
	}
	for _, path := range []string{"/healthz", "/health", "/ready", "/live", "/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		if code := get(path); code != http.StatusOK {
			t.Errorf("GET %s at the limit: %d, want 200 (never shed)", path, code)
		}
	}
}
