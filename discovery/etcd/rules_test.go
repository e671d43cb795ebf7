package etcd

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// registerFleet registers base-1 (env=base) and staging-1 (env=staging)
// for user-api and returns their backends.
func registerFleet(t *testing.T, c *clientv3.Client) (base, staging *meshtest.Backend) {
	t.Helper()
	base, staging = meshtest.NewBackend(t, "base-1"), meshtest.NewBackend(t, "staging-1")
	for _, b := range []struct {
		be  *meshtest.Backend
		env string
	}{{base, "base"}, {staging, "staging"}} {
		reg, err := Register(context.Background(), c, testPrefix, "user-api", b.be.Name, b.be.Instance(b.env), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		deregisterOnCleanup(t, reg)
	}
	return base, staging
}

// TestRulesThroughMesh publishes rules in etcd and checks the mesh routes
// by them: a valid document is applied, a broken one is rejected with
// the rejection visible in Status while the previous rules keep serving,
// and a fixed one is applied again.
func TestRulesThroughMesh(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	registerFleet(t, cli)
	const key = "/lightmesh-test/rules/mesh"
	rev := put(t, cli, key, laneRules)

	evs := make(events, 64)
	src := NewRuleSource(cli, key)
	m := newMesh(t, mesh.WithRules(src), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)), evs.hook())
	evs.wait(t, strconv.FormatInt(rev, 10))
	if got := m.Status().Rules; got.Source != "etcd:"+key || got.Version != strconv.FormatInt(rev, 10) {
		t.Fatalf("status rules = %+v, want source etcd:%s version %d", got, key, rev)
	}
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "base-1")
	meshtest.ExpectOnly(t, client, "user-api", "staging", 10, "staging-1")

	rev = put(t, cli, key, movedRules)
	if ev := evs.wait(t, strconv.FormatInt(rev, 10)); ev.Err != nil {
		t.Fatalf("moved rules rejected: %v", ev.Err)
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "staging-1")

	rev = put(t, cli, key, brokenRules)
	ev := evs.wait(t, strconv.FormatInt(rev, 10))
	if ev.Err == nil {
		t.Fatal("broken rules applied")
	}
	st := m.Status()
	if st.LastRejection == nil || st.LastRejection.Version != strconv.FormatInt(rev, 10) || !strings.Contains(st.LastRejection.Error, "canary") {
		t.Fatalf("status last rejection = %+v, want version %d naming the missing subset", st.LastRejection, rev)
	}
	if st.Rules.Version == strconv.FormatInt(rev, 10) {
		t.Fatalf("status rules version = broken version %d", rev)
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "staging-1") // the moved rules still serve

	rev = put(t, cli, key, laneRules)
	if ev := evs.wait(t, strconv.FormatInt(rev, 10)); ev.Err != nil {
		t.Fatalf("fixed rules rejected: %v", ev.Err)
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "base-1")
	meshtest.ExpectOnly(t, client, "user-api", "staging", 10, "staging-1")
}

// TestRuleKeyAppearsLater starts with no rule key: the source waits
// without failing and the document is applied as soon as it is put; a
// deletion keeps the last rules.
func TestRuleKeyAppearsLater(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	registerFleet(t, cli)
	const key = "/lightmesh-test/rules/later"
	evs := make(events, 64)
	logs := &meshtest.LogBuffer{}
	m := newMesh(t, mesh.WithRules(NewRuleSource(cli, key, WithLogger(logs.Logger()))),
		mesh.WithDiscovery(NewDiscovery(cli, testPrefix)), mesh.WithStartEmpty(),
		mesh.WithStartTimeout(100*time.Millisecond), evs.hook())
	// The mesh may have started (at its 100 ms start timeout) before the
	// source's first read answered.
	meshtest.WaitFor(t, 5*time.Second, "the missing key logged", func() bool { return logs.Count("does not exist") > 0 })
	start := time.Now()
	rev := put(t, cli, key, movedRules)
	evs.wait(t, strconv.FormatInt(rev, 10))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("first document applied after %v; want it at once", d)
	}
	waitInstances(t, m, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, "user-api", "", 5, "staging-1")

	del(t, cli, key)
	meshtest.WaitFor(t, 5*time.Second, "deletion logged", func() bool { return logs.Count("rule key deleted") > 0 })
	meshtest.ExpectOnly(t, client, "user-api", "", 5, "staging-1")
	if v := m.Status().Rules.Version; v != strconv.FormatInt(rev, 10) {
		t.Fatalf("rules version after delete = %s, want %d", v, rev)
	}
}

// TestRuleSourceDirect checks the Watch contract without a mesh: the
// current value first with its mod revision, then each put, the last put
// of a transaction only, and ctx.Err() on cancellation.
func TestRuleSourceDirect(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const key = "/lightmesh-test/rules/direct"
	r1 := put(t, cli, key, "one")
	src := NewRuleSource(cli, key)
	if got := src.String(); got != "etcd:"+key {
		t.Fatalf("String() = %q", got)
	}
	docs := make(chan rules.Document, 16)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Watch(ctx, func(d rules.Document) {
			docs <- rules.Document{Data: append([]byte(nil), d.Data...), Version: d.Version}
		})
	}()
	expectDoc(t, docs, "one", r1)
	r2 := put(t, cli, key, "two")
	expectDoc(t, docs, "two", r2)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}

	var nilSrc RuleSource
	if err := nilSrc.Watch(context.Background(), func(rules.Document) {}); err == nil {
		t.Fatal("Watch without a client succeeded")
	}
}

func expectDoc(t *testing.T, docs <-chan rules.Document, data string, rev int64) {
	t.Helper()
	select {
	case d := <-docs:
		if string(d.Data) != data || d.Version != strconv.FormatInt(rev, 10) {
			t.Fatalf("got document %q version %s, want %q version %d", d.Data, d.Version, data, rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no document %q within 10s", data)
	}
}

// TestRuleSourceCompacted cuts the watcher off from etcd, changes the key
// and compacts past the revision the watch would resume from. When the
// connection comes back the watch fails with ErrCompacted, and the next
// Watch re-reads the key and delivers the change made while cut off.
func TestRuleSourceCompacted(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := srv.Client(t)
	proxy := startProxy(t, srv.Endpoint())
	watcher := srv.Client(t, proxy.addr())
	const key = "/lightmesh-test/rules/compacted"
	r1 := put(t, admin, key, "before")
	src := NewRuleSource(watcher, key)
	docs := make(chan rules.Document, 16)
	update := func(d rules.Document) {
		docs <- rules.Document{Data: append([]byte(nil), d.Data...), Version: d.Version}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- src.Watch(ctx, update) }()
	expectDoc(t, docs, "before", r1)

	proxy.cut()
	r2 := put(t, admin, key, "while-cut")
	r3 := put(t, admin, "/lightmesh-test/other", "x")
	if _, err := admin.Compact(context.Background(), r3); err != nil {
		t.Fatal(err)
	}
	proxy.heal()
	select {
	case err := <-done:
		if !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("Watch returned %v, want ErrCompacted", err)
		}
	case d := <-docs:
		t.Fatalf("compacted watch delivered %q version %s instead of failing", d.Data, d.Version)
	case <-time.After(15 * time.Second):
		t.Fatal("Watch did not fail after compaction")
	}
	go func() { done <- src.Watch(ctx, update) }()
	expectDoc(t, docs, "while-cut", r2)
	cancel()
	<-done
}

// TestRulesCompactedThroughMesh is the same partition seen from a mesh:
// the watch loop recovers from the compaction by itself and applies the
// document published while the process was cut off.
func TestRulesCompactedThroughMesh(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := srv.Client(t)
	registerFleet(t, admin)
	proxy := startProxy(t, srv.Endpoint())
	watcher := srv.Client(t, proxy.addr())
	const key = "/lightmesh-test/rules/mesh-compacted"
	rev := put(t, admin, key, laneRules)
	evs := make(events, 64)
	logs := &meshtest.LogBuffer{}
	m := newMesh(t, mesh.WithRules(NewRuleSource(watcher, key)), mesh.WithDiscovery(NewDiscovery(admin, testPrefix)),
		mesh.WithLogger(logs.Logger()), evs.hook())
	evs.wait(t, strconv.FormatInt(rev, 10))

	proxy.cut()
	rev = put(t, admin, key, movedRules)
	r := put(t, admin, "/lightmesh-test/other", "x")
	if _, err := admin.Compact(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	proxy.heal()
	if ev := evs.wait(t, strconv.FormatInt(rev, 10)); ev.Err != nil {
		t.Fatal(ev.Err)
	}
	if !strings.Contains(logs.String(), "compacted") {
		t.Errorf("the watch did not go through the compaction path; logs:\n%s", logs)
	}
	meshtest.ExpectOnly(t, &http.Client{Transport: m.Transport(nil)}, "user-api", "", 5, "staging-1")
}
