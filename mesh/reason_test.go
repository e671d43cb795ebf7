package mesh_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// TestEveryRefusalAndFailureCarriesAReason: each way the mesh refuses or
// fails a call is named — in the error's text (a *mesh.CallError for a
// sent call, the typed refusal otherwise) and in the client span's
// lightmesh.reason — and a success or the caller's own cancellation
// carries none.
func TestEveryRefusalAndFailureCarriesAReason(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer slow.Close()
	unavailable := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer unavailable.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	// An address nothing listens on: connections are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()

	host := func(s *httptest.Server) []discovery.Instance {
		return []discovery.Instance{{Address: strings.TrimPrefix(s.URL, "http://")}}
	}
	doc := `apiVersion: lightmesh/v1
services:
  slow: {timeout: 100ms}
  flaky: {retry: {attempts: 2, backoff: 1ms}}
  down: {}
  down-retried: {retry: {attempts: 1, backoff: 1ms}}
  limited: {rateLimit: {rps: 0.001, burst: 1}}
  ok: {}
  nobody: {}
  lanes:
    subsets: {staging: {labels: {env: staging}}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
`
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	m := newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{
		"slow": host(slow), "flaky": host(unavailable), "down": {{Address: refused}}, "down-retried": {{Address: refused}, {Address: refused}},
		"limited": host(ok), "ok": host(ok), "lanes": host(ok),
	}), mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithMode(trace.ModeSpans)))
	client := &http.Client{Transport: m.Transport(nil)}
	call := func(ctx context.Context, service string) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+service+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	lastReason := func() string {
		spans := rec.Ended()
		for _, kv := range spans[len(spans)-1].Attributes() {
			if kv.Key == attribute.Key("lightmesh.reason") {
				return kv.Value.AsString()
			}
		}
		return ""
	}

	call(context.Background(), "limited") // takes the one token
	for _, tc := range []struct {
		service, reason, text string
		status                int
		is                    error
	}{
		{"slow", "timeout", `mesh: call to "slow" failed (timeout, 1 try)`, 0, context.DeadlineExceeded},
		{"down", "upstream_failure", `mesh: call to "down" failed (upstream_failure, 1 try)`, 0, nil},
		{"down-retried", "retries_exhausted", `mesh: call to "down-retried" failed (retries_exhausted, 2 tries)`, 0, nil},
		{"flaky", "retries_exhausted", "", http.StatusServiceUnavailable, nil},
		{"limited", "rate_limited", "mesh: rate limited", 0, mesh.ErrRateLimited},
		{"nobody", "no_instance", "no available instance", 0, nil},
		{"lanes", "no_route", "no route", 0, nil},
		{"ok", "", "", http.StatusOK, nil},
	} {
		status, err := call(context.Background(), tc.service)
		switch {
		case tc.text == "" && err != nil:
			t.Errorf("%s: %v", tc.service, err)
		case tc.text != "" && (err == nil || !strings.Contains(err.Error(), tc.text)):
			t.Errorf("%s: error %v, want one saying %q", tc.service, err, tc.text)
		case tc.is != nil && !errors.Is(err, tc.is):
			t.Errorf("%s: error %v does not match %v", tc.service, err, tc.is)
		case status != tc.status:
			t.Errorf("%s: status %d, want %d", tc.service, status, tc.status)
		}
		var ce *mesh.CallError
		if sent := tc.reason == "timeout" || strings.HasPrefix(tc.reason, "retries") && tc.status == 0 || tc.reason == "upstream_failure"; sent != errors.As(err, &ce) {
			t.Errorf("%s: error %T %v: a *CallError %v", tc.service, err, err, sent)
		} else if sent && ce.Reason != tc.reason {
			t.Errorf("%s: CallError.Reason %q, want %q", tc.service, ce.Reason, tc.reason)
		}
		if got := lastReason(); got != tc.reason {
			t.Errorf("%s: span lightmesh.reason %q, want %q", tc.service, got, tc.reason)
		}
	}

	// The caller's own deadline is no mesh failure.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := call(ctx, "slow"); !errors.Is(err, context.DeadlineExceeded) || errors.As(err, new(*mesh.CallError)) {
		t.Errorf("caller's deadline: %v, want the caller's context error unwrapped by the mesh", err)
	}
	if got := lastReason(); got != "" {
		t.Errorf("caller's deadline: span lightmesh.reason %q, want none", got)
	}
}
