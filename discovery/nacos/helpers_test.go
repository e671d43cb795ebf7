package nacos

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/config_client"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
)

// testConfig returns a Config for the Nacos server in
// LIGHTMESH_NACOS_ADDR. Without one the test is skipped, or fails when
// LIGHTMESH_REQUIRE_NACOS=1.
func testConfig(tb testing.TB) Config {
	tb.Helper()
	addr := os.Getenv("LIGHTMESH_NACOS_ADDR")
	if addr == "" {
		const msg = "no Nacos server: set LIGHTMESH_NACOS_ADDR=127.0.0.1:8848 (start one with: bash scripts/nacos.sh start)"
		if os.Getenv("LIGHTMESH_REQUIRE_NACOS") == "1" {
			tb.Fatal(msg + "; LIGHTMESH_REQUIRE_NACOS=1 requires it")
		}
		tb.Skip(msg)
	}
	return Config{Addresses: strings.Split(addr, ","), TimeoutMs: 3000}
}

// unique returns a name no earlier run used: the server keeps its data.
func unique(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano())
}

// publisher writes config items with its own SDK client, as an ops
// engineer's console would.
type publisher struct {
	client config_client.IConfigClient
	group  string
}

func newPublisher(tb testing.TB, cfg Config, group string) *publisher {
	tb.Helper()
	param, dir, err := cfg.clientParam()
	if err != nil {
		tb.Fatal(err)
	}
	client, err := clients.NewConfigClient(param)
	installLogger(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		client.CloseClient()
		removeDir(dir)
	})
	return &publisher{client: client, group: group}
}

// publish writes content and returns its version (its MD5).
func (p *publisher) publish(tb testing.TB, dataID, content string) string {
	tb.Helper()
	ok, err := p.client.PublishConfig(vo.ConfigParam{DataId: dataID, Group: p.group, Content: content, Type: "yaml"})
	if err != nil || !ok {
		tb.Fatalf("publish %s: ok=%v err=%v", dataID, ok, err)
	}
	return md5hex(content)
}

func (p *publisher) remove(tb testing.TB, dataID string) {
	tb.Helper()
	if _, err := p.client.DeleteConfig(vo.ConfigParam{DataId: dataID, Group: p.group}); err != nil {
		tb.Logf("delete %s: %v", dataID, err)
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// laneRules sends X-Env: staging to the staging subset of service
// (falling back to base) and everything else to base.
func laneRules(service string) string {
	return strings.ReplaceAll(`apiVersion: lightmesh/v1
services:
  SERVICE:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: staging
        match: {headers: {x-env: {exact: staging}}}
        destinations: [{subset: staging}]
        fallback: base
      - name: default
        destinations: [{subset: base}]
`, "SERVICE", service)
}

// movedRules sends every call of service to staging.
func movedRules(service string) string {
	return strings.ReplaceAll(`apiVersion: lightmesh/v1
services:
  SERVICE:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: all-staging
        destinations: [{subset: staging}]
`, "SERVICE", service)
}

// brokenRules has a negative weight and names a missing subset.
func brokenRules(service string) string {
	return strings.ReplaceAll(`apiVersion: lightmesh/v1
services:
  SERVICE:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: base, weight: -5}, {subset: canary, weight: 10}]
`, "SERVICE", service)
}

// backend is a real HTTP server answering with its name.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(tb testing.TB, name string) *backend {
	tb.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		io.WriteString(w, name)
	}))
	tb.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { u, _ := url.Parse(b.srv.URL); return u.Host }

func (b *backend) instance(env string) discovery.Instance {
	return discovery.Instance{Address: b.addr(), Labels: map[string]string{"env": env}}
}

// register registers b as an instance of service and deregisters it at
// cleanup.
func register(tb testing.TB, cfg Config, service, group string, b *backend, env string) *Registration {
	tb.Helper()
	r, err := Register(cfg, service, group, b.instance(env))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

// events collects the mesh's rule events.
type events chan mesh.RulesEvent

func (ch events) hook() mesh.Option {
	return mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
		select {
		case ch <- ev:
		default:
		}
	})
}

// wait returns the event for version, skipping others.
func (ch events) wait(tb testing.TB, version string, d time.Duration) mesh.RulesEvent {
	tb.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-ch:
			if ev.Version == version {
				return ev
			}
		case <-timeout:
			tb.Fatalf("no rules event for version %s within %v", version, d)
		}
	}
}

func newMesh(tb testing.TB, opts ...mesh.Option) *mesh.Mesh {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, append([]mesh.Option{mesh.WithReconnectBackoff(100*time.Millisecond, 2*time.Second)}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// call sends GET http://<service>/ through c and returns the answering
// backend's name.
func call(c *http.Client, service, env string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+service+"/", nil)
	if err != nil {
		return "", err
	}
	if env != "" {
		req.Header.Set("X-Env", env)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	return string(body), err
}

// routes sends n calls and counts the answers by backend name.
func routes(tb testing.TB, c *http.Client, service, env string, n int) map[string]int {
	tb.Helper()
	got := map[string]int{}
	for range n {
		name, err := call(c, service, env)
		if err != nil {
			tb.Fatalf("call %s (X-Env %q): %v", service, env, err)
		}
		got[name]++
	}
	return got
}

// expectOnly fails unless every one of n calls reached one of names.
func expectOnly(tb testing.TB, c *http.Client, service, env string, n int, names ...string) {
	tb.Helper()
	got := routes(tb, c, service, env, n)
	for name := range got {
		if !contains(names, name) {
			tb.Fatalf("X-Env %q: calls went to %v, want only %v", env, got, names)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitInstances waits until the mesh knows n instances of service.
func waitInstances(tb testing.TB, m *mesh.Mesh, service string, n int) {
	tb.Helper()
	waitFor(tb, 15*time.Second, fmt.Sprintf("%d instances of %s", n, service), func() bool {
		return len(m.Table().Instances(service, "")) == n
	})
}

// logBuffer collects log output for tests to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
