package mesh_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

const benchRules = `apiVersion: lightmesh/v1
services:
  svc:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - destinations: [{subset: base}]
`

const benchProtection = `    timeout: 2s
    retry: {attempts: 2, perTryTimeout: 1s, budget: 0.2}
    breaker: {minRequests: 20, failureRatio: 0.5}
    outlierDetection: {minRequests: 20, failureRatio: 0.5}
    rateLimit: {rps: 1e12, burst: 1000000000}
`

// BenchmarkTransport sends one real loopback GET through a bare
// http.Transport and through the mesh Transport over the same kind of
// transport, in one run: compare the sub-benchmarks with benchstat.
func BenchmarkTransport(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	instances := []discovery.Instance{{Address: addr, Labels: map[string]string{"env": "staging"}}}

	run := func(b *testing.B, rt http.RoundTripper, url string) {
		client := &http.Client{Transport: rt}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("X-Env", "staging")
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	newBase := func() *http.Transport {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 16
		return t
	}
	meshTransport := func(b *testing.B, doc string, opts ...mesh.Option) http.RoundTripper {
		m, err := mesh.New(context.Background(), append([]mesh.Option{
			mesh.WithRules(rules.NewMemory([]byte(doc))),
			mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"svc": instances})),
		}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { m.Close() })
		return m.Transport(newBase())
	}

	b.Run("bare", func(b *testing.B) { run(b, newBase(), srv.URL+"/") })
	b.Run("mesh", func(b *testing.B) { run(b, meshTransport(b, benchRules), "http://svc/") })
	b.Run("mesh+protection", func(b *testing.B) {
		doc := strings.Replace(benchRules, "  svc:\n", "  svc:\n"+benchProtection, 1)
		run(b, meshTransport(b, doc), "http://svc/")
	})
	b.Run("mode=propagate", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider()
		defer tp.Shutdown(context.Background())
		run(b, meshTransport(b, benchRules, mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithMode(trace.ModePropagate))), "http://svc/")
	})
	b.Run("mode=spans", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider()
		defer tp.Shutdown(context.Background())
		run(b, meshTransport(b, benchRules, mesh.WithTrace(trace.WithTracerProvider(tp), trace.WithMode(trace.ModeSpans))), "http://svc/")
	})
}
