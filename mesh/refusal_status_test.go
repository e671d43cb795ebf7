package mesh_test

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/mesh"
)

// TestRefusalWriterWithoutStatusStillRefuses: a refusal writer that
// writes its JSON envelope without calling WriteHeader (the common
// json.NewEncoder(w).Encode shape), or writes nothing at all, must not
// turn the refusal into a 200 OK: the caller still gets the refusal's
// status and Retry-After.
func TestRefusalWriterWithoutStatusStillRefuses(t *testing.T) {
	writers := map[string]func(http.ResponseWriter, *http.Request, mesh.Refusal){
		"body only": func(w http.ResponseWriter, _ *http.Request, rf mesh.Refusal) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"code": "TOO_MANY_REQUESTS", "reason": rf.Reason})
		},
		"nothing": func(http.ResponseWriter, *http.Request, mesh.Refusal) {},
	}
	for name, write := range writers {
		t.Run(name, func(t *testing.T) {
			srv, reached := refusalServer(t, mesh.WithRefusalWriter(write))
			resp, body := secondAnswer(t, srv.URL+"/api/orders")
			if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
				t.Errorf("refused request answered %d (Retry-After %q): %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
			if name == "body only" && !strings.Contains(body, "TOO_MANY_REQUESTS") {
				t.Errorf("body %q, want the writer's envelope", body)
			}
			if reached.Load() != 1 {
				t.Errorf("handler reached %d times, want 1", reached.Load())
			}
		})
	}
}

// TestRefusalWriterPanicStillRefuses: a refusal writer that panics before
// writing (its envelope code fails only while the service is over its
// limit) must not leave the caller with a dropped connection and no
// Retry-After: the default refusal answers instead.
func TestRefusalWriterPanicStillRefuses(t *testing.T) {
	srv, reached := refusalServer(t, mesh.WithRefusalWriter(func(http.ResponseWriter, *http.Request, mesh.Refusal) {
		var env map[string]string
		env["code"] = "TOO_MANY_REQUESTS"
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	resp, body := secondAnswer(t, srv.URL+"/api/orders")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || body != "lightmesh: rate limited\n" {
		t.Errorf("refused request with a panicking writer answered %d (Retry-After %q): %q; want the default 429", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if reached.Load() != 1 {
		t.Errorf("handler reached %d times, want 1", reached.Load())
	}
}
