package mesh_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// statusRules routes orders to its base subset, or to staging with
// X-Env: staging, behind a service breaker that stays open for a minute.
const statusRules = `apiVersion: lightmesh/v1
services:
  orders:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    breaker: {minRequests: 4, failureRatio: 0.5, openBase: 1m, openMax: 1m}
    routes:
      - match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
      - destinations: [{subset: base}]
`

// statusBadRules breaks statusRules twice: an unknown subset whose name is
// markup, and a negative weight.
var statusBadRules = strings.NewReplacer(
	"[{subset: staging}]", `[{subset: "<script>alert(1)</script>"}]`,
	"[{subset: base}]", "[{subset: base, weight: -1}]",
).Replace(statusRules)

const (
	statusSubsetErr = `services.orders.routes[0].destinations[0].subset: unknown subset "<script>alert(1)</script>"`
	statusWeightErr = `services.orders.routes[1].destinations[0].weight: must be >= 0`
)

// statusScenario is a mesh after a scripted history: rules version 1
// applied, the orders breaker tripped by 500s from the base instances, and
// version 2 rejected.
type statusScenario struct {
	m       *mesh.Mesh
	base    []string // addresses of the base instances
	staging []string // address of the staging instance
	tripped time.Time
}

func newStatusScenario(t *testing.T) statusScenario {
	t.Helper()
	var sc statusScenario
	var list []discovery.Instance
	for _, env := range []string{"base", "base", "staging"} {
		code := http.StatusInternalServerError
		if env == "staging" {
			code = http.StatusOK
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(code)
		}))
		t.Cleanup(srv.Close)
		addr := strings.TrimPrefix(srv.URL, "http://")
		list = append(list, discovery.Instance{Address: addr, Labels: map[string]string{"env": env}})
		if env == "base" {
			sc.base = append(sc.base, addr)
		} else {
			sc.staging = append(sc.staging, addr)
		}
	}
	src := rules.NewMemory([]byte(statusRules))
	events := make(chan mesh.RulesEvent, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := mesh.New(ctx,
		mesh.WithRules(src),
		mesh.WithDiscovery(discovery.NewStatic(map[string][]discovery.Instance{"orders": list})),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) { events <- ev }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	sc.m = m
	if ev := <-events; ev.Err != nil || ev.Version != "1" {
		t.Fatalf("first rules event = %+v", ev)
	}

	client := &http.Client{Transport: m.Transport(nil)}
	for range 4 {
		resp, err := client.Get("http://orders/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("before tripping: status %d", resp.StatusCode)
		}
	}
	sc.tripped = time.Now()
	if _, err := client.Get("http://orders/"); !errors.Is(err, mesh.ErrCircuitOpen) {
		t.Fatalf("after four 500s: err = %v, want the breaker open", err)
	}

	src.Set([]byte(statusBadRules))
	if ev := <-events; ev.Err == nil || ev.Version != "2" {
		t.Fatalf("second rules event = %+v, want version 2 rejected", ev)
	}
	return sc
}

// statusGet requests target from h and returns the response and its body.
func statusGet(t *testing.T, h http.Handler, method, target string, header ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func TestStatusJSON(t *testing.T) {
	sc := newStatusScenario(t)
	resp, body := statusGet(t, sc.m.StatusHandler(), http.MethodGet, "/lightmesh/status")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
		"Vary":                   "Accept",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if !strings.HasPrefix(body, "{\n  \"rules\": {\n    \"") {
		t.Errorf("JSON is not indented:\n%s", body)
	}

	// The field names are the contract ops tools read.
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	for k, fields := range map[string][]string{
		"rules":         {"source", "version", "appliedAt"},
		"lastRejection": {"version", "error", "at"},
		"watcher":       {"state", "connected", "since", "lastUpdate"},
	} {
		obj, ok := doc[k].(map[string]any)
		if !ok {
			t.Errorf("JSON lacks object %q:\n%s", k, body)
		}
		for _, f := range fields {
			if _, ok := obj[f]; !ok {
				t.Errorf("%s lacks %q: %v", k, f, obj)
			}
		}
	}
	for _, k := range []string{"services", "breakers"} {
		if _, ok := doc[k].([]any); !ok {
			t.Errorf("JSON lacks list %q:\n%s", k, body)
		}
	}

	var st mesh.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if st.Rules.Version != "1" || st.Rules.Source != "memory" || st.Rules.AppliedAt.IsZero() || st.Rules.AppliedAt.After(now) {
		t.Errorf("rules = %+v, want version 1 from memory", st.Rules)
	}
	rej := st.LastRejection
	if rej == nil {
		t.Fatal("no lastRejection")
	}
	if rej.Version != "2" || rej.At.Before(st.Rules.AppliedAt) || rej.At.After(now) {
		t.Errorf("lastRejection = %+v, want version 2 rejected after version 1 was applied", rej)
	}
	if !strings.Contains(rej.Error, statusSubsetErr+" (line 10, column 25)\n"+statusWeightErr+" (line 11, column 39)") {
		t.Errorf("lastRejection.error = %q\nwant it to hold, one per line:\n%s\n%s", rej.Error, statusSubsetErr, statusWeightErr)
	}
	// The rejected document was delivered just before it was rejected.
	if st.Watcher.State != mesh.StateConnected || !st.Watcher.Connected || st.Watcher.LastUpdate.Before(st.Rules.AppliedAt) ||
		st.Watcher.LastUpdate.After(rej.At) || st.Watcher.LastError != "" || st.Watcher.Attempts != 0 {
		t.Errorf("watcher = %+v, want connected, updated after version 1 and by the rejected version 2, no error", st.Watcher)
	}

	if len(st.Services) != 1 || st.Services[0].Name != "orders" {
		t.Fatalf("services = %+v, want orders only", st.Services)
	}
	svc := st.Services[0]
	var addrs []string
	for _, in := range svc.Instances {
		addrs = append(addrs, in.Address)
	}
	if got, want := slices.Sorted(slices.Values(addrs)), slices.Sorted(slices.Values(slices.Concat(sc.base, sc.staging))); !slices.Equal(got, want) {
		t.Errorf("orders instances = %v, want %v", got, want)
	}
	subsets := map[string][]string{}
	for _, sub := range svc.Subsets {
		subsets[sub.Name] = slices.Sorted(slices.Values(sub.Instances))
	}
	if len(subsets) != 2 || !slices.Equal(subsets["base"], slices.Sorted(slices.Values(sc.base))) || !slices.Equal(subsets["staging"], sc.staging) {
		t.Errorf("orders subsets = %v, want base %v and staging %v", subsets, sc.base, sc.staging)
	}

	var br *mesh.BreakerStatus
	for i := range st.Breakers {
		if st.Breakers[i].Service == "orders" && st.Breakers[i].Instance == "" {
			br = &st.Breakers[i]
		}
	}
	if br == nil {
		t.Fatalf("breakers = %+v, want the orders service breaker", st.Breakers)
	}
	if br.State != "open" || br.Trips != 1 {
		t.Errorf("orders breaker = %+v, want open after 1 trip", br)
	}
	if until := br.OpenUntil.Sub(sc.tripped); until < 50*time.Second || until > 61*time.Second {
		t.Errorf("orders breaker open until %v, %v after tripping; want about 1m", br.OpenUntil, until)
	}

	// HEAD: same headers, no body.
	resp, body = statusGet(t, sc.m.StatusHandler(), http.MethodHead, "/lightmesh/status")
	if resp.StatusCode != http.StatusOK || body != "" || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Content-Length") == "" {
		t.Errorf("HEAD: %d %v body %q", resp.StatusCode, resp.Header, body)
	}
}

func TestStatusHTML(t *testing.T) {
	sc := newStatusScenario(t)
	h := sc.m.StatusHandler()
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
	for _, tc := range []struct {
		target string
		header []string
		html   bool
	}{
		{"/s", nil, false},
		{"/s", []string{"Accept", "*/*"}, false},
		{"/s", []string{"Accept", browser}, true},
		{"/s", []string{"Accept", "application/json, text/html;q=0.9"}, false},
		{"/s?format=html", nil, true},
		{"/s?format=html", []string{"Accept", "application/json"}, true},
		{"/s?format=json", []string{"Accept", browser}, false},
	} {
		resp, body := statusGet(t, h, http.MethodGet, tc.target, tc.header...)
		ct := resp.Header.Get("Content-Type")
		if isHTML := strings.HasPrefix(ct, "text/html"); resp.StatusCode != http.StatusOK || isHTML != tc.html {
			t.Errorf("GET %s %v: %d %s, want html=%v", tc.target, tc.header, resp.StatusCode, ct, tc.html)
		}
		if tc.html && !strings.HasPrefix(body, "<!DOCTYPE html>") || !tc.html && !strings.HasPrefix(body, "{") {
			t.Errorf("GET %s %v: body starts %.40q", tc.target, tc.header, body)
		}
	}

	resp, page := statusGet(t, h, http.MethodGet, "/s?format=html")
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("HTML headers = %v", resp.Header)
	}
	// The rejection text is user input: it must come out as text, with its
	// line breaks.
	if strings.Contains(page, "<script") {
		t.Errorf("page holds a script element:\n%s", page)
	}
	escaped := `unknown subset &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34; (line 10, column 25)` + "\n" + `services.orders.routes[1].destinations[0].weight: must be &gt;= 0`
	for _, want := range []string{
		`<code id="rules-version">1</code>`,
		`<code id="rules-source">memory</code>`,
		escaped,
		`<h3>orders</h3>`,
		`<td>base</td>`,
		`<code>` + sc.staging[0] + `</code>`,
		`<span class="badge b-open">open</span>`,
		`<span class="badge b-ok">connected</span>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}

func TestStatusMethodNotAllowed(t *testing.T) {
	m, err := mesh.New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := m.StatusHandler()
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions} {
		resp, body := statusGet(t, h, method, "/s")
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" || strings.Contains(body, "{") {
			t.Errorf("%s: %d Allow %q body %q", method, resp.StatusCode, resp.Header.Get("Allow"), body)
		}
	}
	if resp, _ := statusGet(t, h, http.MethodGet, "/s?format=xml"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("format=xml: %d, want 400", resp.StatusCode)
	}
	// A mesh without rules still has a status.
	resp, body := statusGet(t, h, http.MethodGet, "/s")
	var st mesh.Status
	if err := json.Unmarshal([]byte(body), &st); resp.StatusCode != http.StatusOK || err != nil || st.Rules.Version != "" || st.LastRejection != nil {
		t.Errorf("mesh without rules: %d %v %s", resp.StatusCode, err, body)
	}
}

// The credentials secretSource's name, errors and rejected document
// carry; none may reach the status output.
var statusSecrets = []string{"hunter2", "AKIAEXAMPLE", "SK-wJalrXUtnFEMI"}

// secretSource is a rule source whose String, like a careless one's,
// names credentials. Its first Watch delivers a valid document, then a
// document whose rejection quotes a secret, then fails with an error
// naming the credentials; later Watch calls wait for ctx.
type secretSource struct{ calls atomic.Int64 }

func (s *secretSource) String() string {
	return "nacos://admin:hunter2@127.0.0.1:8848?dataId=x&password=hunter2&accessKey=AKIAEXAMPLE&secretKey=SK-wJalrXUtnFEMI"
}

func (s *secretSource) Watch(ctx context.Context, update func(rules.Document)) error {
	if s.calls.Add(1) > 1 {
		<-ctx.Done()
		return ctx.Err()
	}
	update(rules.Document{Data: []byte(statusRules), Version: "7"})
	update(rules.Document{Data: []byte(strings.Replace(statusRules, "exact: staging", "regex: \"password=hunter2(\"", 1)), Version: "8"})
	return fmt.Errorf("nacos: login: POST http://admin:hunter2@127.0.0.1:8848/nacos/v1/auth/login?username=admin&password=hunter2: 403; secretKey=SK-wJalrXUtnFEMI")
}

func TestStatusRedactsSecrets(t *testing.T) {
	var logs meshtest.LogBuffer
	m, err := mesh.New(context.Background(), mesh.WithRules(&secretSource{}),
		mesh.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	deadline := time.Now().Add(5 * time.Second)
	for st := m.Status(); st.LastRejection == nil || st.Watcher.LastError == ""; st = m.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for the rejection and the watch error: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The source really does carry the secrets; Status, logs and the
	// handler must all leave them out.
	if raw := (&secretSource{}).String(); !strings.Contains(raw, "hunter2") {
		t.Fatalf("the scenario carries no secret: %s", raw)
	}
	if raw := fmt.Sprint(m.Status()); strings.Contains(raw, "hunter2") || strings.Contains(raw, "SK-wJalrXUtnFEMI") {
		t.Fatalf("Status() shows a secret: %s", raw)
	}
	if out := logs.String(); !strings.Contains(out, "rejected") || strings.Contains(out, "hunter2") || strings.Contains(out, "SK-wJalrXUtnFEMI") {
		t.Fatalf("logs show a secret or miss the rejection:\n%s", out)
	}

	h := m.StatusHandler()
	_, js := statusGet(t, h, http.MethodGet, "/s")
	_, page := statusGet(t, h, http.MethodGet, "/s?format=html")
	for _, secret := range statusSecrets {
		if strings.Contains(js, secret) {
			t.Errorf("JSON shows %q:\n%s", secret, js)
		}
		if strings.Contains(page, secret) {
			t.Errorf("HTML shows %q:\n%s", secret, page)
		}
	}
	var st mesh.Status
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		t.Fatal(err)
	}
	if want := "nacos://REDACTED@127.0.0.1:8848?dataId=x&password=REDACTED&accessKey=REDACTED&secretKey=REDACTED"; st.Rules.Source != want {
		t.Errorf("rules.source = %q, want %q", st.Rules.Source, want)
	}
	if st.Rules.Version != "7" || st.LastRejection == nil || st.LastRejection.Version != "8" ||
		!strings.Contains(st.LastRejection.Error, "regex: invalid RE2 expression") || !strings.Contains(st.LastRejection.Error, "password=REDACTED") {
		t.Errorf("rules %+v, rejection %+v", st.Rules, st.LastRejection)
	}
	if want := "POST http://REDACTED@127.0.0.1:8848/nacos/v1/auth/login?username=admin&password=REDACTED 403; secretKey=REDACTED"; !strings.Contains(st.Watcher.LastError, want) || st.Watcher.Connected {
		t.Errorf("watcher = %+v, want disconnected with error holding %q", st.Watcher, want)
	}
	for _, want := range []string{"nacos://REDACTED@127.0.0.1:8848", "password=REDACTED", "<span class=\"badge b-open\">disconnected</span>"} {
		if !strings.Contains(page, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
}

// chromium returns the path of a Chromium binary on PATH, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// requireChromium returns the Chromium binary, skipping the test without
// one unless LIGHTMESH_REQUIRE_CHROMIUM=1 (set in CI, which installs it
// with apt-get install -y chromium).
func requireChromium(t *testing.T) string {
	t.Helper()
	bin := chromium()
	if bin == "" {
		if os.Getenv("LIGHTMESH_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("LIGHTMESH_REQUIRE_CHROMIUM=1 but neither chromium nor chromium-browser is on PATH (apt-get install -y chromium)")
		}
		t.Skip("chromium not on PATH; install it (apt-get install -y chromium) or set LIGHTMESH_REQUIRE_CHROMIUM=1 to make this a failure")
	}
	return bin
}

// runChromium runs headless Chromium with args (a profile of its own under
// name) and returns its standard output.
func runChromium(t *testing.T, bin, name string, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + dir,
	}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v (context: %v)\nstderr:\n%s", name, err, ctx.Err(), stderr.String())
	}
	return string(out)
}

// TestStatusHTMLInChromium renders the status page in headless Chromium
// and checks the DOM the browser built, and that it paints a screenshot.
// Without Chromium it skips, unless LIGHTMESH_REQUIRE_CHROMIUM=1 (set in
// CI, which installs it with apt-get install -y chromium).
func TestStatusHTMLInChromium(t *testing.T) {
	bin := requireChromium(t)
	sc := newStatusScenario(t)
	srv := httptest.NewServer(sc.m.StatusHandler())
	defer srv.Close()
	target := srv.URL + "/lightmesh/status?format=html"
	run := func(name string, args ...string) string { return runChromium(t, bin, name, args...) }

	dom := run("dom", "--dump-dom", target)
	if strings.Contains(dom, "<script") {
		t.Errorf("the browser built a script element:\n%s", dom)
	}
	// The browser's serialization of the DOM: text nodes escape <, > and
	// &, and keep line breaks.
	for _, want := range []string{
		`<title>lightmesh status</title>`,
		`<code id="rules-version">1</code>`,
		`<div class="alert" id="last-rejection">`,
		`unknown subset "&lt;script&gt;alert(1)&lt;/script&gt;" (line 10, column 25)` + "\n" + `services.orders.routes[1].destinations[0].weight: must be &gt;= 0`,
		`<h3>orders</h3>`,
		`<code>` + sc.base[0] + `</code>`,
		`<code>` + sc.base[1] + `</code>`,
		`<code>` + sc.staging[0] + `</code>`,
		`<td>orders</td><td><span class="muted">(whole service)</span></td><td><span class="badge b-open">open</span></td>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q:\n%s", want, dom)
		}
	}

	shot := filepath.Join(t.TempDir(), "status.png")
	run("screenshot", "--hide-scrollbars", "--window-size=1200,1400", "--screenshot="+shot, target)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("screenshot is not a PNG of a page: %d bytes", len(png))
	}
	if dst := os.Getenv("LIGHTMESH_STATUS_SCREENSHOT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
