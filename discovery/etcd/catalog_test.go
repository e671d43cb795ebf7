package etcd

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/rules"
)

const catalogPrefix = "/lightmesh-test/rules"

// catalogWatch is one Catalog.Watch call running in its own goroutine.
type catalogWatch struct {
	docs   chan rules.Document // copies of the delivered documents
	cancel context.CancelFunc
	done   chan struct{} // closed when Watch returned
	err    error         // Watch's result, set before done is closed
}

// watchCatalog starts c.Watch(name); the watch is cancelled, and waited
// for, when t ends.
func watchCatalog(t *testing.T, c *Catalog, name string) *catalogWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &catalogWatch{docs: make(chan rules.Document, 64), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.err = c.Watch(ctx, name, func(d rules.Document) {
			select {
			case w.docs <- rules.Document{Data: bytes.Clone(d.Data), Version: d.Version}: // Clone keeps nil nil
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			t.Errorf("Watch(%q) did not return within 5s of its cancellation", name)
		}
	})
	return w
}

// wait returns Watch's result, failing t when it has not returned within d.
func (w *catalogWatch) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-w.done:
		return w.err
	case <-time.After(d):
		t.Fatalf("Watch did not return within %v", d)
		return nil
	}
}

// expectNoDocument waits for the nil Document: etcd answered, and the key
// does not exist.
func expectNoDocument(t *testing.T, docs <-chan rules.Document) {
	t.Helper()
	select {
	case d := <-docs:
		if d.Data != nil {
			t.Fatalf("got document %q version %s, want nil Data", d.Data, d.Version)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no nil Document within 5s")
	}
}

// rpcCounts counts what a client sends: health check reads of one key and
// watch streams.
type rpcCounts struct {
	healthKey    string
	healthReads  atomic.Int64
	watchStreams atomic.Int64
}

// countingClient returns a client of srv whose count-only reads of
// healthKey and opened watch streams are counted, closed when t ends.
func countingClient(t *testing.T, srv *etcdtest.Server, healthKey string) (*clientv3.Client, *rpcCounts) {
	t.Helper()
	counts := &rpcCounts{healthKey: healthKey}
	cfg := etcdtest.NewClientConfig(srv.Endpoint())
	cfg.DialOptions = append(cfg.DialOptions,
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if r, ok := req.(*pb.RangeRequest); ok && r.CountOnly && string(r.Key) == counts.healthKey {
				counts.healthReads.Add(1)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if method == "/etcdserverpb.Watch/Watch" {
				counts.watchStreams.Add(1)
			}
			return streamer(ctx, desc, cc, method, opts...)
		}),
	)
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, counts
}

// TestCatalogNames checks the key layout and that each name gets its own
// document: the current value with its mod revision, then its own later
// puts and never another name's; String and Describe name the prefix
// without the trailing slash it was given with.
func TestCatalogNames(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	cat := NewCatalog(cli, catalogPrefix+"//")
	if got, want := cat.String(), "etcd:"+catalogPrefix+"/"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := cat.Describe("user-api"), "etcd:"+catalogPrefix+"/user-api"; got != want {
		t.Errorf("Describe(user-api) = %q, want %q", got, want)
	}
	u1 := put(t, cli, catalogPrefix+"/user-api", "user one")
	o1 := put(t, cli, catalogPrefix+"/order-api", "order one")
	d1 := put(t, cli, catalogPrefix+"/"+rules.DefaultsName, "defaults one")
	user, order, defaults := watchCatalog(t, cat, "user-api"), watchCatalog(t, cat, "order-api"), watchCatalog(t, cat, rules.DefaultsName)
	expectDoc(t, user.docs, "user one", u1)
	expectDoc(t, order.docs, "order one", o1)
	expectDoc(t, defaults.docs, "defaults one", d1)

	// Each watcher's next document is its own key's next put: a watcher
	// that saw another key's change would see it first.
	u2 := put(t, cli, catalogPrefix+"/user-api", "user two")
	o2 := put(t, cli, catalogPrefix+"/order-api", "order two")
	d2 := put(t, cli, catalogPrefix+"/"+rules.DefaultsName, "defaults two")
	expectDoc(t, user.docs, "user two", u2)
	expectDoc(t, order.docs, "order two", o2)
	expectDoc(t, defaults.docs, "defaults two", d2)
	// A key beside the layout (a deeper one) is nobody's document.
	put(t, cli, catalogPrefix+"/user-api/extra", "not a document")
	u3 := put(t, cli, catalogPrefix+"/user-api", "user three")
	expectDoc(t, user.docs, "user three", u3)
}

// TestCatalogMissingKey watches a name with no key: the nil Document comes
// first and the watch goes on, delivering the value as soon as it is put.
func TestCatalogMissingKey(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	cat := NewCatalog(cli, catalogPrefix)
	w := watchCatalog(t, cat, "later")
	expectNoDocument(t, w.docs)
	start := time.Now()
	rev := put(t, cli, catalogPrefix+"/later", "now")
	expectDoc(t, w.docs, "now", rev)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("document delivered %v after its put; want it at once", d)
	}
	select {
	case <-w.done:
		t.Fatalf("Watch returned %v while the key existed", w.err)
	default:
	}
}

// TestCatalogDelete deletes a watched key: the deletion is delivered as
// the nil Document, and a later put as the new document. An empty value
// is a document (empty Data, not nil).
func TestCatalogDelete(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	cat := NewCatalog(cli, catalogPrefix)
	key := catalogPrefix + "/user-api"
	r1 := put(t, cli, key, "one")
	w := watchCatalog(t, cat, "user-api")
	expectDoc(t, w.docs, "one", r1)
	del(t, cli, key)
	expectNoDocument(t, w.docs)
	r2 := put(t, cli, key, "two")
	expectDoc(t, w.docs, "two", r2)
	r3 := put(t, cli, key, "")
	select {
	case d := <-w.docs:
		if d.Data == nil || len(d.Data) != 0 || d.Version != strconv.FormatInt(r3, 10) {
			t.Fatalf("empty value delivered as %#v version %s, want empty non-nil Data version %d", d.Data, d.Version, r3)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("empty value not delivered within 5s")
	}
}

// TestCatalogConcurrentWatchers runs two watchers of one name at once, as
// two meshes sharing a catalog do: both get the current value and every
// later put.
func TestCatalogConcurrentWatchers(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	cat := NewCatalog(cli, catalogPrefix)
	key := catalogPrefix + "/shared"
	r1 := put(t, cli, key, "one")
	a, b := watchCatalog(t, cat, "shared"), watchCatalog(t, cat, "shared")
	expectDoc(t, a.docs, "one", r1)
	expectDoc(t, b.docs, "one", r1)
	r2 := put(t, cli, key, "two")
	expectDoc(t, a.docs, "two", r2)
	expectDoc(t, b.docs, "two", r2)
	// One watcher ending leaves the other watching.
	a.cancel()
	if err := a.wait(t, 5*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled watcher returned %v, want context.Canceled", err)
	}
	r3 := put(t, cli, key, "three")
	expectDoc(t, b.docs, "three", r3)
}

// TestCatalogSharedHealthCheck watches 50 names of one catalog and counts
// the health check's reads: one per interval for the whole catalog, not
// one per watch, on one watch stream; when the last watch ends the check
// stops.
func TestCatalogSharedHealthCheck(t *testing.T) {
	srv := etcdtest.Start(t)
	const interval = 50 * time.Millisecond
	cli, counts := countingClient(t, srv, catalogPrefix+"/")
	cat := NewCatalog(cli, catalogPrefix, WithHealthInterval(interval))
	watches := make([]*catalogWatch, 50)
	for i := range watches {
		watches[i] = watchCatalog(t, cat, fmt.Sprintf("svc-%02d", i))
	}
	for _, w := range watches {
		expectNoDocument(t, w.docs)
	}
	before, start := counts.healthReads.Load(), time.Now()
	time.Sleep(20 * interval)
	reads, window := counts.healthReads.Load()-before, time.Since(start)
	if most := int64(window/interval) + 3; reads < 2 || reads > most {
		t.Errorf("%d health reads in %v with 50 watches, want 2..%d: one check per catalog", reads, window.Round(time.Millisecond), most)
	}
	if n := counts.watchStreams.Load(); n != 1 {
		t.Errorf("50 watches opened %d watch streams, want 1", n)
	}
	for _, w := range watches {
		w.cancel()
	}
	for _, w := range watches {
		if err := w.wait(t, 5*time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v after cancel, want context.Canceled", err)
		}
	}
	stopped := counts.healthReads.Load()
	time.Sleep(4 * interval)
	if n := counts.healthReads.Load() - stopped; n != 0 {
		t.Errorf("%d health reads after every watch ended, want none", n)
	}
}

// TestCatalogEtcdStopped stops etcd under the watches of one catalog,
// right after their first documents: every one of them ends with an
// error, not a silent wait, within the health interval plus the check's
// timeout (with room for the race detector). Stopping at once catches
// the watches whose creation the server has not yet confirmed: the etcd
// client holds those in its Watch call, where only the cancellation the
// failed check makes reaches them.
func TestCatalogEtcdStopped(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	const interval, timeout = 100 * time.Millisecond, 300 * time.Millisecond
	cat := NewCatalog(cli, catalogPrefix, WithHealthInterval(interval), WithRequestTimeout(timeout))
	rev := put(t, cli, catalogPrefix+"/user-api", "rules")
	names := []string{"user-api", "order-api", rules.DefaultsName}
	watches := make([]*catalogWatch, len(names))
	for i, name := range names {
		watches[i] = watchCatalog(t, cat, name)
	}
	expectDoc(t, watches[0].docs, "rules", rev)
	expectNoDocument(t, watches[1].docs)
	expectNoDocument(t, watches[2].docs)

	srv.Stop()
	stopped := time.Now()
	for i, w := range watches {
		err := w.wait(t, interval+timeout+2*time.Second)
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("Watch(%s) returned %v after etcd stopped, want the outage", names[i], err)
		}
		t.Logf("Watch(%s) ended %v after the stop: %v", names[i], time.Since(stopped).Round(time.Millisecond), err)
	}
}

// TestCatalogInvalidName checks that a name that cannot be one key
// segment is an error at once, with nothing delivered, and that a catalog
// without a client is an error.
func TestCatalogInvalidName(t *testing.T) {
	srv := etcdtest.Start(t)
	cat := NewCatalog(srv.Client(t), catalogPrefix)
	for _, name := range []string{"", "a/b", "/user-api", "user-api/", "bad\nname", strings.Repeat("x", 254)} {
		delivered := false
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cat.Watch(ctx, name, func(rules.Document) { delivered = true })
		cancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Watch(%.20q) = %v, want an invalid-name error", name, err)
		}
		if delivered {
			t.Errorf("Watch(%.20q) delivered a document", name)
		}
	}
	var none Catalog
	if err := none.Watch(context.Background(), "user-api", func(rules.Document) {}); err == nil {
		t.Error("Watch on a catalog without a client succeeded")
	}
}

// TestCatalogCancel checks that cancelling ctx ends a watch with
// ctx.Err(), whether the key exists or not.
func TestCatalogCancel(t *testing.T) {
	srv := etcdtest.Start(t)
	cli := srv.Client(t)
	cat := NewCatalog(cli, catalogPrefix)
	rev := put(t, cli, catalogPrefix+"/user-api", "rules")
	present, missing := watchCatalog(t, cat, "user-api"), watchCatalog(t, cat, "missing")
	expectDoc(t, present.docs, "rules", rev)
	expectNoDocument(t, missing.docs)
	for _, w := range []*catalogWatch{present, missing} {
		w.cancel()
		if err := w.wait(t, 5*time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v after cancel, want context.Canceled", err)
		}
	}
}

// TestCatalogOneConnection watches 50 names over one catalog and checks
// that the watches, their reads and the health check share one TCP
// connection to etcd and one watch stream on it: the connections from
// this process counted in /proc/self/net/tcp{,6} by their remote address,
// the server's listening address (the embedded server's own end of each
// connection has that address as its local one, so it is not counted).
func TestCatalogOneConnection(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/tcp"); err != nil {
		t.Skip("no /proc/self/net/tcp:", err)
	}
	srv := etcdtest.Start(t)
	cli, counts := countingClient(t, srv, catalogPrefix+"/")
	cat := NewCatalog(cli, catalogPrefix, WithHealthInterval(50*time.Millisecond))
	watches := make([]*catalogWatch, 50)
	for i := range watches {
		watches[i] = watchCatalog(t, cat, fmt.Sprintf("svc-%02d", i))
	}
	for _, w := range watches {
		expectNoDocument(t, w.docs)
	}
	revs := make([]int64, len(watches))
	for i := range watches {
		revs[i] = put(t, cli, fmt.Sprintf("%s/svc-%02d", catalogPrefix, i), "rules "+strconv.Itoa(i))
	}
	for i, w := range watches {
		expectDoc(t, w.docs, "rules "+strconv.Itoa(i), revs[i])
	}
	if n := establishedTo(t, srv.Endpoint()); n != 1 {
		t.Errorf("%d established TCP connections to etcd at %s with 50 watches, want 1", n, srv.Endpoint())
	}
	if n := counts.watchStreams.Load(); n != 1 {
		t.Errorf("50 watches opened %d watch streams, want 1", n)
	}
}

// establishedTo counts the established TCP connections whose remote end
// is addr (host:port) in /proc/self/net/tcp and tcp6.
func establishedTo(t *testing.T, addr string) int {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(host)
	wantPort, err := strconv.ParseUint(port, 10, 16)
	if ip == nil || err != nil {
		t.Fatalf("address %s: want a numeric host and port", addr)
	}
	n := 0
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(file, "6") {
			continue // no IPv6
		}
		if err != nil {
			t.Fatal(err)
		}
		// sl local_address rem_address st ...; the first line is the header.
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 4 || f[3] != "01" { // 01: TCP_ESTABLISHED
				continue
			}
			if rip, rport, ok := parseProcAddr(f[2]); ok && rport == wantPort && rip.Equal(ip) {
				n++
			}
		}
	}
	return n
}

// parseProcAddr parses an address of /proc/net/tcp{,6}: the IP in hex as
// 32-bit words in host byte order, a colon, the port
// in hex.
func parseProcAddr(s string) (net.IP, uint64, bool) {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, false
	}
	b, err := hex.DecodeString(h)
	if err != nil || (len(b) != net.IPv4len && len(b) != net.IPv6len) {
		return nil, 0, false
	}
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(b[i:]))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, false
	}
	return net.IP(b), port, true
}
