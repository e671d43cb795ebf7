package mesh_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// hop is one service of a call chain: its own mesh, a handler wrapped by
// that mesh, and (except for the last) a call to the next service made
// with the request's context and no header copying.
type hop struct {
	srv *httptest.Server
	// seen records, per request, the traceparent and baggage headers the
	// hop received.
	mu          sync.Mutex
	traceparent []string
	baggage     []string
}

func (h *hop) addr() string { return strings.TrimPrefix(h.srv.URL, "http://") }

func startHop(t *testing.T, m *mesh.Mesh, name, next string) *hop {
	t.Helper()
	h := &hop{}
	client := &http.Client{Transport: m.Transport(nil)}
	h.srv = httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.traceparent = append(h.traceparent, r.Header.Get("Traceparent"))
		h.baggage = append(h.baggage, r.Header.Get("Baggage"))
		h.mu.Unlock()
		if next == "" {
			io.WriteString(w, name)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+next+"/", nil)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		io.WriteString(w, name+">"+string(body))
	})))
	t.Cleanup(h.srv.Close)
	return h
}

const chainRules = `apiVersion: lightmesh/v1
services:
  %s:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - destinations: [{subset: base}]
`

// chain builds A → B → C where B and C each have a base and a staging
// instance, every service with its own mesh using opts.
func chain(t *testing.T, opts ...trace.Option) (a *hop, cs map[string]*hop) {
	t.Helper()
	newHopMesh := func(next string, list []discovery.Instance) *mesh.Mesh {
		var mopts []mesh.Option
		mopts = append(mopts, mesh.WithTrace(opts...))
		if next == "" {
			return newMeshNoRules(t, mopts...)
		}
		doc := strings.ReplaceAll(chainRules, "%s", next)
		return newMesh(t, rules.NewMemory([]byte(doc)), discovery.NewStatic(map[string][]discovery.Instance{next: list}), mopts...)
	}
	cs = map[string]*hop{}
	var cList, bList []discovery.Instance
	for _, env := range []string{"base", "staging"} {
		c := startHop(t, newHopMesh("", nil), "C-"+env, "")
		cs[env] = c
		cList = append(cList, discovery.Instance{Address: c.addr(), Labels: map[string]string{"env": env}})
	}
	for _, env := range []string{"base", "staging"} {
		b := startHop(t, newHopMesh("svc-c", cList), "B-"+env, "svc-c")
		bList = append(bList, discovery.Instance{Address: b.addr(), Labels: map[string]string{"env": env}})
	}
	a = startHop(t, newHopMesh("svc-b", bList), "A", "svc-b")
	return a, cs
}

func newMeshNoRules(t *testing.T, opts ...mesh.Option) *mesh.Mesh {
	t.Helper()
	m, err := mesh.New(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestThreeHopLaneAndTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	a, cs := chain(t, trace.WithMode(trace.ModeSpans), trace.WithTracerProvider(tp))

	for _, tc := range []struct{ env, want string }{{"staging", "A>B-staging>C-staging"}, {"", "A>B-base>C-base"}} {
		req, _ := http.NewRequest(http.MethodGet, a.srv.URL, nil)
		if tc.env != "" {
			req.Header.Set("X-Env", tc.env)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != tc.want {
			t.Fatalf("X-Env %q: chain went %q, want %q", tc.env, body, tc.want)
		}
	}
	// The staging request's lane reached C as baggage too.
	if bg := cs["staging"].baggage; len(bg) != 1 || !strings.Contains(bg[0], trace.BaggagePrefix+"x-env=staging") {
		t.Fatalf("C-staging received baggage %q", bg)
	}

	// One trace per request: server A, client A→B, server B, client B→C,
	// server C, all sharing a trace id and parented in order.
	spans := rec.Ended()
	if len(spans) != 10 {
		t.Fatalf("recorded %d spans, want 10 (5 per request)", len(spans))
	}
	byTrace := map[string]int{}
	for _, s := range spans {
		byTrace[s.SpanContext().TraceID().String()]++
	}
	if len(byTrace) != 2 {
		t.Fatalf("spans form %d traces, want 2: %v", len(byTrace), byTrace)
	}
	for id, n := range byTrace {
		if n != 5 {
			t.Fatalf("trace %s has %d spans, want 5", id, n)
		}
	}
	var clientWithService bool
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			if kv.Key == trace.AttrSubset && kv.Value.AsString() == "staging" {
				clientWithService = true
			}
		}
	}
	if !clientWithService {
		t.Fatal("no client span carries lightmesh.subset=staging")
	}
}

func TestPropagateOnlyCreatesNoSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	a, cs := chain(t, trace.WithMode(trace.ModePropagate), trace.WithTracerProvider(tp),
		trace.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest(http.MethodGet, a.srv.URL, nil)
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	req.Header.Set("X-Env", "staging")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := len(rec.Ended()) + len(rec.Started()); n != 0 {
		t.Fatalf("propagate-only mode created %d spans", n)
	}
	if tp := cs["staging"].traceparent; len(tp) != 1 || !strings.Contains(tp[0], traceID) {
		t.Fatalf("C received traceparent %q, want trace id %s", tp, traceID)
	}
}

func TestHostileTraceHeadersAreIgnored(t *testing.T) {
	a, cs := chain(t)
	for _, h := range []map[string]string{
		{"Traceparent": "00-zzzz-!!-01", "Baggage": "%%%,=,;;;"},
		{"Traceparent": strings.Repeat("0", 100_000)},
		{"Baggage": strings.Repeat("k=v,", 5000)},
		{"Baggage": trace.BaggagePrefix + "x-env=" + strings.Repeat("s", 10_000)},
	} {
		req, _ := http.NewRequest(http.MethodGet, a.srv.URL, nil)
		req.Header.Set("X-Env", "staging")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "A>B-staging>C-staging" {
			t.Fatalf("headers %.60v: got %q", h, body)
		}
	}
	if len(cs["staging"].traceparent) != 4 {
		t.Fatal("not every hostile request reached C")
	}
}

// metricValue returns the value of the series name{labels} in reg, or -1.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	return meshtest.Metric(t, reg, name, labels)
}

func TestMetrics(t *testing.T) {
	good, bad := newFlaky(t, "good"), newFlaky(t, "bad")
	bad.status.Store(http.StatusServiceUnavailable)
	doc := `apiVersion: lightmesh/v1
services:
  svc:
    subsets:
      g: {labels: {pool: g}}
      b: {labels: {pool: b}}
    rateLimit: {rps: 0.001, burst: 5}
    breaker: {minRequests: 100}
    routes:
      - match: {headers: {x-pool: {exact: b}}}
        destinations: [{subset: b}]
      - destinations: [{subset: g}]
`
	reg := prometheus.NewRegistry()
	src := rules.NewMemory([]byte(doc))
	gi, bi := good.instance(), bad.instance()
	gi.Labels, bi.Labels = map[string]string{"pool": "g"}, map[string]string{"pool": "b"}
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"svc": {gi, bi}}), mesh.WithRegisterer(reg))
	client := &http.Client{Transport: m.Transport(nil)}
	do := func(pool string) {
		req, _ := http.NewRequest(http.MethodGet, "http://svc/", nil)
		if pool != "" {
			req.Header.Set("X-Pool", pool)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	for range 3 {
		do("")
	}
	for range 2 {
		do("b")
	}
	for range 2 {
		do("") // over the burst of 5: rate limited
	}
	src.Set([]byte("apiVersion: lightmesh/v1\nservices: {svc: {routes: [{destinations: [{subset: nope}]}]}}\n"))
	meshtest.WaitFor(t, 5*time.Second, "the rejection", func() bool { return m.LastRejection() != nil })

	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"lightmesh_requests_total", map[string]string{"direction": "outbound", "protocol": "http", "destination_service": "svc", "destination_subset": "g", "code": "200"}, 3},
		{"lightmesh_requests_total", map[string]string{"direction": "outbound", "destination_service": "svc", "destination_subset": "b", "code": "503"}, 2},
		// Calls refused before anything was sent are counted as rejections,
		// never as requests or in the latency histogram.
		{"lightmesh_requests_total", map[string]string{"direction": "outbound", "destination_service": "svc", "code": "error"}, -1},
		{"lightmesh_request_duration_seconds", map[string]string{"direction": "outbound", "destination_service": "svc", "destination_subset": "g"}, 3},
		{"lightmesh_rejections_total", map[string]string{"protocol": "http", "destination_service": "svc", "reason": "rate_limited"}, 2},
		{"lightmesh_rule_updates_total", map[string]string{"result": "applied"}, 1},
		{"lightmesh_rule_updates_total", map[string]string{"result": "rejected"}, 1},
		{"lightmesh_rules_info", map[string]string{"source": "memory", "version": "1"}, 1},
		{"lightmesh_control_plane_connected", map[string]string{"watcher": "rules"}, 1},
	}
	for _, c := range checks {
		if got := metricValue(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestMetricsInbound(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := mesh.New(context.Background(), mesh.WithRegisterer(reg), mesh.WithLocalService("me"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
		}
	})))
	defer srv.Close()
	for _, p := range []string{"/", "/", "/missing"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if got := metricValue(t, reg, "lightmesh_requests_total", map[string]string{"direction": "inbound", "destination_service": "me", "code": "200"}); got != 2 {
		t.Errorf("inbound 200s = %v, want 2", got)
	}
	if got := metricValue(t, reg, "lightmesh_requests_total", map[string]string{"direction": "inbound", "destination_service": "me", "code": "404"}); got != 1 {
		t.Errorf("inbound 404s = %v, want 1", got)
	}
	// A second mesh on the same registry is refused rather than silently
	// sharing collectors.
	if _, err := mesh.New(context.Background(), mesh.WithRegisterer(reg)); err == nil {
		t.Error("registering the metrics twice on one registry must fail")
	}
}

// TestMetricsUnregistered: a failed New leaves nothing registered, and
// Close unregisters, so the same registry takes a new mesh (bug 11).
func TestMetricsUnregistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	// The same collector as the mesh's last one, registered first, makes
	// New fail after registering all the others.
	clash := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lightmesh_control_plane_last_event_timestamp_seconds",
		Help: "Unix time of the last delivery from the control plane (a rule document or an instance list); time() minus it is the age."}, []string{"watcher"})
	reg.MustRegister(clash)
	if _, err := mesh.New(context.Background(), mesh.WithRegisterer(reg)); err == nil {
		t.Fatal("New succeeded with a clashing collector")
	}
	reg.Unregister(clash)
	m, err := mesh.New(context.Background(), mesh.WithRegisterer(reg))
	if err != nil {
		t.Fatalf("New after a failed New: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 0 {
		t.Fatalf("%d metric families left after Close", len(families))
	}
	m2, err := mesh.New(context.Background(), mesh.WithRegisterer(reg))
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	m2.Close()
}

// TestExemplarCarriesTraceID checks that a sampled call's trace id is
// attached to the latency histogram as an exemplar.
func TestExemplarCarriesTraceID(t *testing.T) {
	be := newFlaky(t, "b")
	reg := prometheus.NewRegistry()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	m := newMesh(t, rules.NewMemory([]byte(svcDoc(""))), discovery.NewStatic(map[string][]discovery.Instance{"svc": {be.instance()}}),
		mesh.WithRegisterer(reg), mesh.WithTrace(trace.WithMode(trace.ModeSpans), trace.WithTracerProvider(tp)))
	client := &http.Client{Transport: m.Transport(nil)}
	if code, _, err := send(client, "GET", "http://svc/"); err != nil || code != 200 {
		t.Fatalf("%d %v", code, err)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want the client span", len(spans))
	}
	want := spans[0].SpanContext().TraceID().String()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, f := range families {
		if f.GetName() != "lightmesh_request_duration_seconds" {
			continue
		}
		for _, mt := range f.GetMetric() {
			exemplars := mt.GetHistogram().GetExemplars()
			for _, b := range mt.GetHistogram().GetBucket() {
				if b.GetExemplar() != nil {
					exemplars = append(exemplars, b.GetExemplar())
				}
			}
			for _, ex := range exemplars {
				for _, lp := range ex.GetLabel() {
					if lp.GetName() == "trace_id" {
						found = append(found, lp.GetValue())
					}
				}
			}
		}
	}
	if len(found) == 0 || found[0] != want {
		t.Fatalf("exemplar trace ids %v, want %s", found, want)
	}
}
