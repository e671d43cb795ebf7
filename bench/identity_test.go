package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/identity/identitytest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// BenchmarkIdentity sends one real loopback GET per iteration over a
// kept-alive connection, to measure what mutual TLS adds to a call,
// beside what otelhttp adds (Istio publishes mTLS's added latency: +0.23
// ms p90 through two sidecars, +0.17 ms p90 through two ztunnels, at
// 1,000 rps):
//
//   - bare: a plain http.Transport, plaintext;
//   - lightmesh-plaintext: the mesh Transport (routing, propagation) to a
//     plaintext server;
//   - lightmesh-mtls: the same mesh with an identity, to a service whose
//     rules set serverID, served by a strict mutual-TLS server
//     (identity.Listen) behind identity.Guard with a 20-rule policy the
//     call passes at the last rule;
//   - otelhttp: otelhttp.NewTransport to the plaintext server.
//
// Besides ns/op it reports p50-ns and p90-ns of the iterations.
func BenchmarkIdentity(b *testing.B) {
	plain := upstream(b)
	plainAddr := plain.Listener.Addr().String()
	ca, err := identitytest.NewCA("example.org")
	if err != nil {
		b.Fatal(err)
	}
	client, server := fileSource(b, ca, "/front"), fileSource(b, ca, "/api")
	mtlsAddr := mtlsUpstream(b, server)
	doc := "apiVersion: lightmesh/v1\nservices:\n  svc: {}\n  api:\n    serverID: spiffe://example.org/api\n"

	b.Run("rt=bare", func(b *testing.B) {
		latency(b, newBase(b), newRequest(b, plain.URL+"/"))
	})
	b.Run("rt=lightmesh-plaintext", func(b *testing.B) {
		m := identityMesh(b, doc, plainAddr, mtlsAddr)
		latency(b, m.Transport(newBase(b)), newRequest(b, "http://svc/"))
	})
	b.Run("rt=lightmesh-mtls", func(b *testing.B) {
		m := identityMesh(b, doc, plainAddr, mtlsAddr, mesh.WithIdentity(client))
		latency(b, m.Transport(newBase(b)), newRequest(b, "http://api/"))
	})
	b.Run("rt=otelhttp", func(b *testing.B) {
		rt := otelhttp.NewTransport(newBase(b),
			otelhttp.WithTracerProvider(newTracerProvider(b)),
			otelhttp.WithPropagators(w3c),
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()))
		latency(b, rt, newRequest(b, plain.URL+"/"))
	})
}

func fileSource(b *testing.B, ca *identitytest.CA, path string) identity.Source {
	b.Helper()
	p, err := ca.WriteFiles(b.TempDir(), path)
	if err != nil {
		b.Fatal(err)
	}
	src, err := identity.NewFileSource(context.Background(), identity.Files{Cert: p.Cert, Key: p.Key, Bundle: p.Bundle})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { src.Close() })
	return src
}

// mtlsUpstream serves "ok" over strict mutual TLS as src, behind a guard
// whose 20-rule policy lets spiffe://example.org/front through at the
// last rule.
func mtlsUpstream(b *testing.B, src identity.Source) string {
	b.Helper()
	var p router.Authorization
	for i := range 19 {
		p.Rules = append(p.Rules, router.AuthorizationRule{Action: "deny", Callers: []string{"spiffe://example.org/other" + string(rune('a'+i))}})
	}
	p.Rules = append(p.Rules, router.AuthorizationRule{Action: "allow", Callers: []string{"spiffe://example.org/front"}, Methods: []string{"GET"}})
	p.Default = "deny"
	pol, err := identity.NewPolicy(p, nil)
	if err != nil {
		b.Fatal(err)
	}
	g, err := identity.NewGuard(pol, identity.GuardOptions{Service: "api"})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler: g.Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "ok")
		})),
		ConnContext: identity.ConnContext,
	}
	go srv.Serve(identity.Listen(ln, identity.ServerTLSConfig(src), identity.Strict))
	b.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func identityMesh(b *testing.B, doc, plainAddr, mtlsAddr string, opts ...mesh.Option) *mesh.Mesh {
	b.Helper()
	m, err := mesh.New(context.Background(), append([]mesh.Option{
		mesh.WithRules(rules.NewMemory([]byte(doc))),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{
			"svc": {{Address: plainAddr}}, "api": {{Address: mtlsAddr}}})),
		mesh.WithTrace(trace.WithPropagator(w3c), trace.WithMode(trace.ModePropagate)),
		// Warnings and errors still show, on stderr; the info line of
		// each mesh's start would break the benchmark output.
		mesh.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}, opts...)...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// latency is serial with the 50th and 90th percentiles of the
// iterations reported beside ns/op (the last 65,536 iterations).
func latency(b *testing.B, rt http.RoundTripper, req *http.Request) {
	client := &http.Client{Transport: rt}
	if err := do(client, req); err != nil { // the handshake happens here
		b.Fatal(err)
	}
	samples := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if err := do(client, req); err != nil {
			b.Fatal(err)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	slices.Sort(samples)
	if n := len(samples); n > 0 {
		b.ReportMetric(float64(samples[n/2]), "p50-ns")
		b.ReportMetric(float64(samples[n*9/10]), "p90-ns")
	}
}
