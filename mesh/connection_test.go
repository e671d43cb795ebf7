package mesh_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// flakyPlane is a control plane a test takes down and brings back: its
// rule source and its discovery serve fixed data while it is up, and
// their watches end with an error when it goes down (as the etcd and
// Nacos adapters' health checks make them) and fail at once while it
// stays down. It counts the attempts.
type flakyPlane struct {
	doc   []byte
	lists map[string][]discovery.Instance

	mu       sync.Mutex
	down     bool
	changed  chan struct{} // closed and replaced when down changes
	attempts map[string]int
}

func newFlakyPlane(doc string, lists map[string][]discovery.Instance) *flakyPlane {
	return &flakyPlane{doc: []byte(doc), lists: lists, changed: make(chan struct{}), attempts: map[string]int{}}
}

func (p *flakyPlane) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *flakyPlane) attempt(what string) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts[what]++
	if p.down {
		return nil, errors.New("connection refused")
	}
	return p.changed, nil
}

func (p *flakyPlane) count(what string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts[what]
}

// watch delivers once, then waits until the plane goes down or ctx ends.
func (p *flakyPlane) watch(ctx context.Context, what string, deliver func()) error {
	changed, err := p.attempt(what)
	if err != nil {
		return err
	}
	deliver()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
		return errors.New("connection lost")
	}
}

type flakyRules struct{ *flakyPlane }

func (r flakyRules) String() string { return "flaky" }
func (r flakyRules) Watch(ctx context.Context, update func(rules.Document)) error {
	return r.watch(ctx, "rules", func() { update(rules.Document{Data: r.doc}) })
}

type flakyDiscovery struct{ *flakyPlane }

func (d flakyDiscovery) Watch(ctx context.Context, service string, update func([]discovery.Instance)) error {
	return d.watch(ctx, service, func() { update(d.lists[service]) })
}

// TestConnectionStateTellsTheTruth takes the control plane down while
// requests flow: the status and the metrics say reconnecting, since
// when, how many attempts and why, the attempts follow the backoff, and
// every request keeps being served by the last rules and instances;
// when it comes back both say connected again.
func TestConnectionStateTellsTheTruth(t *testing.T) {
	backends, list := meshtest.Fleet(t, "base-1", "staging-1")
	plane := newFlakyPlane(meshtest.LaneRules("user-api"), map[string][]discovery.Instance{"user-api": list})
	reg := prometheus.NewRegistry()
	m := meshtest.Start(t, 10*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(flakyRules{plane}), mesh.WithDiscovery(flakyDiscovery{plane}),
			mesh.WithRegisterer(reg), mesh.WithReconnectBackoff(50*time.Millisecond, 400*time.Millisecond))
	})
	connected := func() bool {
		st := m.Status()
		return st.Watcher.State == mesh.StateConnected && st.Discovery != nil && st.Discovery.State == mesh.StateConnected
	}
	meshtest.WaitFor(t, 5*time.Second, "connected", connected)
	for _, w := range []string{"rules", "discovery"} {
		if v := metricValue(t, reg, "lightmesh_control_plane_connected", map[string]string{"watcher": w}); v != 1 {
			t.Errorf("control_plane_connected{watcher=%q} = %v while connected, want 1", w, v)
		}
		if v := metricValue(t, reg, "lightmesh_control_plane_last_event_timestamp_seconds", map[string]string{"watcher": w}); v < float64(time.Now().Add(-time.Minute).Unix()) {
			t.Errorf("control_plane_last_event_timestamp_seconds{watcher=%q} = %v, want about now", w, v)
		}
	}
	client := &http.Client{Transport: m.Transport(nil)}
	load := meshtest.StartLoad(t, client, "http://user-api/", 400, 200, meshtest.WithHeader("x-env", "staging"))

	downAt := time.Now()
	plane.setDown(true)
	meshtest.WaitFor(t, 5*time.Second, "reconnecting", func() bool {
		st := m.Status()
		return st.Watcher.State == mesh.StateReconnecting && st.Discovery.State == mesh.StateReconnecting
	})
	time.Sleep(time.Second)
	st := m.Status()
	for name, w := range map[string]mesh.WatcherStatus{"rules": st.Watcher, "discovery": *st.Discovery} {
		if w.Connected || w.Since.Before(downAt) || w.Since.After(downAt.Add(time.Second)) || w.LastUpdate.After(downAt) {
			t.Errorf("%s while down = %+v; want not connected, since the outage began at %v, last update before it", name, w, downAt)
		}
		// Delays 50, 100, 200 ms, then 400 ms (±20 %): at most 7 in 1 s.
		if w.Attempts < 2 || w.Attempts > 8 {
			t.Errorf("%s made %d attempts in about 1 s down, want 2..8", name, w.Attempts)
		}
	}
	if !strings.Contains(st.Watcher.LastError, "connection") || !strings.HasPrefix(st.Discovery.LastError, "user-api: ") ||
		len(st.Discovery.Failing) != 1 || st.Discovery.Failing[0] != "user-api" {
		t.Errorf("errors while down: rules %q, discovery %q failing %v; want the cause, discovery's naming user-api", st.Watcher.LastError, st.Discovery.LastError, st.Discovery.Failing)
	}
	// The status counts the watch that was lost and each failed attempt
	// after it; the source counts the first, good, attempt and the same
	// failed ones, plus any made since the status was read.
	if got, seen := st.Watcher.Attempts, plane.count("rules"); got > seen || got < seen-1 {
		t.Errorf("status counts %d failed rule attempts, the source saw %d attempts in all", got, seen)
	}
	if v := metricValue(t, reg, "lightmesh_control_plane_connected", map[string]string{"watcher": "rules"}); v != 0 {
		t.Errorf("control_plane_connected{watcher=rules} = %v while down, want 0", v)
	}
	_, body := statusGet(t, m.StatusHandler(), http.MethodGet, "/?format=html")
	if !strings.Contains(body, "reconnecting since") || !strings.Contains(body, "<dt>Failing</dt><dd>user-api</dd>") {
		t.Errorf("status page while down lacks the reconnecting state or the failing service:\n%s", body)
	}

	plane.setDown(false)
	meshtest.WaitFor(t, 5*time.Second, "connected again", connected)
	if st := m.Status(); st.Watcher.Attempts != 0 || st.Watcher.Since.Before(downAt) || st.Watcher.LastError == "" {
		t.Errorf("rules after the reconnect = %+v; want 0 attempts, connected since after the outage, the last error kept", st.Watcher)
	}
	res := load.Wait(t, 30*time.Second)
	if res.Failed != 0 || res.ByBody["staging-1"] != res.Sent {
		t.Errorf("requests across the outage: %d sent, %d failed, answered by %v; want all served by staging-1: %v", res.Sent, res.Failed, res.ByBody, res.Errors)
	}
	if backends["base-1"].Hits.Load() != 0 {
		t.Errorf("base-1 got %d staging requests", backends["base-1"].Hits.Load())
	}
}
