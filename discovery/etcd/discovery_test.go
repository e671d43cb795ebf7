package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestDiscoveryFollowsRegistrations registers and deregisters real
// backends and checks the mesh's routing follows, fallback included.
func TestDiscoveryFollowsRegistrations(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	ctx := context.Background()
	const key = "/lightmesh-test/rules/disc"
	put(t, cli, key, laneRules)
	base1, staging1, staging2 := meshtest.NewBackend(t, "base-1"), meshtest.NewBackend(t, "staging-1"), meshtest.NewBackend(t, "staging-2")
	regBase, err := Register(ctx, cli, testPrefix, "user-api", "base-1", base1.Instance("base"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer regBase.Close(ctx)
	if got, want := regBase.Key(), testPrefix+"/user-api/base-1"; got != want {
		t.Fatalf("Key() = %q, want %q", got, want)
	}
	m := newMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix+"/")))
	client := &http.Client{Transport: m.Transport(nil)}
	waitInstances(t, m, 1)
	meshtest.ExpectOnly(t, client, "user-api", "staging", 5, "base-1") // no staging instance yet: the fallback

	reg1, err := Register(ctx, cli, testPrefix, "user-api", "staging-1", staging1.Instance("staging"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	reg2, err := Register(ctx, cli, testPrefix, "user-api", "staging-2", staging2.Instance("staging"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	waitInstances(t, m, 3)
	got := meshtest.Routes(t, client, "user-api", "staging", 20)
	if got["staging-1"] == 0 || got["staging-2"] == 0 || got["base-1"] != 0 {
		t.Fatalf("staging calls went to %v, want both staging instances", got)
	}
	meshtest.ExpectOnly(t, client, "user-api", "", 10, "base-1")

	if err := reg1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := reg1.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitInstances(t, m, 2)
	meshtest.ExpectOnly(t, client, "user-api", "staging", 10, "staging-2")

	if err := reg2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitInstances(t, m, 1)
	meshtest.ExpectOnly(t, client, "user-api", "staging", 5, "base-1")
}

// nextList waits for a list satisfying ok.
func nextList(t *testing.T, lists <-chan []discovery.Instance, what string, ok func([]discovery.Instance) bool) []discovery.Instance {
	t.Helper()
	return meshtest.Next(t, lists, 10*time.Second, "instance list with "+what, ok)
}

func addrs(l []discovery.Instance) []string {
	out := make([]string, len(l))
	for i, in := range l {
		out[i] = in.Address
	}
	return out
}

func hasAddrs(want ...string) func([]discovery.Instance) bool {
	return func(l []discovery.Instance) bool { return slices.Equal(addrs(l), want) }
}

func instanceJSON(t *testing.T, in discovery.Instance) string {
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDiscoveryBadValues puts hostile and malformed values next to good
// ones: each bad one is skipped and logged, the watch keeps going, and a
// bad value that is fixed is picked up.
func TestDiscoveryBadValues(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	dir := testPrefix + "/bad/"
	put(t, cli, dir+"a-good", `{"address":"10.0.0.1:80","weight":3,"labels":{"env":"staging"}}`)
	manyLabels := map[string]string{}
	for i := range discovery.MaxLabels + 1 {
		manyLabels[fmt.Sprint("k", i)] = "v"
	}
	bad := map[string]string{
		"b-truncated":   `{"address":"10.0.0.2:80"`,
		"c-wrong-type":  `{"address":5}`,
		"d-null":        `null`,
		"e-array":       `[1,2,3]`,
		"f-no-port":     `{"address":"10.0.0.3"}`,
		"g-bad-port":    `{"address":"10.0.0.3:99999"}`,
		"h-negative":    `{"address":"10.0.0.3:80","weight":-1}`,
		"i-oversized":   `{"address":"10.0.0.4:80","labels":{"x":"` + strings.Repeat("y", 600) + `"}}`,
		"j-many-labels": instanceJSON(t, discovery.Instance{Address: "10.0.0.5:80", Labels: manyLabels}),
		"k-trailing":    `{"address":"10.0.0.6:80"} {}`,
		"l-binary":      "\x00\xff\xfe",
		"m/nested":      `{"address":"10.0.0.7:80"}`,
	}
	for k, v := range bad {
		put(t, cli, dir+k, v)
	}
	logs := &meshtest.LogBuffer{}
	d := NewDiscovery(cli, testPrefix, WithLogger(logs.Logger()), WithMaxValueSize(512))
	lists, stop := meshtest.WatchList(t, d, "bad")
	l := nextList(t, lists, "the good instance only", hasAddrs("10.0.0.1:80"))
	if l[0].Weight != 3 || l[0].Labels["env"] != "staging" {
		t.Fatalf("good instance decoded as %+v", l[0])
	}
	if n := logs.Count("instance value skipped"); n != len(bad) {
		t.Errorf("%d skipped values logged, want %d; logs:\n%s", n, len(bad), logs)
	}
	// Fixing a bad value brings it in; breaking a good one takes it out.
	put(t, cli, dir+"b-truncated", `{"address":"10.0.0.2:80"}`)
	nextList(t, lists, "the fixed instance", hasAddrs("10.0.0.1:80", "10.0.0.2:80"))
	put(t, cli, dir+"a-good", `{"address":`)
	nextList(t, lists, "the broken instance gone", hasAddrs("10.0.0.2:80"))
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
}

// TestDiscoveryNames rejects service names that cannot be one key
// segment.
func TestDiscoveryNames(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	d := NewDiscovery(cli, testPrefix)
	for _, name := range []string{"", "a/b", "x\n", strings.Repeat("s", 300)} {
		if err := d.Watch(context.Background(), name, func([]discovery.Instance) {}); err == nil {
			t.Errorf("Watch(%q) succeeded", name)
		}
	}
	ctx := context.Background()
	good := discovery.Instance{Address: "127.0.0.1:1"}
	for _, tc := range []struct{ service, id string }{{"", "a"}, {"s", ""}, {"s/x", "a"}, {"s", "a/b"}} {
		if _, err := Register(ctx, cli, testPrefix, tc.service, tc.id, good, time.Second); err == nil {
			t.Errorf("Register(%q, %q) succeeded", tc.service, tc.id)
		}
	}
	if _, err := Register(ctx, cli, testPrefix, "s", "a", discovery.Instance{Address: "nope"}, time.Second); err == nil {
		t.Error("Register of an invalid instance succeeded")
	}
	if _, err := Register(ctx, nil, testPrefix, "s", "a", good, time.Second); err == nil {
		t.Error("Register without a client succeeded")
	}
}

// TestDiscoveryInstanceLimit keeps at most the configured number of
// instances, and lets an ignored one in when a kept one leaves.
func TestDiscoveryInstanceLimit(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	dir := testPrefix + "/limited/"
	for i := 1; i <= 4; i++ {
		put(t, cli, fmt.Sprint(dir, "i", i), fmt.Sprintf(`{"address":"10.0.0.%d:80"}`, i))
	}
	logs := &meshtest.LogBuffer{}
	lists, _ := meshtest.WatchList(t, NewDiscovery(cli, testPrefix, WithMaxInstances(3), WithLogger(logs.Logger())), "limited")
	nextList(t, lists, "the first three", hasAddrs("10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"))
	if logs.Count("list cut") == 0 {
		t.Errorf("cut not logged; logs:\n%s", logs)
	}
	put(t, cli, dir+"i5", `{"address":"10.0.0.5:80"}`)
	del(t, cli, dir+"i1")
	nextList(t, lists, "a free slot filled", hasAddrs("10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"))
}

// TestDiscoveryCompacted cuts the watcher off, changes the instances and
// compacts past the watch's revision: the watch fails with ErrCompacted
// and the next Watch delivers the current list.
func TestDiscoveryCompacted(t *testing.T) {
	srv := etcdtest.Start(t)
	admin := srv.Client(t)
	proxy := startProxy(t, srv.Endpoint())
	watcher := srv.Client(t, proxy.addr())
	dir := testPrefix + "/compacted/"
	put(t, admin, dir+"one", `{"address":"10.0.0.1:80"}`)
	d := NewDiscovery(watcher, testPrefix)
	lists := make(chan []discovery.Instance, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	update := func(l []discovery.Instance) { lists <- slices.Clone(l) }
	go func() { done <- d.Watch(ctx, "compacted", update) }()
	nextList(t, lists, "one", hasAddrs("10.0.0.1:80"))

	proxy.cut()
	put(t, admin, dir+"two", `{"address":"10.0.0.2:80"}`)
	del(t, admin, dir+"one")
	r := put(t, admin, "/lightmesh-test/other", "x")
	if _, err := admin.Compact(ctx, r); err != nil {
		t.Fatal(err)
	}
	proxy.heal()
	select {
	case err := <-done:
		if !errors.Is(err, rpctypes.ErrCompacted) {
			t.Fatalf("Watch returned %v, want ErrCompacted", err)
		}
	case l := <-lists:
		t.Fatalf("compacted watch delivered %v instead of failing", addrs(l))
	case <-time.After(15 * time.Second):
		t.Fatal("Watch did not fail after compaction")
	}
	go func() { done <- d.Watch(ctx, "compacted", update) }()
	nextList(t, lists, "two only", hasAddrs("10.0.0.2:80"))
	cancel()
	<-done
}

// TestKilledLeaseHolderDisappears registers an instance from a process
// that then dies without deregistering (its client is closed, so the
// lease is no longer kept alive): the instance leaves the mesh once its
// TTL has run out, not before.
func TestKilledLeaseHolderDisappears(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const key = "/lightmesh-test/rules/lease"
	put(t, cli, key, laneRules)
	base, doomed := meshtest.NewBackend(t, "base-1"), meshtest.NewBackend(t, "base-2")
	ctx := context.Background()
	reg, err := Register(ctx, cli, testPrefix, "user-api", "base-1", base.Instance("base"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)

	holder, err := etcdtest.NewClient(srv.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	const ttl = 2 * time.Second
	dying, err := Register(ctx, holder, testPrefix, "user-api", "base-2", doomed.Instance("base"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	m := newMesh(t, mesh.WithRules(NewRuleSource(cli, key)), mesh.WithDiscovery(NewDiscovery(cli, testPrefix)))
	waitInstances(t, m, 2)
	// Outlive a few keep-alive rounds first: the lease must be renewed.
	time.Sleep(ttl + time.Second)
	if !hasInstance(m, "user-api", doomed.Addr()) {
		t.Fatal("a kept-alive instance disappeared")
	}
	held, err := cli.Get(ctx, dying.Key())
	if err != nil || len(held.Kvs) != 1 {
		t.Fatalf("the instance's key: %v, %v", held, err)
	}
	if lease, err := cli.TimeToLive(ctx, clientv3.LeaseID(held.Kvs[0].Lease)); err != nil || lease.GrantedTTL != int64(ttl/time.Second) {
		t.Fatalf("the instance's lease: %+v, %v; want one granted for %v", lease, err, ttl)
	}

	killed := time.Now()
	holder.Close() // the process dies: no revoke, no more keep-alives
	// Not before its TTL: the key outlives the client. (How soon it goes
	// counts from the last keep-alive the server got, up to a third of
	// the TTL before the kill, earlier on a loaded machine: a time bound
	// here would judge the machine.)
	if resp, err := cli.Get(ctx, dying.Key()); err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("the instance's key went with its client, before its TTL: %v, %v", resp, err)
	}
	meshtest.WaitFor(t, ttl+5*time.Second, "the dead instance to leave", func() bool { return !hasInstance(m, "user-api", doomed.Addr()) })
	gone := time.Since(killed)
	t.Logf("instance left %v after its holder died (TTL %v)", gone.Round(time.Millisecond), ttl)
	meshtest.ExpectOnly(t, &http.Client{Transport: m.Transport(nil)}, "user-api", "", 10, "base-1")
	if err := dying.Close(ctx); err == nil || !strings.Contains(err.Error(), "client closed") {
		t.Fatalf("Close after the client closed: %v, want a client-closed error", err)
	}
}

// TestRegistrationSurvivesLostLease revokes a registration's lease behind
// its back: it registers again by itself.
func TestRegistrationSurvivesLostLease(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	ctx := context.Background()
	logs := &meshtest.LogBuffer{}
	reg, err := Register(ctx, cli, testPrefix, "svc", "one", discovery.Instance{Address: "10.0.0.1:80"}, time.Second, WithLogger(logs.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	resp, err := cli.Get(ctx, reg.Key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("registered key: %v, %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	meshtest.WaitFor(t, 10*time.Second, "registered again", func() bool {
		r, err := cli.Get(ctx, reg.Key())
		return err == nil && len(r.Kvs) == 1 && r.Kvs[0].Lease != resp.Kvs[0].Lease
	})
	// The log line follows the write: wait for it rather than race it.
	meshtest.WaitFor(t, 5*time.Second, "the re-registration to be logged", func() bool { return logs.Count("registered again") > 0 })
	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Get(ctx, reg.Key())
	if err != nil || len(r.Kvs) != 0 {
		t.Fatalf("key after Close: %v, %v", r, err)
	}
}

// discoveryWatch is one Discovery.Watch call running in its own goroutine.
type discoveryWatch struct {
	lists chan []discovery.Instance // copies of the delivered lists
	done  chan struct{}             // closed when Watch returned
	err   error                     // Watch's result, set before done is closed
}

// watchDiscovery starts d.Watch(service); the watch is cancelled, and
// waited for, when t ends.
func watchDiscovery(t *testing.T, d *Discovery, service string) *discoveryWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &discoveryWatch{lists: make(chan []discovery.Instance, 64), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = d.Watch(ctx, service, func(l []discovery.Instance) {
			select {
			case w.lists <- slices.Clone(l):
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Errorf("Watch(%q) did not return within 5s of its cancellation", service)
		}
	})
	return w
}

// TestDiscoveryEtcdStopped stops etcd under the watches of one Discovery,
// right after their first lists: every one of them ends with the outage,
// not a silent wait and not context.Canceled, within the health interval
// plus the check's timeout (with room for the race detector). Stopping at
// once catches the watches whose creation the server has not yet
// confirmed: the etcd client holds those in its Watch call, where only
// the cancellation the failed check makes reaches them.
func TestDiscoveryEtcdStopped(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const interval, timeout = 100 * time.Millisecond, 300 * time.Millisecond
	d := NewDiscovery(cli, testPrefix, WithHealthInterval(interval), WithRequestTimeout(timeout))
	put(t, cli, testPrefix+"/user-api/one", `{"address":"10.0.0.1:80"}`)
	services := []string{"user-api", "order-api", "billing"}
	watches := make([]*discoveryWatch, len(services))
	for i, s := range services {
		watches[i] = watchDiscovery(t, d, s)
	}
	nextList(t, watches[0].lists, "one", hasAddrs("10.0.0.1:80"))
	nextList(t, watches[1].lists, "none", hasAddrs())
	nextList(t, watches[2].lists, "none", hasAddrs())

	srv.Stop()
	stopped := time.Now()
	for i, w := range watches {
		select {
		case <-w.done:
		case <-time.After(interval + timeout + 2*time.Second - time.Since(stopped)):
			t.Fatalf("Watch(%s) did not return within %v of the stop", services[i], interval+timeout+2*time.Second)
		}
		if w.err == nil || errors.Is(w.err, context.Canceled) {
			t.Fatalf("Watch(%s) returned %v after etcd stopped, want the outage", services[i], w.err)
		}
		t.Logf("Watch(%s) ended %v after the stop: %v", services[i], time.Since(stopped).Round(time.Millisecond), w.err)
	}
}

// TestRegisterFindsItsAddress: Register takes an address without a
// host, as a server's listen address is written (":8080"), and puts the
// address other processes reach: POD_IP when set, else the address of
// the default route's interface, never loopback.
func TestRegisterFindsItsAddress(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	ctx := context.Background()
	registered := func(reg *Registration) discovery.Instance {
		t.Helper()
		resp, err := cli.Get(ctx, reg.Key())
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("registered key: %v, %v", resp, err)
		}
		var in discovery.Instance
		if err := json.Unmarshal(resp.Kvs[0].Value, &in); err != nil {
			t.Fatal(err)
		}
		return in
	}
	t.Setenv(discovery.HostEnv, "")
	reg, err := Register(ctx, cli, testPrefix, "svc", "found", discovery.Instance{Address: ":18081"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close(ctx)
	in := registered(reg)
	host, port, _ := net.SplitHostPort(in.Address)
	if ip, err := netip.ParseAddr(host); err != nil || ip.IsLoopback() || !ip.IsGlobalUnicast() || port != "18081" || in.Address != reg.Address() {
		t.Fatalf("registered at %s (Address %s), want a non-loopback address of this machine, port 18081", in.Address, reg.Address())
	}
	t.Logf("\":18081\" registered as %s", in.Address)

	t.Setenv(discovery.HostEnv, "10.42.0.7")
	reg2, err := Register(ctx, cli, testPrefix, "svc", "pod", discovery.Instance{Address: "0.0.0.0:18082"}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Close(ctx)
	if got := registered(reg2).Address; got != "10.42.0.7:18082" {
		t.Fatalf("with POD_IP=10.42.0.7, registered at %s", got)
	}
}

// TestAdapterWarnsOnTheDefaultLogger: without WithLogger, a skipped
// instance value is logged on slog.Default(), as the mesh logs, not
// discarded.
func TestAdapterWarnsOnTheDefaultLogger(t *testing.T) {
	buf := meshtest.CaptureDefaultLog(t)
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	dir := testPrefix + "/quiet/"
	put(t, cli, dir+"a-good", `{"address":"10.0.0.1:80"}`)
	put(t, cli, dir+"b-truncated", `{"address":`)
	lists, _ := meshtest.WatchList(t, NewDiscovery(cli, testPrefix), "quiet")
	nextList(t, lists, "the good instance only", hasAddrs("10.0.0.1:80"))
	if !strings.Contains(buf.String(), `level=WARN msg="lightmesh: etcd instance value skipped" service=quiet key=`+dir+`b-truncated`) {
		t.Errorf("the skipped value is not logged on slog.Default():\n%s", buf.String())
	}
}

// TestCatalogMissingDocumentIsQuiet: most services of a fleet have no
// document of their own, so a catalog's missing document is not logged
// on the default logger, where a rule source's missing key is a warning.
func TestCatalogMissingDocumentIsQuiet(t *testing.T) {
	buf := meshtest.CaptureDefaultLog(t)
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	for _, watch := range []func(context.Context, func(rules.Document)) error{
		func(ctx context.Context, update func(rules.Document)) error {
			return NewCatalog(cli, "/lm-quiet/").Watch(ctx, "user-api", update)
		},
		NewRuleSource(cli, "/lm-quiet-source").Watch,
	} {
		ctx, cancel := context.WithCancel(context.Background())
		delivered := make(chan rules.Document, 1)
		done := make(chan error, 1)
		go func() { done <- watch(ctx, func(d rules.Document) { delivered <- d }) }()
		select {
		case d := <-delivered:
			if d.Data != nil {
				t.Errorf("delivered %q, want the nil Document", d.Data)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("nothing delivered within 10s")
		}
		cancel()
		<-done
	}
	out := buf.String()
	if strings.Contains(out, "/lm-quiet/user-api") {
		t.Errorf("a catalog's missing document is logged:\n%s", out)
	}
	if !strings.Contains(out, `level=WARN msg="lightmesh: etcd rule key does not exist; waiting for it" key=/lm-quiet-source`) {
		t.Errorf("a rule source's missing key is not a warning:\n%s", out)
	}
}
