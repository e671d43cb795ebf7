package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// refusalDoc makes the local service "me" take one request per 100 s on
// /api/ (route "api"), after a burst of 1.
const refusalDoc = `apiVersion: lightmesh/v1
services:
  me:
    inbound:
      - name: api
        match: {path: {prefix: /api/}}
        rateLimit: {rps: 0.01, burst: 1}
`

// refusalServer serves a counting handler behind the Handler of a mesh
// that is service "me" with refusalDoc and opts.
func refusalServer(t *testing.T, opts ...mesh.Option) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, append([]mesh.Option{mesh.WithRules(rules.NewMemory([]byte(refusalDoc))), mesh.WithLocalService("me")}, opts...)...)
	})
	reached := new(atomic.Int64)
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) })))
	t.Cleanup(srv.Close)
	return srv, reached
}

// secondAnswer sends two requests to url and returns the second response
// (the first passes: burst 1) with its body read.
func secondAnswer(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	var resp *http.Response
	var body []byte
	for range 2 {
		r, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
		resp = r
	}
	return resp, string(body)
}

// TestRefusalWriterAnswersInTheServicesFormat: with WithRefusalWriter the
// request over the inbound limit is answered by the service's function,
// which learns the reason, the service, the route and the retry-after,
// and the response still carries Retry-After; the handler is not reached.
func TestRefusalWriterAnswersInTheServicesFormat(t *testing.T) {
	var got atomic.Pointer[mesh.Refusal]
	srv, reached := refusalServer(t, mesh.WithRefusalWriter(func(w http.ResponseWriter, r *http.Request, rf mesh.Refusal) {
		got.Store(&rf)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rf.HTTPStatus())
		json.NewEncoder(w).Encode(map[string]any{
			"code": "TOO_MANY_REQUESTS", "reason": rf.Reason, "rule": rf.Service + "/" + rf.Route,
			"retryAfterMs": rf.RetryAfter.Milliseconds(), "path": r.URL.Path,
		})
	}))
	resp, body := secondAnswer(t, srv.URL+"/api/orders")
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("refused request answered %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var env struct {
		Code, Reason, Rule, Path string
		RetryAfterMs             int64
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if env.Code != "TOO_MANY_REQUESTS" || env.Reason != "rate_limited" || env.Rule != "me/api" || env.Path != "/api/orders" ||
		env.RetryAfterMs < 90_000 || env.RetryAfterMs > 100_000 {
		t.Errorf("envelope %+v; want reason rate_limited, rule me/api, path /api/orders, retry after about 100 s", env)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 90 || s > 100 {
		t.Errorf("Retry-After %q, want about 100 (seconds)", resp.Header.Get("Retry-After"))
	}
	if rf := got.Load(); rf == nil || !errors.Is(rf.Err, mesh.ErrRateLimited) {
		t.Errorf("refusal %+v, want Err matching mesh.ErrRateLimited", rf)
	}
	if reached.Load() != 1 {
		t.Errorf("handler reached %d times, want 1 (the refused request must not reach it)", reached.Load())
	}
}

// TestRefusalDefaultUnchanged: without WithRefusalWriter a refused request
// gets the plain-text 429 it always got.
func TestRefusalDefaultUnchanged(t *testing.T) {
	srv, reached := refusalServer(t)
	resp, body := secondAnswer(t, srv.URL+"/api/orders")
	if resp.StatusCode != http.StatusTooManyRequests || body != "lightmesh: rate limited\n" ||
		resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("Retry-After") == "" || reached.Load() != 1 {
		t.Errorf("default refusal: %d %q %q Retry-After %q, handler reached %d", resp.StatusCode, resp.Header.Get("Content-Type"), body, resp.Header.Get("Retry-After"), reached.Load())
	}
}
