package etcd

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/mesh"
)

// laneRules sends X-Env: staging to the staging subset (falling back to
// base) and everything else to base.
const laneRules = `apiVersion: lightmesh/v1
services:
  user-api:
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
`

// movedRules sends every call to staging.
const movedRules = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base:    {labels: {env: base}}
      staging: {labels: {env: staging}}
    routes:
      - name: all-staging
        destinations: [{subset: staging}]
`

// brokenRules has a negative weight and names a subset that does not
// exist.
const brokenRules = `apiVersion: lightmesh/v1
services:
  user-api:
    subsets:
      base: {labels: {env: base}}
    routes:
      - destinations: [{subset: base, weight: -5}, {subset: canary, weight: 10}]
`

const testPrefix = "/lightmesh-test/services"

// backend is a real HTTP server answering with its name.
type backend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(t testing.TB, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		io.WriteString(w, name)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { u, _ := url.Parse(b.srv.URL); return u.Host }

func (b *backend) instance(env string) discovery.Instance {
	return discovery.Instance{Address: b.addr(), Labels: map[string]string{"env": env}}
}

// events collects the mesh's rule events.
type events chan mesh.RulesEvent

func (ch events) hook() mesh.Option {
	return mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
		select {
		case ch <- ev:
		default: // a test that stopped reading must not stall the mesh
		}
	})
}

// wait returns the event for version, skipping others.
func (ch events) wait(t testing.TB, version string) mesh.RulesEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Version == version {
				return ev
			}
		case <-timeout:
			t.Fatalf("no rules event for version %s within 10s", version)
		}
	}
}

func newMesh(t testing.TB, opts ...mesh.Option) *mesh.Mesh {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, append([]mesh.Option{mesh.WithReconnectBackoff(50*time.Millisecond, time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// call sends GET http://user-api/ through c with env as X-Env (when not
// empty) and returns the backend's name.
func call(c *http.Client, env string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://user-api/", nil)
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
func routes(t testing.TB, c *http.Client, env string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		name, err := call(c, env)
		if err != nil {
			t.Fatalf("call (X-Env %q): %v", env, err)
		}
		got[name]++
	}
	return got
}

// expectOnly fails unless every one of n calls reached one of names.
func expectOnly(t testing.TB, c *http.Client, env string, n int, names ...string) {
	t.Helper()
	got := routes(t, c, env, n)
	for name := range got {
		if !contains(names, name) {
			t.Fatalf("X-Env %q: calls went to %v, want only %v", env, got, names)
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

// waitFor polls cond every 10ms until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hasInstance reports whether the mesh routes user-api to addr.
func hasInstance(m *mesh.Mesh, service, addr string) bool {
	for _, in := range m.Table().Instances(service, "") {
		if in.Address == addr {
			return true
		}
	}
	return false
}

// logBuffer is a slog handler target that tests can read.
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

func (l *logBuffer) count(substr string) int { return strings.Count(l.String(), substr) }

// waitInstances waits until the mesh knows n instances of user-api.
func waitInstances(t testing.TB, m *mesh.Mesh, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d instances of user-api", n), func() bool {
		return len(m.Table().Instances("user-api", "")) == n
	})
}
