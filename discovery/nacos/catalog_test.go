package nacos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/rules"
)

// catalogTestGroup is the group the catalog tests write their items in;
// every test uses dataIds of its own and deletes them.
const catalogTestGroup = "LIGHTMESH_TEST"

// catalogWatcher runs one Catalog.Watch in the background and records
// what it delivers.
type catalogWatcher struct {
	docs   chan rules.Document
	cancel context.CancelFunc
	done   chan error
}

func watchCatalog(tb testing.TB, c *Catalog, name string) *catalogWatcher {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &catalogWatcher{docs: make(chan rules.Document, 64), cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- c.Watch(ctx, name, func(d rules.Document) {
			if d.Data != nil {
				d.Data = append([]byte(nil), d.Data...)
			}
			w.docs <- d
		})
	}()
	tb.Cleanup(func() { w.stop(tb) })
	return w
}

// stop cancels the watch and returns what Watch returned.
func (w *catalogWatcher) stop(tb testing.TB) error {
	tb.Helper()
	w.cancel()
	return w.wait(tb, 10*time.Second)
}

// wait returns what Watch returned, failing tb when it has not returned
// within d. It may be called again.
func (w *catalogWatcher) wait(tb testing.TB, d time.Duration) error {
	tb.Helper()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(d):
		tb.Fatalf("Watch did not return within %v", d)
		return nil
	}
}

// next returns the next delivery, failing tb when there is none within
// d; content "" expects the nil Document.
func (w *catalogWatcher) next(tb testing.TB, content string, d time.Duration) time.Duration {
	tb.Helper()
	start := time.Now()
	select {
	case doc := <-w.docs:
		switch {
		case content == "" && doc.Data != nil:
			tb.Fatalf("got %q version %s, want the nil Document", doc.Data, doc.Version)
		case content != "" && (string(doc.Data) != content || doc.Version != md5hex(content)):
			tb.Fatalf("got %q version %q, want %q version %s", doc.Data, doc.Version, content, md5hex(content))
		}
	case err := <-w.done:
		w.done <- err
		tb.Fatalf("Watch returned %v while %q was awaited", err, content)
	case <-time.After(d):
		tb.Fatalf("no delivery of %q within %v", content, d)
	}
	return time.Since(start)
}

// quiet fails tb when anything is delivered within d.
func (w *catalogWatcher) quiet(tb testing.TB, d time.Duration) {
	tb.Helper()
	select {
	case doc := <-w.docs:
		tb.Fatalf("unexpected delivery %q version %s", doc.Data, doc.Version)
	case <-time.After(d):
	}
}

// newTestCatalog returns a catalog of the server in cfg whose client has
// connected.
func newTestCatalog(tb testing.TB, cfg Config, group string) *Catalog {
	tb.Helper()
	c := newUnconnectedCatalog(tb, cfg, group)
	connectCatalog(tb, c)
	return c
}

// newUnconnectedCatalog returns a catalog of the servers in cfg, which
// may not be there, closed when the test ends.
func newUnconnectedCatalog(tb testing.TB, cfg Config, group string) *Catalog {
	tb.Helper()
	c, err := NewCatalog(cfg, group)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// connectCatalog makes c's config client connect, which it does on its
// first request: a Watch run once would make that request itself and
// end with an error after two tries.
func connectCatalog(tb testing.TB, c *Catalog) {
	tb.Helper()
	eventually(tb, "the catalog's first read", func() error {
		_, err := c.get(c.health)
		if isRefused(err) {
			return nil
		}
		return err
	})
}

// watchers returns how many watches share the item name, and whether
// its SDK listener is registered; -1 when the catalog has no such item.
func (c *Catalog) watchersOf(name string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it := c.items[name]
	if it == nil {
		return -1, false
	}
	return len(it.watchers), it.listening
}

// TestCatalogNames checks the names a Catalog gives itself and its
// documents, the default group, that a name Nacos cannot take is refused
// without asking the server, and that Watch fails after Close.
func TestCatalogNames(t *testing.T) {
	cfg := Config{Addresses: []string{"127.0.0.1:1"}, TimeoutMs: 500, Password: "pw-not-shown"}
	c := newUnconnectedCatalog(t, cfg, "")
	if got, want := c.String(), "nacos:public/lightmesh/"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if got, want := c.Describe("user-api"), "nacos:public/lightmesh/user-api"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	cfg.NamespaceID = "staging"
	c2 := newUnconnectedCatalog(t, cfg, "RULES")
	if got, want := c2.Describe(rules.DefaultsName), "nacos:staging/RULES/_defaults"; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "a/b", "user api", "é"} {
		err := c.Watch(context.Background(), bad, func(rules.Document) { t.Error("delivered") })
		if err == nil || !strings.Contains(err.Error(), "dataId") {
			t.Errorf("Watch(%q) = %v, want a dataId error", bad, err)
		}
	}
	dir := c.dir
	c.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("private directory %s still there after Close: %v", dir, err)
	}
	if err := c.Watch(context.Background(), "user-api", func(rules.Document) {}); !errors.Is(err, errClosed) {
		t.Errorf("Watch after Close = %v, want errClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestCatalogTwoNames: two documents watched through one catalog each
// deliver their own content and their own later changes, and nothing of
// the other's.
func TestCatalogTwoNames(t *testing.T) {
	cfg := testConfig(t)
	pub := newPublisher(t, cfg, catalogTestGroup)
	a, b := unique("lm-cat-a"), unique("lm-cat-b")
	t.Cleanup(func() { pub.remove(t, a); pub.remove(t, b) })
	pub.publish(t, a, "a: 1")
	pub.publish(t, b, "b: 1")
	c := newTestCatalog(t, cfg, catalogTestGroup)
	wa, wb := watchCatalog(t, c, a), watchCatalog(t, c, b)
	wa.next(t, "a: 1", 5*time.Second)
	wb.next(t, "b: 1", 5*time.Second)

	// The SDK registers listeners on a 5 s timer: the first change may
	// take that long.
	start := time.Now()
	pub.publish(t, a, "a: 2")
	wa.next(t, "a: 2", 8*time.Second)
	t.Logf("first change of a delivered %v after its publish", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	pub.publish(t, b, "b: 2")
	wb.next(t, "b: 2", 5*time.Second)
	t.Logf("change of b delivered %v after its publish", time.Since(start).Round(time.Millisecond))
	time.Sleep(250 * time.Millisecond) // the SDK reads one item at most ~5 times a second
	start = time.Now()
	pub.publish(t, a, "a: 3")
	wa.next(t, "a: 3", 5*time.Second)
	t.Logf("later change of a delivered %v after its publish", time.Since(start).Round(time.Millisecond))
	wa.quiet(t, 200*time.Millisecond)
	wb.quiet(t, 0)
}

// TestCatalogMissingAndDeleted: a document that does not exist delivers
// the nil Document, then its content once published; deleting it
// delivers the nil Document, and publishing it again the new content.
func TestCatalogMissingAndDeleted(t *testing.T) {
	cfg := testConfig(t)
	pub := newPublisher(t, cfg, catalogTestGroup)
	name := unique("lm-cat-missing")
	t.Cleanup(func() { pub.remove(t, name) })
	c := newTestCatalog(t, cfg, catalogTestGroup)
	w := watchCatalog(t, c, name)
	w.next(t, "", 5*time.Second)
	start := time.Now()
	pub.publish(t, name, "x: 1")
	w.next(t, "x: 1", 8*time.Second)
	t.Logf("published item delivered %v after its publish", time.Since(start).Round(time.Millisecond))
	time.Sleep(250 * time.Millisecond)
	start = time.Now()
	pub.remove(t, name)
	w.next(t, "", 5*time.Second)
	t.Logf("deletion delivered %v after it", time.Since(start).Round(time.Millisecond))
	time.Sleep(250 * time.Millisecond)
	pub.publish(t, name, "x: 2")
	w.next(t, "x: 2", 5*time.Second)
	w.quiet(t, 200*time.Millisecond)
}

// TestCatalogSharedName: watches of the same name share one SDK listener
// and each gets every change; a watch joining gets the current content
// at once; when one leaves the other still gets changes; when the last
// leaves the listener is cancelled.
func TestCatalogSharedName(t *testing.T) {
	cfg := testConfig(t)
	pub := newPublisher(t, cfg, catalogTestGroup)
	name := unique("lm-cat-shared")
	t.Cleanup(func() { pub.remove(t, name) })
	pub.publish(t, name, "v: 1")
	c := newTestCatalog(t, cfg, catalogTestGroup)
	w1, w2 := watchCatalog(t, c, name), watchCatalog(t, c, name)
	w1.next(t, "v: 1", 5*time.Second)
	w2.next(t, "v: 1", 5*time.Second)
	if n, listening := c.watchersOf(name); n != 2 || !listening {
		t.Fatalf("item has %d watchers, listening %v; want 2 sharing one listener", n, listening)
	}
	pub.publish(t, name, "v: 2")
	w1.next(t, "v: 2", 8*time.Second)
	w2.next(t, "v: 2", time.Second)

	if err := w1.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped Watch returned %v, want context.Canceled", err)
	}
	if n, listening := c.watchersOf(name); n != 1 || !listening {
		t.Fatalf("after one left: %d watchers, listening %v; want 1, still listening", n, listening)
	}
	time.Sleep(250 * time.Millisecond)
	start := time.Now()
	pub.publish(t, name, "v: 3")
	w2.next(t, "v: 3", 5*time.Second)
	t.Logf("change delivered %v after its publish to the remaining watcher", time.Since(start).Round(time.Millisecond))

	// A third joins: the content is known, it needs no read.
	w3 := watchCatalog(t, c, name)
	if d := w3.next(t, "v: 3", time.Second); d > 100*time.Millisecond {
		t.Errorf("joining watcher got the content after %v, want at once", d)
	}
	w2.stop(t)
	w3.stop(t)
	if n, _ := c.watchersOf(name); n != -1 {
		t.Fatalf("after all left the item still has %d watchers", n)
	}
	// Changed while nobody watches, then watched again: a new item, with
	// the content read afresh. (The server answers reads from a cache it
	// updates just after a publish returns.)
	time.Sleep(250 * time.Millisecond)
	pub.publish(t, name, "v: 4")
	meshtest.WaitFor(t, 5*time.Second, "the server to serve v: 4", func() bool {
		got, err := pub.client.get(name, catalogTestGroup)
		return err == nil && got == "v: 4"
	})
	w4 := watchCatalog(t, c, name)
	w4.next(t, "v: 4", 5*time.Second)
}

// TestCatalogLatestWins publishes versions of a document back to back:
// the deliveries never go back to an older version, and the last one is
// the last published.
func TestCatalogLatestWins(t *testing.T) {
	cfg := testConfig(t)
	pub := newPublisher(t, cfg, catalogTestGroup)
	name := unique("lm-cat-order")
	t.Cleanup(func() { pub.remove(t, name) })
	pub.publish(t, name, "n: 0")
	c := newTestCatalog(t, cfg, catalogTestGroup)
	w1, w2 := watchCatalog(t, c, name), watchCatalog(t, c, name)
	w1.next(t, "n: 0", 5*time.Second)
	w2.next(t, "n: 0", 5*time.Second)
	pub.publish(t, name, "n: 1") // once through: the listener is registered
	w1.next(t, "n: 1", 8*time.Second)
	w2.next(t, "n: 1", time.Second)

	const last = 12
	for i := 2; i <= last; i++ {
		pub.publish(t, name, fmt.Sprintf("n: %d", i))
	}
	for _, w := range []*catalogWatcher{w1, w2} {
		seen, prev := 0, 1
		deadline := time.After(8 * time.Second)
		for prev != last {
			select {
			case doc := <-w.docs:
				n, err := strconv.Atoi(strings.TrimPrefix(string(doc.Data), "n: "))
				if err != nil || n <= prev {
					t.Fatalf("delivered %q after n: %d", doc.Data, prev)
				}
				prev = n
				seen++
			case <-deadline:
				t.Fatalf("last delivery n: %d, want n: %d", prev, last)
			}
		}
		t.Logf("%d versions published back to back: %d delivered, in order, ending with the last", last-1, seen)
		w.quiet(t, 300*time.Millisecond)
	}
}

// TestCatalogOneConnection: one catalog watching 30 documents, plus the
// defaults, talks to Nacos over as many gRPC connections as it does
// watching one: one.
func TestCatalogOneConnection(t *testing.T) {
	cfg := testConfig(t)
	pub := newPublisher(t, cfg, catalogTestGroup)
	names := make([]string, 30)
	for i := range names {
		names[i] = unique(fmt.Sprintf("lm-cat-conn%02d", i))
	}
	t.Cleanup(func() {
		for _, n := range names {
			pub.remove(t, n)
		}
	})
	for _, n := range names[:10] {
		pub.publish(t, n, "name: "+n)
	}
	content := func(i int) string {
		if i < 10 {
			return "name: " + names[i]
		}
		return ""
	}
	base := grpcConns(t, cfg)
	c := newTestCatalog(t, cfg, catalogTestGroup)
	first := watchCatalog(t, c, names[0])
	first.next(t, content(0), 5*time.Second)
	one := grpcConns(t, cfg) - base
	if one != 1 {
		t.Errorf("one watch opened %d connections to Nacos, want 1", one)
	}
	ws := []*catalogWatcher{first}
	for i, n := range names[1:] {
		w := watchCatalog(t, c, n)
		ws = append(ws, w)
		w.next(t, content(i+1), 5*time.Second)
	}
	watchCatalog(t, c, rules.DefaultsName).next(t, "", 5*time.Second)
	if n := grpcConns(t, cfg) - base; n != one {
		t.Errorf("31 watches use %d connections to Nacos, one used %d", n, one)
	}
	// Through a listen round: the listeners reach the server over the same
	// connection.
	pub.publish(t, names[29], "changed: 1")
	ws[29].next(t, "changed: 1", 8*time.Second)
	if n := grpcConns(t, cfg) - base; n != one {
		t.Errorf("after a listen round 31 watches use %d connections to Nacos, want %d", n, one)
	}
	t.Logf("connections to Nacos's gRPC port: %d for one watch, %d for 31", one, grpcConns(t, cfg)-base)
}

// grpcConns counts this process's established TCP connections to the
// gRPC port (HTTP port + 1000) of cfg's first server: the sockets in
// /proc/self/net/tcp and tcp6 whose inode is one of this process's file
// descriptors.
func grpcConns(tb testing.TB, cfg Config) int {
	tb.Helper()
	servers, err := cfg.servers()
	if err != nil {
		tb.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	port := fmt.Sprintf(":%04X", servers[0].GrpcPort)
	n := 0
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && strings.HasSuffix(fields[2], port) && fields[3] == "01" && mine[fields[9]] {
				n++
			}
		}
		f.Close()
	}
	return n
}

// TestCatalogClose: Close ends every Watch with an error, promptly, and
// later Watch calls fail.
func TestCatalogClose(t *testing.T) {
	cfg := testConfig(t)
	pub := newPublisher(t, cfg, catalogTestGroup)
	name := unique("lm-cat-close")
	t.Cleanup(func() { pub.remove(t, name) })
	pub.publish(t, name, "c: 1")
	c := newTestCatalog(t, cfg, catalogTestGroup)
	w1, w2 := watchCatalog(t, c, name), watchCatalog(t, c, name+"-missing")
	w1.next(t, "c: 1", 5*time.Second)
	w2.next(t, "", 5*time.Second)
	dir := c.dir
	start := time.Now()
	c.Close()
	t.Logf("Close took %v", time.Since(start).Round(time.Millisecond))
	for _, w := range []*catalogWatcher{w1, w2} {
		if err := w.wait(t, 2*time.Second); !errors.Is(err, errClosed) {
			t.Fatalf("Watch after Close returned %v, want errClosed", err)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("private directory %s still there after Close: %v", dir, err)
	}
	if err := c.Watch(context.Background(), name, func(rules.Document) {}); !errors.Is(err, errClosed) {
		t.Fatalf("Watch after Close = %v", err)
	}
}

// TestCatalogUnreachable: against an address where nothing listens,
// Watch fails with an error, in bounded time, that shows no credential.
func TestCatalogUnreachable(t *testing.T) {
	const password, secretKey = "Pw-catalog-9q", "Sk-catalog-7z"
	cfg := Config{Addresses: []string{"127.0.0.1:1"}, TimeoutMs: 500, Username: "ops", Password: password, AccessKey: "ak", SecretKey: secretKey}
	c := newUnconnectedCatalog(t, cfg, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	err := c.Watch(ctx, "user-api", func(rules.Document) { t.Error("delivered from nowhere") })
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Watch = %v after %v, want an error before the deadline", err, time.Since(start))
	}
	t.Logf("Watch failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	seen := meshtest.Exposure{}
	seen.AddErr("Watch", err)
	seen.Add("String", c.String()+" "+c.Describe("user-api"))
	seen.Check(t, password, secretKey)
}

// TestCatalogOutage runs the catalog through a TCP relay to the real
// server and cuts it: the health check must end every Watch with an
// error within a few seconds, a Watch made once the relay is back must
// deliver what was published during the outage, and later changes must
// arrive again. The SDK's
// reconnection has data races of its own, so, like the fault tests, it
// runs only without -race.
func TestCatalogOutage(t *testing.T) {
	cfg := testConfig(t)
	skipUnderRace(t)
	pub := newPublisher(t, cfg, catalogTestGroup)
	name := unique("lm-cat-outage")
	t.Cleanup(func() { pub.remove(t, name) })
	pub.publish(t, name, "o: 1")
	r := startRelay(t, cfg.Addresses[0])
	relayed := cfg
	relayed.Addresses = []string{r.addr}
	c := newTestCatalog(t, relayed, catalogTestGroup)
	w1, w2 := watchCatalog(t, c, name), watchCatalog(t, c, name+"-other")
	w1.next(t, "o: 1", 5*time.Second)
	w2.next(t, "", 5*time.Second)

	start := time.Now()
	r.cut()
	for _, w := range []*catalogWatcher{w1, w2} {
		err := w.wait(t, 8*time.Second)
		if err == nil || !strings.Contains(err.Error(), "health check") {
			t.Fatalf("Watch during the outage returned %v, want a health check error", err)
		}
	}
	t.Logf("outage ended the watches after %v", time.Since(start).Round(time.Millisecond))
	pub.publish(t, name, "o: 2") // missed: nothing listens meanwhile
	r.restore()
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	got := make(chan string, 16)
	for {
		err := c.Watch(ctx, name, func(d rules.Document) {
			got <- string(d.Data)
			cancel()
		})
		if ctx.Err() != nil {
			break
		}
		t.Logf("Watch after the outage: %v; retrying", err)
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case s := <-got:
		if s != "o: 2" {
			t.Fatalf("after the outage got %q, want the content published during it", s)
		}
	default:
		t.Fatal("nothing delivered after the outage")
	}
	t.Logf("after the relay came back, delivered in %v", time.Since(start).Round(time.Millisecond))

	// The reconnected client listens again: a change arrives.
	w := watchCatalog(t, c, name)
	w.next(t, "o: 2", 5*time.Second)
	start = time.Now()
	pub.publish(t, name, "o: 3")
	w.next(t, "o: 3", 8*time.Second)
	t.Logf("change after the outage delivered %v after its publish", time.Since(start).Round(time.Millisecond))
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// TestCatalogHearsPushesTheSDKLoses: nacos-sdk-go can lose a push (see
// hearPushes), so a catalog answers the server's pushes on its own
// connection and reads the pushed item itself. The SDK's listener is cancelled here, as
// losing the push would leave it uncalled; the server still pushes to
// the connection, and the change must arrive well before the 30 s
// re-read.
func TestCatalogHearsPushesTheSDKLoses(t *testing.T) {
	pub, name, c, w := listenedItem(t, testConfig(t), "lm-cat-lost")
	c.client.sdk.CancelListenConfig(vo.ConfigParam{DataId: name, Group: catalogTestGroup})
	time.Sleep(250 * time.Millisecond) // the SDK reads one item at most ~5 times a second
	start := time.Now()
	pub.publish(t, name, "v: 3")
	w.next(t, "v: 3", 10*time.Second) // the re-read comes 30 s after the last read
	t.Logf("change delivered %v after its publish, with the SDK's listener gone", time.Since(start).Round(time.Millisecond))
}

// TestCatalogMissingDefaultsIsQuiet: the health check reads an item that
// never exists (healthItem) every second, and must not log a warning for
// each read (the SDK logs one for every read that finds no failover
// file); a fleet without defaults logs nothing either, and most services
// have no document of their own, so a missing one is not logged on the
// default logger.
func TestCatalogMissingDefaultsIsQuiet(t *testing.T) {
	cfg := testConfig(t)
	buf := meshtest.CaptureDefaultLog(t)
	var sdk meshtest.LogBuffer
	c := newTestCatalog(t, cfg, unique("lm-quiet"))
	mark := len(buf.String()) // what connecting took, retries included, is not judged
	w := watchCatalog(t, c, "user-api")
	w.next(t, "", 5*time.Second)
	time.Sleep(2500 * time.Millisecond) // two or three health reads
	if out := buf.String()[mark:]; strings.Contains(out, "user-api") || strings.Contains(out, "_defaults") || strings.Contains(out, "_lightmesh_health") {
		t.Errorf("a missing document is logged on the default logger:\n%s", out)
	}
	// With a Config.Logger, which also takes the SDK's output.
	cfg.Logger = slog.New(slog.NewTextHandler(&sdk, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c = newTestCatalog(t, cfg, unique("lm-quiet"))
	mark = len(sdk.String())
	w = watchCatalog(t, c, "user-api")
	w.next(t, "", 5*time.Second)
	time.Sleep(2500 * time.Millisecond)
	if out := sdk.String()[mark:]; strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Errorf("a healthy catalog watching a missing item logged warnings:\n%s", out)
	}
}

// TestCatalogWarnsWhenADocumentCannotBeRead: when the reads of one
// document keep failing (here the SDK's process-wide limit of about 5
// reads a second per item, spent by another SDK client of the process
// polling the same item), its changes are not applied: the catalog says
// so at Warn once, with the document and the error, says when it reads
// it again, and then delivers the change. Without a Config.Logger these
// lines go to slog.Default(), as the mesh's.
func TestCatalogWarnsWhenADocumentCannotBeRead(t *testing.T) {
	cfg := testConfig(t)
	buf := meshtest.CaptureDefaultLog(t)
	pub, name, _, w := listenedItem(t, cfg, "lm-cat-stuck")

	// Another client spends the item's read limit until the warning.
	stop := starveReads(t, cfg, name)
	time.Sleep(300 * time.Millisecond)
	pub.publish(t, name, "v: 3")
	defer func() {
		if t.Failed() {
			t.Logf("logged:\n%s", buf.String())
		}
	}()
	awaitStarvedReads(t, buf, "read failed; its last good rules keep serving; retrying", name, stop, w, "v: 3")
	if n := strings.Count(buf.String(), "level=WARN msg=\"lightmesh: nacos rule document read failed"); n != 1 {
		t.Errorf("%d warnings of failed reads, want 1 for the streak:\n%s", n, buf.String())
	}
}

// listenedItem publishes an item (v: 1, then v: 2) in catalogTestGroup
// and returns a catalog watching it once the catalog has heard the
// change: the server then pushes the item's changes to the catalog's
// connection (the SDK registers its listener on a 5 s timer).
func listenedItem(t *testing.T, cfg Config, prefix string) (*publisher, string, *Catalog, *catalogWatcher) {
	t.Helper()
	pub := newPublisher(t, cfg, catalogTestGroup)
	name := unique(prefix)
	t.Cleanup(func() { pub.remove(t, name) })
	pub.publish(t, name, "v: 1")
	c := newTestCatalog(t, cfg, catalogTestGroup)
	w := watchCatalog(t, c, name)
	w.next(t, "v: 1", 5*time.Second)
	pub.publish(t, name, "v: 2")
	w.next(t, "v: 2", 8*time.Second)
	return pub, name, c, w
}

// TestCatalogWarnsWhenAFirstReadIsStarved: a first read the SDK's read
// limit keeps refusing is retried without end (it is not the server
// failing); after five refusals in a row the catalog warns, so that a
// document the mesh waits for is not waited for in silence, and says when
// it is read.
func TestCatalogWarnsWhenAFirstReadIsStarved(t *testing.T) {
	cfg := testConfig(t)
	var buf meshtest.LogBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pub := newPublisher(t, cfg, catalogTestGroup)
	name := unique("lm-cat-first")
	t.Cleanup(func() { pub.remove(t, name) })
	pub.publish(t, name, "v: 1")
	c := newTestCatalog(t, cfg, catalogTestGroup)
	stop := starveReads(t, cfg, name)
	time.Sleep(300 * time.Millisecond)
	w := watchCatalog(t, c, name)
	awaitStarvedReads(t, &buf, "read failed; retrying", name, stop, w, "v: 1")
}

// starveReads spends the SDK's process-wide read limit of item name (5
// reads a second) from another SDK client of the process until the
// returned stop is called (at most 30 s); stop returns once it has
// stopped.
func starveReads(t *testing.T, cfg Config, name string) (stop func()) {
	t.Helper()
	cfg.Logger = nil
	// newPublisher's first read connects the client: the SDK connects on
	// the first request without synchronization, so concurrent first
	// requests race.
	poller := newPublisher(t, cfg, catalogTestGroup)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				poller.client.get(name, catalogTestGroup)
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return func() { cancel(); wg.Wait() }
}

// awaitStarvedReads waits for the catalog's warning, "lightmesh: nacos
// rule document " and msg, after five failed reads of item name, then
// stops the starving, and waits for the delivery of content and the line
// saying the item was read again.
func awaitStarvedReads(t *testing.T, buf *meshtest.LogBuffer, msg, name string, stopStarving func(), w *catalogWatcher, content string) {
	t.Helper()
	document := "document=nacos:public/" + catalogTestGroup + "/" + name
	meshtest.WaitFor(t, 15*time.Second, "the warning", func() bool {
		return strings.Contains(buf.String(), "level=WARN msg=\"lightmesh: nacos rule document "+msg+"\" "+document+" failures_in_a_row=5")
	})
	stopStarving()
	w.next(t, content, 5*time.Second)
	meshtest.WaitFor(t, 2*time.Second, "the recovery", func() bool {
		return strings.Contains(buf.String(), "msg=\"lightmesh: nacos rule document read again\" "+document)
	})
}
