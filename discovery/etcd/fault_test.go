//go:build fault

package etcd

import (
	"context"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// faultBackoff is the mesh's reconnect backoff in the fault tests.
const faultMaxBackoff = time.Second

func faultMesh(t *testing.T, opts ...mesh.Option) *mesh.Mesh {
	t.Helper()
	return meshtest.Start(t, 15*time.Second, func(ctx context.Context) (*mesh.Mesh, error) {
		return mesh.New(ctx, append([]mesh.Option{mesh.WithReconnectBackoff(100*time.Millisecond, faultMaxBackoff)}, opts...)...)
	})
}

// maxAttempts bounds the attempts a watcher with faultMaxBackoff makes in
// d: delays 0.1, 0.2, 0.4, 0.8 s, then 1 s (each ±20 %), and each attempt
// may itself take up to the request timeout. A hot loop makes thousands.
func maxAttempts(d time.Duration) int { return 5 + int(d/(faultMaxBackoff*8/10)) }

// waitState waits until the rule watcher and discovery are both in
// state and returns how long after since the status says the later of
// the two entered it (its Since): not when the wait saw it, because
// stopping or starting etcd, which the caller does before waiting, can
// itself take seconds (the embedded server's Close sometimes waits 5 s
// for its streams), while the mesh noticed long before.
func waitState(t *testing.T, m *mesh.Mesh, state string, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	var took time.Duration
	meshtest.WaitFor(t, within, "rules and discovery "+state, func() bool {
		st := m.Status()
		ok := st.Watcher.State == state && st.Discovery != nil && st.Discovery.State == state
		if ok {
			entered := st.Watcher.Since
			if st.Discovery.Since.After(entered) {
				entered = st.Discovery.Since
			}
			took = entered.Sub(since)
		}
		return ok
	})
	if took < 0 {
		t.Errorf("the status says it has been %s since %v, before the stop, cut, restart or heal at %v", state, since.Add(took), since)
	}
	return took
}

// putRetry puts value at key, retrying until etcd takes it.
func putRetry(t *testing.T, cli *clientv3.Client, key, value string) int64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		resp, err := cli.Put(ctx, key, value)
		cancel()
		if err == nil {
			return resp.Header.Revision
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFaultEtcdStopped stops etcd while requests flow at a steady rate
// and starts it again on the same data: no request fails (the mesh keeps
// routing with the last rules and instances), the rules stay at the last
// good version, the status shows the outage within 5 s and the recovery,
// the watchers retry with capped backoff, a rule put after the restart
// applies and an instance registered after it is found.
func TestFaultEtcdStopped(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	registerFleet(t, cli)
	const key = "/lightmesh-test/rules/fault-stop"
	rev := put(t, cli, key, laneRules)
	m := faultMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)))
	waitInstances(t, m, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	load := meshtest.StartLoad(t, client, "http://user-api/", 3000, 50, nil)
	time.Sleep(500 * time.Millisecond)

	stopped := time.Now()
	srv.Stop()
	t.Logf("etcd took %v to stop", time.Since(stopped).Round(time.Millisecond))
	detected := waitState(t, m, mesh.StateReconnecting, stopped, 10*time.Second)
	t.Logf("outage seen after %v", detected.Round(time.Millisecond))
	if detected > 5*time.Second {
		t.Errorf("the status showed the outage after %v, want within 5 s", detected)
	}
	time.Sleep(6 * time.Second)
	st := m.Status()
	down := time.Since(stopped)
	if st.Rules.Version != strconv.FormatInt(rev, 10) {
		t.Errorf("rules during the outage = %q, want %d", st.Rules.Version, rev)
	}
	if n := st.Watcher.Attempts; n < 1 || n > maxAttempts(down) {
		t.Errorf("rule watcher made %d attempts in %v down, want 1..%d", n, down, maxAttempts(down))
	}
	t.Logf("%v down: rule watcher %d attempts, discovery %d (%s)", down.Round(time.Millisecond), st.Watcher.Attempts, st.Discovery.Attempts, st.Discovery.LastError)

	restarted := time.Now()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	recovered := waitState(t, m, mesh.StateConnected, restarted, 15*time.Second)
	t.Logf("connected %v after the restart", recovered.Round(time.Millisecond))
	rev = putRetry(t, cli, key, movedRules)
	meshtest.WaitFor(t, 10*time.Second, "rules put after the restart applied", func() bool {
		return m.Status().Rules.Version == strconv.FormatInt(rev, 10)
	})
	// The discovery watch resumed too: an instance registered after the
	// restart is found.
	base2 := meshtest.NewBackend(t, "base-2")
	reg, err := Register(context.Background(), cli, testPrefix, "user-api", "base-2", base2.Instance("base"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	deregisterOnCleanup(t, reg)
	waitInstances(t, m, 3)
	time.Sleep(200 * time.Millisecond)
	res := load.Stop()
	t.Logf("load: %d requests at 50/s, %d failed, by backend %v", res.Sent, res.Failed, res.ByBody)
	if res.Failed != 0 {
		t.Errorf("%d of %d requests failed across the etcd stop and restart, want 0: %v", res.Failed, res.Sent, res.Errors)
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "staging-1")
}

// TestFaultEtcdBlackholeAndCompaction cuts the network between the mesh
// and etcd without closing the connection (every byte dropped both ways,
// as when a firewall or NAT loses the connection's state), changes the
// rules meanwhile and compacts etcd past the watcher's revision, then
// heals the network. The health check must report the outage within
// 5 s although the connection never closes; no request fails; once the
// client's keepalive abandons the dead connection, the watch resumes,
// finds its revision compacted, reads afresh and applies the newest
// rules.
func TestFaultEtcdBlackholeAndCompaction(t *testing.T) {
	srv := etcdtest.Start(t)
	direct := srv.Client(t)
	registerFleet(t, direct)
	const key = "/lightmesh-test/rules/fault-cut"
	put(t, direct, key, laneRules)
	proxy := startProxy(t, srv.Endpoint())
	cfg := etcdtest.NewClientConfig(proxy.addr())
	// A connection that dies without a reset is found only by keepalive
	// pings (grpc-go allows no less than 10 s between them).
	cfg.DialKeepAliveTime, cfg.DialKeepAliveTimeout = 10*time.Second, 2*time.Second
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	m := faultMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)))
	waitInstances(t, m, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	load := meshtest.StartLoad(t, client, "http://user-api/", 3000, 50, nil)
	time.Sleep(500 * time.Millisecond)

	cut := time.Now()
	proxy.blackhole()
	detected := waitState(t, m, mesh.StateReconnecting, cut, 10*time.Second)
	t.Logf("blackhole seen after %v", detected.Round(time.Millisecond))
	if detected > 5*time.Second {
		t.Errorf("the status showed the blackhole after %v, want within 5 s", detected)
	}
	// Meanwhile ops move everything to staging, and etcd compacts past
	// every revision the watcher saw.
	var rev int64
	for i := range 20 {
		rev = put(t, direct, key, movedRules+"# edit "+strconv.Itoa(i)+"\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if _, err := direct.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	cancel()
	if v := m.Status().Rules.Version; v == strconv.FormatInt(rev, 10) {
		t.Fatalf("the mesh saw revision %s through a blackholed connection", v)
	}

	healed := time.Now()
	proxy.heal()
	recovered := waitState(t, m, mesh.StateConnected, healed, 40*time.Second)
	meshtest.WaitFor(t, 10*time.Second, "the newest rules applied after the compaction", func() bool {
		return m.Status().Rules.Version == strconv.FormatInt(rev, 10)
	})
	t.Logf("connected %v after the heal (keepalive %v + %v)", recovered.Round(time.Millisecond), cfg.DialKeepAliveTime, cfg.DialKeepAliveTimeout)
	st := m.Status()
	if !strings.Contains(st.Watcher.LastError, "health check") && !strings.Contains(st.Watcher.LastError, "deadline") {
		t.Errorf("rule watcher's last error = %q, want the failed health check or read", st.Watcher.LastError)
	}
	time.Sleep(200 * time.Millisecond)
	res := load.Stop()
	t.Logf("load: %d requests at 50/s, %d failed, by backend %v; proxy accepted %d connections", res.Sent, res.Failed, res.ByBody, proxy.accepted.Load())
	if res.Failed != 0 {
		t.Errorf("%d of %d requests failed across the blackhole, want 0: %v", res.Failed, res.Sent, res.Errors)
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "staging-1")
}

// TestFaultEtcdStartWhileDown starts a mesh while etcd is down. With a
// snapshot it serves the saved rules and instances within the start
// timeout and catches up when etcd returns; without one New fails with
// an error that names the source and says why.
func TestFaultEtcdStartWhileDown(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	registerFleet(t, cli)
	const key = "/lightmesh-test/rules/fault-start"
	put(t, cli, key, laneRules)
	dir := t.TempDir()
	opts := func(extra ...mesh.Option) []mesh.Option {
		return append([]mesh.Option{mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)),
			mesh.WithStartTimeout(2 * time.Second), mesh.WithReconnectBackoff(100*time.Millisecond, faultMaxBackoff)}, extra...)
	}
	first, err := mesh.New(context.Background(), opts(mesh.WithSnapshotDir(dir))...)
	if err != nil {
		t.Fatal(err)
	}
	waitInstances(t, first, 2)
	time.Sleep(300 * time.Millisecond) // the snapshot writer's delay
	first.Close()
	srv.Stop()

	_, err = mesh.New(context.Background(), opts()...)
	if err == nil || !strings.Contains(err.Error(), "etcd:"+key) || !strings.Contains(err.Error(), "within 2s") {
		t.Fatalf("New without a snapshot while etcd is down: %v; want an error naming the source and the wait", err)
	}
	t.Logf("without a snapshot: %v", err)

	begun := time.Now()
	m, err := mesh.New(context.Background(), opts(mesh.WithSnapshotDir(dir))...)
	if err != nil {
		t.Fatalf("New with a snapshot while etcd is down: %v", err)
	}
	defer m.Close()
	if took := time.Since(begun); took > 5*time.Second {
		t.Errorf("New took %v with a 2 s start timeout", took)
	}
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, "user-api", "staging", 5, "staging-1")
	meshtest.ExpectOnly(t, client, "user-api", "", 5, "base-1")
	st := m.Status()
	if !st.Rules.FromSnapshot || st.Watcher.Connected {
		t.Errorf("status while etcd is down: fromSnapshot=%v watcher=%+v; want from the snapshot, not connected", st.Rules.FromSnapshot, st.Watcher)
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	rev := putRetry(t, cli, key, movedRules)
	meshtest.WaitFor(t, 15*time.Second, "rules put after etcd came back applied", func() bool {
		st := m.Status()
		return st.Rules.Version == strconv.FormatInt(rev, 10) && !st.Rules.FromSnapshot && st.Watcher.Connected
	})
	meshtest.ExpectOnly(t, client, "user-api", "", 5, "staging-1")
}

// TestFaultEtcdClusterMemberLost runs the mesh against a three-member
// etcd cluster through a client that knows all three endpoints, and
// stops the leader while requests flow: no request fails, a rule put
// while the member is down applies, and the status ends connected; the
// member then rejoins.
func TestFaultEtcdClusterMemberLost(t *testing.T) {
	// Members of an embedded cluster keep their peer connections for a
	// few seconds after they stop (etcd's peer read timeout): wait for
	// them, last of all, so that goleak sees only real leaks.
	base := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(20 * time.Second)
		for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	})
	members := etcdtest.StartCluster(t, 3)
	cfg := etcdtest.NewClientConfig("")
	cfg.Endpoints = etcdtest.Endpoints(members)
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	registerFleet(t, cli)
	const key = "/lightmesh-test/rules/fault-cluster"
	put(t, cli, key, laneRules)
	m := faultMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)))
	waitInstances(t, m, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	load := meshtest.StartLoad(t, client, "http://user-api/", 3000, 50, nil)
	time.Sleep(500 * time.Millisecond)

	leader := clusterLeader(t, cli, members)
	lost := time.Now()
	leader.Stop()
	rev := putRetry(t, cli, key, movedRules)
	meshtest.WaitFor(t, 15*time.Second, "rules put with the leader down applied", func() bool {
		st := m.Status()
		return st.Rules.Version == strconv.FormatInt(rev, 10) && st.Watcher.Connected && st.Discovery.Connected
	})
	t.Logf("leader %s stopped; rules put %v later applied, status connected", leader.Endpoint(), time.Since(lost).Round(time.Millisecond))
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	res := load.Stop()
	t.Logf("load: %d requests at 50/s, %d failed, by backend %v", res.Sent, res.Failed, res.ByBody)
	if res.Failed != 0 {
		t.Errorf("%d of %d requests failed across the loss of the leader, want 0: %v", res.Failed, res.Sent, res.Errors)
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "staging-1")
}

// clusterLeader returns the member that leads the cluster now.
func clusterLeader(t *testing.T, cli *clientv3.Client, members []*etcdtest.Server) *etcdtest.Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range members {
		st, err := cli.Status(ctx, s.Endpoint())
		if err != nil {
			t.Fatalf("status of %s: %v", s.Endpoint(), err)
		}
		if st.Header.MemberId == st.Leader {
			return s
		}
	}
	t.Fatal("no member leads the cluster")
	return nil
}

// TestFaultEtcdOutageWithoutRules: a mesh started before its rule key
// exists reports the rule watcher connected once etcd answers, through an
// outage and back, although there is never a document to deliver; the
// rules are then put and applied.
func TestFaultEtcdOutageWithoutRules(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const key = "/lightmesh-test/rules/fault-absent"
	m := faultMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithStartEmpty(), mesh.WithStartTimeout(time.Second))
	meshtest.WaitFor(t, 10*time.Second, "the rule watcher connected with no key", func() bool { return m.Status().Watcher.Connected })
	srv.Stop()
	meshtest.WaitFor(t, 10*time.Second, "the rule watcher reconnecting", func() bool {
		return m.Status().Watcher.State == mesh.StateReconnecting
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 15*time.Second, "the rule watcher connected again, still with no key", func() bool {
		st := m.Status().Watcher
		return st.Connected && st.Attempts == 0 && st.LastUpdate.IsZero()
	})
	rev := putRetry(t, cli, key, laneRules)
	meshtest.WaitFor(t, 10*time.Second, "the rules put at last applied", func() bool {
		return m.Status().Rules.Version == strconv.FormatInt(rev, 10)
	})
}
