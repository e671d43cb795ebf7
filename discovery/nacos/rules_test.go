package nacos

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// TestRulesThroughMesh publishes rules in Nacos config and checks the
// mesh routes by them: a valid document is applied, a broken one is
// rejected with the rejection visible in Status while the previous rules
// keep serving, and a fixed one is applied again. Instances come from
// Nacos naming.
func TestRulesThroughMesh(t *testing.T) {
	cfg := testConfig(t)
	service, dataID, group := unique("lm-user-api"), unique("lightmesh-rules")+".yaml", "LIGHTMESH_TEST"
	pub := newPublisher(t, cfg, group)
	defer pub.remove(t, dataID)
	register(t, cfg, service, group, meshtest.NewBackend(t, "base-1"), "base")
	register(t, cfg, service, group, meshtest.NewBackend(t, "staging-1"), "staging")
	v := pub.publish(t, dataID, meshtest.LaneRules(service))

	src, err := NewRuleSource(cfg, dataID, group)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	disc, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	evs := make(events, 64)
	m := newMesh(t, mesh.WithRules(src), mesh.WithDiscovery(disc), evs.hook())
	defer m.Close() // before the sources close
	evs.wait(t, v, 10*time.Second)
	if got, want := m.Status().Rules.Source, "nacos:public/"+group+"/"+dataID; got != want {
		t.Fatalf("status source = %q, want %q", got, want)
	}
	waitInstances(t, m, service, 2)
	client := &http.Client{Transport: m.Transport(nil)}
	meshtest.ExpectOnly(t, client, service, "", 10, "base-1")
	meshtest.ExpectOnly(t, client, service, "staging", 10, "staging-1")

	// The listener reaches the server on the SDK's 5 s timer, so the
	// first change may take that long; later ones arrive at once.
	v = pub.publish(t, dataID, meshtest.MovedRules(service))
	if ev := evs.wait(t, v, 15*time.Second); ev.Err != nil {
		t.Fatalf("moved rules rejected: %v", ev.Err)
	}
	meshtest.ExpectOnly(t, client, service, "", 10, "staging-1")

	time.Sleep(250 * time.Millisecond) // the SDK reads one item at most ~5 times a second
	published := time.Now()
	v = pub.publish(t, dataID, meshtest.BrokenRules(service))
	ev := evs.wait(t, v, 5*time.Second)
	if ev.Err == nil {
		t.Fatal("broken rules applied")
	}
	t.Logf("the broken edit was rejected %v after its publish", ev.At.Sub(published).Round(time.Millisecond))
	st := m.Status()
	if st.LastRejection == nil || st.LastRejection.Version != v || !strings.Contains(st.LastRejection.Error, "canary") {
		t.Fatalf("status last rejection = %+v, want version %s naming the missing subset", st.LastRejection, v)
	}
	meshtest.ExpectOnly(t, client, service, "", 10, "staging-1") // the moved rules still serve

	time.Sleep(250 * time.Millisecond)
	v = pub.publish(t, dataID, meshtest.LaneRules(service))
	if ev := evs.wait(t, v, 5*time.Second); ev.Err != nil {
		t.Fatalf("fixed rules rejected: %v", ev.Err)
	}
	meshtest.ExpectOnly(t, client, service, "", 10, "base-1")
	meshtest.ExpectOnly(t, client, service, "staging", 10, "staging-1")
}

// TestRuleSourceDirect checks the Watch contract without a mesh: a
// missing item delivers nothing, a published one is delivered with its
// MD5 as the version, a deleted one is ignored, a second concurrent Watch
// is refused, cancellation returns ctx.Err(), and Close removes the
// private directory and makes Watch fail.
func TestRuleSourceDirect(t *testing.T) {
	cfg := testConfig(t)
	logs := &meshtest.LogBuffer{}
	cfg.Logger = logs.Logger()
	dataID, group := unique("lightmesh-direct"), "LIGHTMESH_TEST"
	pub := newPublisher(t, cfg, group)
	src, err := NewRuleSource(cfg, dataID, group)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	connectCatalog(t, src.cat) // the Watch below runs once: its return is checked
	docs := make(chan rules.Document, 16)
	var answered atomic.Int32 // nil Documents: the server answered, with no item
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Watch(ctx, func(d rules.Document) {
			if d.Data == nil {
				answered.Add(1)
				return
			}
			docs <- rules.Document{Data: append([]byte(nil), d.Data...), Version: d.Version}
		})
	}()
	meshtest.WaitFor(t, 5*time.Second, "missing item logged", func() bool { return strings.Contains(logs.String(), "does not exist") })
	meshtest.WaitFor(t, 5*time.Second, "an answer without an item", func() bool { return answered.Load() >= 1 })
	// The absence is delivered and logged once, not once a read (the
	// health check, which reads another item every second, says nothing).
	time.Sleep(2500 * time.Millisecond)
	if n := logs.Count("does not exist"); n != 1 {
		t.Errorf("the missing item was logged %d times, want once", n)
	}
	if n := answered.Load(); n != 1 {
		t.Errorf("the missing item was delivered %d times, want once", n)
	}
	v := pub.publish(t, dataID, "first")
	expectDoc(t, docs, "first", v, 15*time.Second)
	time.Sleep(250 * time.Millisecond)
	pub.remove(t, dataID)
	meshtest.WaitFor(t, 5*time.Second, "deletion logged", func() bool { return strings.Contains(logs.String(), "deleted or emptied") })
	time.Sleep(250 * time.Millisecond)
	eventually(t, "the one-shot Publish", func() error { return Publish(cfg, dataID, group, "second") })
	expectDoc(t, docs, "second", md5hex("second"), 5*time.Second)
	if got := fetch(t, cfg, dataID, group); got != "second" {
		t.Fatalf("Fetch = %q; want what Publish wrote", got)
	}
	if got := fetch(t, cfg, dataID+"-missing", group); got != "" {
		t.Fatalf("Fetch of a missing item = %q; want empty", got)
	}

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
	dir := src.cat.dir
	if dir == "" {
		t.Fatal("no private directory")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("private directory: %v", err)
	}
	src.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("private directory %s still there after Close: %v", dir, err)
	}
	if err := src.Watch(context.Background(), func(rules.Document) {}); !errors.Is(err, errClosed) {
		t.Fatalf("Watch after Close: %v", err)
	}
	if strings.Contains(logs.String(), "panic") {
		t.Fatalf("logs mention a panic:\n%s", logs)
	}
}

func expectDoc(t *testing.T, docs <-chan rules.Document, data, version string, d time.Duration) {
	t.Helper()
	select {
	case doc := <-docs:
		if string(doc.Data) != data || doc.Version != version {
			t.Fatalf("got %q version %s, want %q version %s", doc.Data, doc.Version, data, version)
		}
	case <-time.After(d):
		t.Fatalf("no document %q within %v", data, d)
	}
}

// TestRuleSourceUnreachable: a server that does not answer makes Watch
// fail with an error (so the mesh backs off and retries), not hang.
func TestRuleSourceUnreachable(t *testing.T) {
	cfg := Config{Addresses: []string{"127.0.0.1:1"}, TimeoutMs: 500}
	src, err := NewRuleSource(cfg, "x", "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err = src.Watch(ctx, func(rules.Document) { t.Error("delivered from nowhere") })
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Watch = %v after %v, want an error before the deadline", err, time.Since(start))
	}
	t.Logf("Watch failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
}
