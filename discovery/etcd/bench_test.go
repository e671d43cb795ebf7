package etcd

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery/etcd/etcdtest"
	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// applied is one RulesEvent seen by the propagation benchmark's hook.
type applied struct {
	version string
	at      time.Time
}

// BenchmarkRulePropagation measures etcd put → rules live in a mesh: the
// time from Put returning to the mesh's WithOnRulesChange hook reporting
// that revision applied (the -with-put metrics count from the Put call's
// start instead). It publishes max(b.N, 50) documents one after another
// and reports the median, the 99th percentile and the maximum.
func BenchmarkRulePropagation(b *testing.B) {
	srv := etcdtest.Start(b)
	cli := srv.Client(b)
	const key = "/lightmesh-bench/rules"
	rev := put(b, cli, key, laneRules)
	seen := make(chan applied, 1024)
	m, err := mesh.New(context.Background(), mesh.WithRules(NewRuleSource(cli, key)),
		mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
			if ev.Err == nil {
				seen <- applied{ev.Version, time.Now()}
			}
		}))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	waitApplied(b, seen, strconv.FormatInt(rev, 10))

	n := max(b.N, 50)
	lat := make([]time.Duration, 0, n)
	withPut := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		doc := fmt.Sprintf("%s# update %d\n", laneRules, i)
		start := time.Now()
		resp, err := cli.Put(context.Background(), key, doc)
		if err != nil {
			b.Fatal(err)
		}
		published := time.Now()
		at := waitApplied(b, seen, strconv.FormatInt(resp.Header.Revision, 10))
		// The watch event can beat the Put's own response: that counts
		// as zero.
		lat = append(lat, max(at.Sub(published), 0))
		withPut = append(withPut, at.Sub(start))
	}
	b.StopTimer()
	meshtest.ReportLatency(b, lat, "")
	meshtest.ReportLatency(b, withPut, "-with-put")
	b.ReportMetric(float64(n), "updates")
}

func waitApplied(b *testing.B, seen <-chan applied, version string) time.Time {
	b.Helper()
	return meshtest.Next(b, seen, 10*time.Second, "application of version "+version,
		func(a applied) bool { return a.version == version }).at
}

// BenchmarkDiscoveryMemory measures the heap a mesh holds for 10,000
// instances discovered from etcd: HeapInuse after GC with a mesh watching
// them, minus HeapInuse with a mesh watching an empty service. The
// instances are written before either measurement, so the embedded etcd
// server's own copy is in both.
//
// Each iteration starts from scratch (its own server, client and meshes,
// all stopped before the next); the metrics are the mean over the
// iterations. Run it with -benchtime=5x or so.
func BenchmarkDiscoveryMemory(b *testing.B) {
	var sum float64
	for range b.N {
		base, with := discoveryHeap(b, 10_000)
		sum += float64(with) - float64(base)
	}
	b.ReportMetric(sum/float64(b.N)/(1<<20), "heap-MB-delta")
	b.ReportMetric(sum/float64(b.N)/10_000, "B/instance")
}

// discoveryHeap writes n instances under service "big" and returns
// HeapInuse (after GC) with a mesh watching an empty service, and after a
// second mesh has discovered the n instances.
func discoveryHeap(tb testing.TB, n int) (base, with uint64) {
	dir, err := os.MkdirTemp("", "lightmesh-etcd-mem")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.RemoveAll(dir)
	srv, err := etcdtest.New(dir)
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatal(err)
	}
	defer srv.Stop()
	cli, err := etcdtest.NewClient(srv.Endpoint())
	if err != nil {
		tb.Fatal(err)
	}
	defer cli.Close()
	writeInstances(tb, cli, "big", n)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := NewDiscovery(cli, testPrefix)
	empty, err := mesh.New(ctx, mesh.WithDiscovery(d), mesh.WithServices("empty"))
	if err != nil {
		tb.Fatal(err)
	}
	defer empty.Close()
	base = heapInuse()

	big, err := mesh.New(ctx, mesh.WithDiscovery(d), mesh.WithServices("big"))
	if err != nil {
		tb.Fatal(err)
	}
	defer big.Close()
	for len(big.Table().Instances("big", "")) != n {
		if ctx.Err() != nil {
			tb.Fatalf("%d of %d instances discovered", len(big.Table().Instances("big", "")), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	with = heapInuse()
	runtime.KeepAlive(big)
	runtime.KeepAlive(empty)
	return base, with
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC() // the second cycle frees what sync.Pools held through the first
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// writeInstances puts n instances of service, 100 per transaction, each
// with three labels as a Kubernetes-style deployment would have.
func writeInstances(tb testing.TB, cli *clientv3.Client, service string, n int) {
	tb.Helper()
	envs := []string{"base", "staging"}
	zones := []string{"zone-a", "zone-b", "zone-c"}
	for start := 0; start < n; start += 100 {
		ops := make([]clientv3.Op, 0, 100)
		for i := start; i < min(start+100, n); i++ {
			v := fmt.Sprintf(`{"address":"10.%d.%d.%d:8080","weight":1,"labels":{"env":%q,"zone":%q,"version":"v1.4.2"}}`,
				i>>16&255, i>>8&255, i&255, envs[i%len(envs)], zones[i%len(zones)])
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s/%s/pod-%06d", testPrefix, service, i), v))
		}
		if _, err := cli.Txn(context.Background()).Then(ops...).Commit(); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestDiscoveryMemory checks the memory target: 10,000 discovered
// instances cost a mesh at most 10 MB of heap. The race detector's
// bookkeeping changes allocation sizes, so it only logs under -race.
func TestDiscoveryMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 10,000 instances; skipped with -short")
	}
	base, with := discoveryHeap(t, 10_000)
	delta := float64(with-base) / (1 << 20)
	t.Logf("HeapInuse %.1f MB without, %.1f MB with 10,000 instances: +%.2f MB (%.0f B/instance)",
		float64(base)/(1<<20), float64(with)/(1<<20), delta, float64(with-base)/10_000)
	if delta > 10 && !raceEnabled {
		t.Fatalf("10,000 instances cost %.2f MB of heap, over the 10 MB target", delta)
	}
}
