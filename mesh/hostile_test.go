package mesh_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// Hostile input through a real mesh: rule documents from the control
// plane, instance metadata from discovery and inbound requests. Whatever
// arrives, the last good state keeps serving real HTTP requests, memory
// stays bounded and the rejection names its place.

const mib = 1 << 20

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// expectLanes checks that the mesh client still routes by lane: X-Env:
// staging to a staging backend, no lane to a base one.
func expectLanes(t *testing.T, client *http.Client, when string) {
	t.Helper()
	for env, prefix := range map[string]string{"staging": "staging-", "": "base-"} {
		for range 2 {
			name, err := meshtest.Call(client, "user-api", env)
			if err != nil || !strings.HasPrefix(name, prefix) {
				t.Fatalf("%s: X-Env %q reached %q (%v), want %s*", when, env, name, err, prefix)
			}
		}
	}
}

// laneDoc is laneRules with more YAML added under the user-api service
// (indented 4) and more routes (indented 6) before its two lane routes.
func laneDoc(service, routes string) string {
	doc := strings.Replace(laneRules, "    routes:\n", service+"    routes:\n"+routes, 1)
	return doc
}

func TestHostileRuleDocuments(t *testing.T) {
	_, list := fleet(t)
	src := rules.NewMemory([]byte(laneRules))
	events := make(chan mesh.RulesEvent, 64)
	reg := prometheus.NewRegistry()
	var logs meshtest.LogBuffer
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }),
		mesh.WithRegisterer(reg), mesh.WithLogger(logs.Logger()))
	meshtest.Next(t, events, 10*time.Second, "the first rules", func(ev mesh.RulesEvent) bool { return ev.Err == nil })
	client := &http.Client{Transport: m.Transport(nil)}
	expectLanes(t, client, "before")
	good := m.Status().Rules

	route := "      - {match: {headers: {x-user: {exact: alice}}}, destinations: [{subset: base}]}\n"
	manyRoutes := func(n int, r string) string { return strings.Repeat(r, n) }
	deep := strings.Repeat("[", 9_990) + strings.Repeat("]", 9_990)
	var skewed strings.Builder
	for i := range router.MaxRoutes - 2 {
		fmt.Fprintf(&skewed, "      - {match: {headers: {x-user: {exact: u%d}}}, destinations: [{subset: base, weight: 1}, {subset: staging, weight: %d}]}\n", i, router.MaxWeight-i)
	}
	var labels strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&labels, "k%d: v, ", i)
	}
	for _, tc := range []struct {
		name string
		doc  string
		want string // the start of the rejection's first problem
	}{
		{"one byte over 1 MiB", laneRules + "#" + strings.Repeat("x", router.MaxDocumentSize-len(laneRules)-1) + "\n",
			"router: document is 1048577 bytes, over the 1048576 byte limit"},
		{"10,000 routes", laneDoc("", manyRoutes(10_000, route)),
			"services.user-api.routes: 10002 routes, over the limit of 1000"},
		{"a regex of megabytes", laneDoc("", manyRoutes(3, route)+"      - {match: {headers: {x-user: {regex: '(x|\\pL){300}'}}}, destinations: [{subset: base}]}\n"),
			"services.user-api.routes[3].match.headers.x-user.regex: expression too large"},
		{"nested counted repetition", laneDoc("", manyRoutes(3, route)+"      - {match: {headers: {x-user: {regex: '(a{1000}){1000}'}}}, destinations: [{subset: base}]}\n"),
			"services.user-api.routes[3].match.headers.x-user.regex: invalid RE2 expression: error parsing regexp: invalid repeat count"},
		{"regexes of megabytes in all", laneDoc("", manyRoutes(20, "      - {match: {headers: {x-user: {regex: '(x|\\pL){60}'}}}, destinations: [{subset: base}]}\n")),
			"services.user-api.routes[12].match.headers.x-user.regex: too much regex in the document"},
		{"weight 2^63", strings.Replace(laneRules, "[{subset: base}]", "[{subset: base, weight: 9223372036854775808}]", 1),
			`services.user-api.routes[1].destinations[0].weight: integer "9223372036854775808" out of range`},
		{"weight 1e30", strings.Replace(laneRules, "[{subset: base}]", "[{subset: base, weight: 1e30}]", 1),
			`services.user-api.routes[1].destinations[0].weight: must be an integer, not "1e30"`},
		{"weights summing past 2^64", strings.Replace(laneRules, "[{subset: base}]", "[{subset: base, weight: 9223372036854775807}, {subset: staging, weight: 9223372036854775807}]", 1),
			"services.user-api.routes[1].destinations[0].weight: must be <= 1000000"},
		{"a thousand skewed splits", laneDoc("", skewed.String()),
			"services.user-api.routes[64].destinations: weights 1:999936 need a schedule of 65536 steps"},
		{"10,000-deep lists", strings.Replace(laneRules, "{labels: {env: base}}", "{labels: {env: "+deep+"}}", 1),
			"services.user-api.subsets.base.labels.env: must be a string, not a list"},
		{"5,000 labels", strings.Replace(laneRules, "{labels: {env: base}}", "{labels: {"+labels.String()+"}}", 1),
			"services.user-api.subsets.base.labels: mapping of 5000 keys, over the limit of 1000"},
		{"invalid UTF-8 in a key", strings.Replace(laneRules, "{labels: {env: base}}", "{labels: {e\xffnv: base}}", 1),
			"router: document is not UTF-8: byte 0xff at line 5, column 27"},
		{"invalid UTF-8 in a value", strings.Replace(laneRules, "exact: staging", "exact: st\xe2\x82ging", 1),
			"router: document is not UTF-8: byte 0xe2 at line 9, column 44"},
		{"binary data as a label value", strings.Replace(laneRules, "{labels: {env: base}}", "{labels: {env: !!binary /v4=}}", 1),
			"services.user-api.subsets.base.labels.env: must be a string, not binary data"},
		{"a key of 100 KB", strings.Replace(laneRules, "      base:    {labels: {env: base}}\n", "      base:\n        labels:\n          ? "+strings.Repeat("k", 100_000)+"\n          : v\n", 1),
			"services.user-api.subsets.base.labels.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...(100000 bytes): key is 100000 bytes, over the limit of 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.doc)
			before := heapInUse()
			src.Set(data)
			ev := meshtest.Next(t, events, 30*time.Second, "the rejection", func(mesh.RulesEvent) bool { return true })
			if ev.Err == nil {
				t.Fatalf("document applied")
			}
			first := strings.TrimPrefix(strings.SplitN(ev.Err.Error(), "\n", 2)[0], "router: invalid document: ")
			if !strings.HasPrefix(first, tc.want) {
				t.Fatalf("rejection %.500q, want it to start %q", ev.Err, tc.want)
			}
			st := m.Status()
			if st.Rules.Version != good.Version || !st.Rules.AppliedAt.Equal(good.AppliedAt) || st.Rules.State != good.State {
				t.Errorf("rules in force %+v, want the last good %+v", st.Rules, good)
			}
			if st.LastRejection == nil || !strings.Contains(st.LastRejection.Error, tc.want) || st.LastRejection.Version != ev.Version {
				t.Errorf("Status().LastRejection = %+v, want version %s and %q", st.LastRejection, ev.Version, tc.want)
			} else if n := len(st.LastRejection.Error); n > 16<<10 {
				t.Errorf("the rejection kept in the status is %d bytes", n)
			}
			expectLanes(t, client, "after the rejection")
			// Nothing of the document stays but its hash and its (short)
			// rejection: the source holds its own copy of data.
			if grown := int64(heapInUse()) - int64(before); grown > 16*mib {
				t.Errorf("live heap grew by %d MiB after rejecting a %d KiB document", grown/mib, len(data)>>10)
			}
		})
	}
	if n := strings.Count(logs.String(), "rule document rejected"); n < 15 {
		t.Errorf("%d rejections logged, want one per document", n)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if len(line) > 32<<10 {
			t.Errorf("a log line of %d bytes: %.200s", len(line), line)
		}
	}
	if got := metricValue(t, reg, "lightmesh_rule_updates_total", map[string]string{"result": "rejected"}); got != 15 {
		t.Errorf("rejected updates counted: %v, want 15", got)
	}
}

// A control plane repeating the same document 10,000 times: nothing is
// applied again, memory stays bounded and requests keep flowing.
func TestHostileFloodOfIdenticalUpdates(t *testing.T) {
	_, list := fleet(t)
	src := rules.NewMemory([]byte(laneRules))
	events := make(chan mesh.RulesEvent, 64)
	reg := prometheus.NewRegistry()
	m := newMesh(t, src, discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }), mesh.WithRegisterer(reg))
	meshtest.Next(t, events, 10*time.Second, "the first rules", func(ev mesh.RulesEvent) bool { return ev.Err == nil })
	client := &http.Client{Transport: m.Transport(nil)}
	counted := func(result string) float64 {
		return metricValue(t, reg, "lightmesh_rule_updates_total", map[string]string{"result": result})
	}
	bad := []byte(strings.Replace(laneRules, "{subset: base}]", "{subset: base, weight: -1}]", 1))
	src.Set(bad)
	if ev := meshtest.Next(t, events, 10*time.Second, "the rejection", func(mesh.RulesEvent) bool { return true }); ev.Err == nil {
		t.Fatal("the bad document was applied")
	}
	good := m.Status()
	applied, rejected := counted("applied"), counted("rejected")

	same := []byte(laneRules)
	before := heapInUse()
	// 5,000 times the content in force (a revert), then 5,000 times the
	// broken one: after the revert the broken one is rejected again,
	// once; its repetitions are not checked again.
	for i := range 10_000 {
		if i == 5_000 {
			meshtest.WaitFor(t, 10*time.Second, "the revert", func() bool {
				st := m.Status()
				return st.LastRejection.At.Before(st.Rules.AppliedAt)
			})
		}
		if i < 5_000 {
			src.Set(same)
		} else {
			src.Set(bad)
		}
		if i%1000 == 0 {
			expectLanes(t, client, fmt.Sprintf("during the flood (update %d)", i))
		}
	}
	if ev := meshtest.Next(t, events, 10*time.Second, "the rejection after the revert", func(mesh.RulesEvent) bool { return true }); ev.Err == nil {
		t.Fatalf("the first event of the flood is %+v, want the broken document rejected again after the revert", ev)
	}
	// A new document after the flood: once it is applied, every update of
	// the flood has been seen.
	marker := strings.Replace(laneRules, "exact: staging", "exact: stg", 1)
	src.Set([]byte(marker))
	ev := meshtest.Next(t, events, 10*time.Second, "the marker document", func(mesh.RulesEvent) bool { return true })
	if ev.Err != nil || ev.Version != m.Status().Rules.Version {
		t.Fatalf("the event after the flood is %+v, want the marker applied: the flood was applied or rejected again", ev)
	}
	if got := counted("applied"); got != applied+1 {
		t.Errorf("applied updates counted: %v, want %v (the marker only)", got, applied+1)
	}
	if got := counted("rejected"); got != rejected+1 {
		t.Errorf("rejected updates counted: %v, want %v (once after the revert)", got, rejected+1)
	}
	if got := counted("unchanged"); got < 1 {
		t.Errorf("unchanged updates counted: %v, want at least one", got)
	}
	if st := m.Status(); st.LastRejection == nil || st.LastRejection.Version == good.LastRejection.Version {
		t.Errorf("last rejection %+v, want the one after the revert, not %s", st.LastRejection, good.LastRejection.Version)
	}
	if grown := int64(heapInUse()) - int64(before); grown > 16*mib {
		t.Errorf("live heap grew by %d MiB over 10,000 identical updates", grown/mib)
	}
	for range 4 {
		if name, err := meshtest.Call(client, "user-api", "stg"); err != nil || !strings.HasPrefix(name, "staging-") {
			t.Fatalf("after the marker: X-Env stg reached %q (%v)", name, err)
		}
	}
}

func TestHostileInstanceMetadata(t *testing.T) {
	backends, good := meshtest.Fleet(t, "base-1", "staging-1", "base-2")
	evil := meshtest.NewBackend(t, "evil")
	static := discovery.NewStatic(map[string][]discovery.Instance{"user-api": good[:2]})
	var logs meshtest.LogBuffer
	m := newMesh(t, rules.NewMemory([]byte(laneRules)), static, mesh.WithLogger(logs.Logger()))
	client := &http.Client{Transport: m.Transport(nil)}
	expectLanes(t, client, "before")

	before := heapInUse()
	big := strings.Repeat("v", mib)
	hostile := func() []discovery.Instance {
		many := make(map[string]string, 5000)
		for i := range 5000 {
			many[fmt.Sprintf("label-%d", i)] = "v"
		}
		many["env"] = "base"
		bigKey := map[string]string{"env": "staging", strings.Repeat("k", mib): "v"}
		var list []discovery.Instance
		// Each would get traffic if it were kept: it is the evil backend,
		// labelled base or staging.
		list = append(list, discovery.Instance{Address: evil.Addr(), Labels: many})
		for range 8 {
			list = append(list, discovery.Instance{Address: evil.Addr(), Labels: map[string]string{"env": "staging", "blob": big + "x"}})
		}
		list = append(list, discovery.Instance{Address: evil.Addr(), Labels: bigKey})
		list = append(list, discovery.Instance{Address: strings.Repeat("h", mib) + ":80", Labels: map[string]string{"env": "base"}})
		return list
	}()
	// base-2 comes with them: once it serves, the list was applied.
	static.Set("user-api", append(hostile, good...))
	meshtest.WaitFor(t, 10*time.Second, "base-2 in the table", func() bool { return len(m.Table().Instances("user-api", "")) == 3 })
	for range 30 {
		if _, err := meshtest.Call(client, "user-api", "staging"); err != nil {
			t.Fatal(err)
		}
		if _, err := meshtest.Call(client, "user-api", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := evil.Hits.Load(); n != 0 {
		t.Fatalf("the hostile instances got %d requests", n)
	}
	if backends["base-2"].Hits.Load() == 0 || backends["staging-1"].Hits.Load() == 0 {
		t.Fatal("the valid instances did not serve")
	}
	for _, in := range m.Table().Instances("user-api", "") {
		if len(in.Labels) != 1 || len(in.Address) > 64 {
			t.Fatalf("a hostile instance is in the table: %.100s", in.Address)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "lightmesh: instance ignored"); n < len(hostile) {
		t.Errorf("%d instances logged as ignored, want %d:\n%.2000s", n, len(hostile), out)
	}
	for _, want := range []string{"5001 labels, over the limit of 64", "key must be 1..128 bytes and value at most 256", "host is 1048576 bytes, over the limit of 253"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q", want)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 1024 {
			t.Errorf("a log line of %d bytes: %.200s", len(line), line)
		}
	}

	// Without them in the source any more, their memory is free: the mesh
	// kept none of it.
	static.Set("user-api", good[:2])
	meshtest.WaitFor(t, 10*time.Second, "base-2 gone", func() bool { return len(m.Table().Instances("user-api", "")) == 2 })
	hostile, big = nil, ""
	if grown := int64(heapInUse()) - int64(before); grown > 4*mib {
		t.Errorf("live heap grew by %d MiB after 10 MiB of hostile instances came and went", grown/mib)
	}
	expectLanes(t, client, "after")
}

// hostileHeaders are inbound requests a stranger can send, as header sets;
// wantLane is the lane the handler must see ("" for none).
func hostileHeaders() []struct {
	name     string
	header   http.Header
	wantLane string
} {
	members := meshtest.BaggageMembers
	with := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	manyHeaders := func(n int, name func(int) string, value string) http.Header {
		h := http.Header{}
		for i := range n {
			h.Add(name(i), value)
		}
		return h
	}
	distinct := manyHeaders(5000, func(i int) string { return fmt.Sprintf("X-Junk-%d", i) }, "v")
	distinct.Set("X-Env", "staging")
	return []struct {
		name     string
		header   http.Header
		wantLane string
	}{
		{"5,000 baggage members", with("Baggage", members(5000, "lightmesh.lane.x-env=staging")), ""},
		{"127 baggage members and the lane", with("Baggage", members(127, "lightmesh.lane.x-env=staging")), ""},
		{"63 baggage members and the lane", with("Baggage", members(63, "lightmesh.lane.x-env=staging")), "x-env=staging"},
		{"2,000 baggage headers", manyHeaders(2000, func(int) string { return "Baggage" }, "a=1"), ""},
		{"traceparent of 512 KiB", with("Traceparent", "00-"+strings.Repeat("4bf92f3577b34da6", 1<<15)+"-00f067aa0ba902b7-01", "X-Env", "staging"), "x-env=staging"},
		{"lane header of 512 KiB", with("X-Env", strings.Repeat("s", 1<<19)), ""},
		{"invalid UTF-8 in the lane header", with("X-Env", "st\xff\xfeging"), ""},
		{"invalid UTF-8 in lane baggage", with("Baggage", "lightmesh.lane.x-env=%FF%FE,user=a"), ""},
		{"raw invalid UTF-8 in baggage", with("Baggage", "lightmesh.lane.x-env=st\xffging"), ""},
		{"5,000 lane headers", manyHeaders(5000, func(int) string { return "X-Env" }, "staging"), "x-env=staging"},
		{"5,000 distinct headers", distinct, "x-env=staging"},
		{"request id of 512 KiB", with("X-Request-Id", strings.Repeat("r", 1<<19), "X-Env", "canary"), "x-env=canary"},
	}
}

// laneRecorder is a handler that answers 200 with the lane its request's
// context holds, and checks that lane is valid.
func laneRecorder(t *testing.T) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lane := trace.LaneFromContext(r.Context())
		if _, err := trace.NewLane(lane.Labels()...); err != nil {
			t.Errorf("the handler got an invalid lane %q: %v", lane, err)
		}
		io.WriteString(w, "lane="+lane.String())
	})
}

func TestHostileInboundRequests(t *testing.T) {
	for _, variant := range []struct {
		name string
		opts []mesh.Option
	}{
		{"propagate", nil},
		{"spans and metrics", []mesh.Option{mesh.WithRegisterer(prometheus.NewRegistry()), mesh.WithTrace(trace.WithMode(trace.ModeSpans)), mesh.WithLocalService("front")}},
	} {
		t.Run(variant.name, func(t *testing.T) {
			m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) { return mesh.New(ctx, variant.opts...) })
			srv := httptest.NewServer(m.Handler(laneRecorder(t)))
			defer srv.Close()
			for _, tc := range hostileHeaders() {
				req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header = tc.header
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(body) != "lane="+tc.wantLane {
					t.Errorf("%s: %d %q, want 200 and lane %q", tc.name, resp.StatusCode, body, tc.wantLane)
				}
			}
		})
	}
}

// The mesh Handler adds a bounded number of allocations to a request
// whatever its headers hold: at most maxHandlerAllocs over the wrapped
// handler alone. The worst case is 63 valid baggage members, which otel
// parses one by one (a few allocations each); beyond the W3C limits the
// baggage is dropped whole.
func TestHostileInboundAllocations(t *testing.T) {
	const maxHandlerAllocs = 150
	for _, variant := range []struct {
		name string
		opts []mesh.Option
	}{
		{"propagate", nil},
		{"spans and metrics", []mesh.Option{mesh.WithRegisterer(prometheus.NewRegistry()), mesh.WithTrace(trace.WithMode(trace.ModeSpans)), mesh.WithLocalService("front")}},
	} {
		t.Run(variant.name, func(t *testing.T) {
			m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) { return mesh.New(ctx, variant.opts...) })
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
			h := m.Handler(next)
			for _, tc := range hostileHeaders() {
				req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
				req.Header = tc.header
				w := &discardWriter{header: http.Header{}}
				bare := testing.AllocsPerRun(20, func() { next.ServeHTTP(w, req) })
				meshed := testing.AllocsPerRun(20, func() { h.ServeHTTP(w, req) })
				if added := meshed - bare; added > maxHandlerAllocs {
					t.Errorf("%s: the Handler added %.0f allocations, want at most %d", tc.name, added, maxHandlerAllocs)
				}
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so that it adds
// no allocation per request.
type discardWriter struct{ header http.Header }

func (w *discardWriter) Header() http.Header         { return w.header }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// An edge service made WithoutInboundLanes ignores the lane a stranger
// sends: its calls through the mesh go where calls without a lane go,
// and the next hop sees no lane either. The same service without the
// option follows the lane to staging.
func TestEdgeIgnoresInboundLanes(t *testing.T) {
	type seen struct{ env, baggage string }
	var mu sync.Mutex
	last := map[string]seen{}
	backend := func(name string) discovery.Instance {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			last[name] = seen{r.Header.Get("X-Env"), r.Header.Get("Baggage")}
			mu.Unlock()
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		env, _, _ := strings.Cut(name, "-")
		return discovery.Instance{Address: strings.TrimPrefix(srv.URL, "http://"), Labels: map[string]string{"env": env}}
	}
	list := []discovery.Instance{backend("base-1"), backend("staging-1")}

	stranger := []map[string]string{
		{"X-Env": "staging", "Baggage": "lightmesh.lane.x-env=staging"},
		{"X-Env": "staging"},
		{"Baggage": "lightmesh.lane.x-env=staging,user=alice"},
	}
	for _, tc := range []struct {
		name string
		opts []trace.Option
		want string
	}{
		{"without the option", nil, "staging-1"},
		{"WithoutInboundLanes", []trace.Option{trace.WithoutInboundLanes()}, "base-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMesh(t, rules.NewMemory([]byte(laneRules)), discovery.NewStatic(map[string][]discovery.Instance{"user-api": list}), mesh.WithTrace(tc.opts...))
			client := &http.Client{Transport: m.Transport(nil)}
			edge := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := meshtest.Get(r.Context(), client, "http://user-api/", nil)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				io.WriteString(w, body)
			})))
			defer edge.Close()
			for _, h := range stranger {
				body, err := meshtest.Get(context.Background(), http.DefaultClient, edge.URL, h)
				if err != nil || body != tc.want {
					t.Fatalf("headers %v: the edge's call reached %q (%v), want %s", h, body, err, tc.want)
				}
				mu.Lock()
				got := last[tc.want]
				mu.Unlock()
				if tc.want == "base-1" && (got.env != "" || strings.Contains(got.baggage, "lightmesh.lane")) {
					t.Fatalf("headers %v: the next hop saw X-Env %q, baggage %q: the lane went on", h, got.env, got.baggage)
				}
				if strings.Contains(h["Baggage"], "user=alice") && got.baggage != "user=alice" && tc.want == "base-1" {
					t.Fatalf("the next hop saw baggage %q, want user=alice: the rest of the baggage must go on", got.baggage)
				}
			}
		})
	}
}
