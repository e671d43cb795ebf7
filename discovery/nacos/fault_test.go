//go:build fault

package nacos

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// faultServer is a Nacos server of the test's own, on ports apart from
// the shared test server's, that the test kills and restarts with
// scripts/nacos.sh.
type faultServer struct {
	script string
	env    []string
	addr   string
}

const faultPort = "18848"

func startFaultServer(t *testing.T) *faultServer {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "nacos.sh"))
	if err != nil {
		t.Fatal(err)
	}
	s := &faultServer{script: script, env: append(os.Environ(), "LIGHTMESH_NACOS_PORT="+faultPort)}
	s.addr = strings.TrimSpace(s.run(t, "start", "LIGHTMESH_NACOS_FRESH=1"))
	t.Cleanup(func() { s.run(t, "stop") })
	return s
}

// run runs the script with cmd and returns its stdout.
func (s *faultServer) run(t *testing.T, cmd string, env ...string) string {
	t.Helper()
	c := exec.Command("bash", s.script, cmd)
	c.Env = append(s.env, env...)
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		t.Fatalf("nacos.sh %s: %v\n%s", cmd, err, stderr.String())
	}
	return string(out)
}

// TestFaultNacosKilled kills the Nacos server that holds a mesh's rules
// and instances with SIGKILL while requests flow, and restarts it. No
// request may fail because of it, the rules must stay at the last good
// version, the status must show the outage within 5 s and the recovery,
// the watchers must retry with capped backoff, not in a hot loop, and a
// rule published after the restart must be applied. The instances'
// registrations are closed during the outage and made again 2 s after
// the server is back, as when their processes are slow to register
// again: the restarted server, which knows no instance meanwhile, must
// not empty the mesh's list.
func TestFaultNacosKilled(t *testing.T) {
	srv := startFaultServer(t)
	cfg := Config{Addresses: []string{srv.addr}, TimeoutMs: 3000}
	service, dataID := unique("fault-api"), unique("fault-rules")
	pub := newPublisher(t, cfg, "")
	v1 := pub.publish(t, dataID, meshtest.LaneRules(service))
	backends, _ := meshtest.Fleet(t, "base-1", "base-2", "staging-1")
	registerAll := func() (regs []*Registration) {
		for name, b := range backends {
			regs = append(regs, register(t, cfg, service, "", b, strings.SplitN(name, "-", 2)[0]))
		}
		return regs
	}
	regs := registerAll()
	rules, err := NewRuleSource(cfg, dataID, "")
	if err != nil {
		t.Fatal(err)
	}
	disc, err := NewDiscovery(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	const maxBackoff = 2 * time.Second
	snapshots := t.TempDir()
	m := meshtest.Start(t, 20*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithRules(rules), mesh.WithDiscovery(disc), mesh.WithSnapshotDir(snapshots),
			mesh.WithReconnectBackoff(100*time.Millisecond, maxBackoff))
	})
	waitInstances(t, m, service, 3)
	client := &http.Client{Transport: m.Transport(nil)}

	// 50 requests a second for up to 60 s: through the kill, the restart
	// and the new rules.
	load := meshtest.StartLoad(t, client, "http://"+service+"/", 3000, 50, nil)
	time.Sleep(time.Second)

	killed := time.Now()
	srv.run(t, "kill")
	var detected time.Duration
	meshtest.WaitFor(t, 10*time.Second, "rules and discovery reported reconnecting", func() bool {
		st := m.Status()
		ok := st.Watcher.State == mesh.StateReconnecting && st.Discovery != nil && st.Discovery.State == mesh.StateReconnecting
		if ok {
			detected = time.Since(killed)
		}
		return ok
	})
	t.Logf("outage seen after %v", detected)
	if detected > 5*time.Second {
		t.Errorf("the status showed the outage after %v, want within 5 s", detected)
	}
	// Down for a while: the watchers retry with backoff and the last
	// good rules and instances keep serving.
	time.Sleep(8 * time.Second)
	st := m.Status()
	downFor := time.Since(killed)
	if st.Rules.Version != v1 || len(m.Table().Instances(service, "")) != 3 {
		t.Errorf("during the outage: rules %q, %d instances; want %q and 3", st.Rules.Version, len(m.Table().Instances(service, "")), v1)
	}
	// Delays 0.1, 0.2, 0.4, 0.8, 1.6 s, then 2 s (±20 %): a hot loop
	// would count hundreds.
	if limit := 6 + int(downFor/(maxBackoff*8/10)); st.Watcher.Attempts < 1 || st.Watcher.Attempts > limit {
		t.Errorf("rule watcher made %d attempts in %v down, want 1..%d", st.Watcher.Attempts, downFor, limit)
	}
	t.Logf("after %v down: rule watcher %d attempts (%s), discovery %d attempts", downFor.Round(time.Millisecond), st.Watcher.Attempts, st.Watcher.LastError, st.Discovery.Attempts)

	// A process started during the outage serves from its snapshot
	// within the start timeout, and without one fails with the reason.
	late := startLate(t, cfg, dataID, service, snapshots)
	lateClient := &http.Client{Transport: late.Transport(nil)}
	for range 6 {
		if got, err := meshtest.Call(lateClient, service, "staging"); err != nil || got != "staging-1" {
			t.Fatalf("a mesh started from the snapshot during the outage answered %q, %v; want staging-1", got, err)
		}
	}

	for _, r := range regs {
		r.Close() // fails to deregister: the server is down
	}
	restarted := time.Now()
	srv.run(t, "start")
	t.Logf("server ready again %v after the restart began", time.Since(restarted).Round(time.Millisecond))
	// The instances come back 2 s after the server, within the 5 s the
	// mesh's discovery waits for them.
	time.Sleep(2 * time.Second)
	registerAll()
	var recovered time.Duration
	meshtest.WaitFor(t, 30*time.Second, "rules and discovery reported connected", func() bool {
		st := m.Status()
		ok := st.Watcher.Connected && st.Discovery.Connected
		if ok {
			recovered = time.Since(restarted)
		}
		return ok
	})
	t.Logf("status connected %v after the restart began", recovered.Round(time.Millisecond))
	waitInstances(t, m, service, 3)

	// A rule published after the restart is applied, by the mesh that
	// lived through the outage and by the one started during it:
	// everything moves to staging.
	v2 := pub.publish(t, dataID, meshtest.MovedRules(service))
	meshtest.WaitFor(t, 30*time.Second, "the rules published after the restart applied", func() bool {
		st := late.Status()
		return m.Status().Rules.Version == v2 && st.Rules.Version == v2 && !st.Rules.FromSnapshot
	})
	before := backends["staging-1"].Hits.Load()
	time.Sleep(500 * time.Millisecond)
	res := load.Stop()
	if backends["staging-1"].Hits.Load() == before {
		t.Error("no request reached staging-1 after the moved rules were applied")
	}
	t.Logf("load: %d requests, %d failed, by backend %v, slowest %v", res.Sent, res.Failed, res.ByBody, res.MaxLatency)
	if res.Failed != 0 {
		t.Errorf("%d of %d requests failed across the Nacos kill and restart, want 0: %v", res.Failed, res.Sent, res.Errors)
	}
}

// startLate starts meshes while the Nacos server is down: one without a
// snapshot, which must fail with an error naming the source and the
// cause, and one from a copy of the snapshots in dir, which must start
// within its start timeout from the saved rules. It returns the second.
func startLate(t *testing.T, cfg Config, dataID, service, dir string) *mesh.Mesh {
	t.Helper()
	newSources := func() []mesh.Option {
		rules, err := NewRuleSource(cfg, dataID, "")
		if err != nil {
			t.Fatal(err)
		}
		disc, err := NewDiscovery(cfg, "")
		if err != nil {
			t.Fatal(err)
		}
		return []mesh.Option{mesh.WithRules(rules), mesh.WithDiscovery(disc), mesh.WithStartTimeout(3 * time.Second),
			mesh.WithReconnectBackoff(100*time.Millisecond, 2*time.Second)}
	}
	_, err := mesh.New(context.Background(), newSources()...)
	if err == nil || !strings.Contains(err.Error(), dataID) || !strings.Contains(err.Error(), "within 3s") {
		t.Fatalf("New without a snapshot while Nacos is down: %v; want an error naming the source and the wait", err)
	}
	t.Logf("started without a snapshot during the outage: %v", err)
	copyDir := t.TempDir()
	if err := os.CopyFS(copyDir, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	begun := time.Now()
	m, err := mesh.New(context.Background(), append(newSources(), mesh.WithSnapshotDir(copyDir))...)
	if err != nil {
		t.Fatalf("New from the snapshot while Nacos is down: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	t.Logf("started from the snapshot during the outage in %v", time.Since(begun).Round(time.Millisecond))
	if st := m.Status(); !st.Rules.FromSnapshot || st.Watcher.Connected || len(m.Table().Instances(service, "")) != 3 {
		t.Fatalf("mesh started during the outage: fromSnapshot=%v watcher=%+v instances=%d; want the snapshot's rules and 3 instances",
			st.Rules.FromSnapshot, st.Watcher, len(m.Table().Instances(service, "")))
	}
	return m
}
