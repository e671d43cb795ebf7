package nacos

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/internal/meshtest"
	"github.com/lightmesh/lightmesh/mesh"
)

// publishInterval spaces the benchmark's publications: the SDK reads one
// config item at most ~5 times a second per process (a fixed limiter),
// and a read it refuses delays the change to the next 5 s listen round.
// Ops do not change a rule five times a second; the benchmark measures
// propagation, not that limiter.
const publishInterval = 250 * time.Millisecond

type applied struct {
	version string
	at      time.Time
}

// BenchmarkRulePropagation measures Nacos publish → rules live in a mesh:
// the time from PublishConfig returning to the mesh's WithOnRulesChange
// hook reporting that version (the content's MD5) applied. A first
// warm-up publication, which waits for the SDK's 5 s listener
// registration, is not counted; then max(b.N, 50) documents are
// published one after another, publishInterval apart, and the median,
// the 99th percentile and the maximum are reported.
func BenchmarkRulePropagation(b *testing.B) {
	cfg := testConfig(b)
	dataID, group := unique("lightmesh-bench")+".yaml", "LIGHTMESH_BENCH"
	pub := newPublisher(b, cfg, group)
	defer pub.remove(b, dataID)
	rules := meshtest.LaneRules("user-api")
	v := pub.publish(b, dataID, rules)
	src, err := NewRuleSource(cfg, dataID, group)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	seen := make(chan applied, 1024)
	m, err := mesh.New(context.Background(), mesh.WithRules(src), mesh.WithOnRulesChange(func(ev mesh.RulesEvent) {
		if ev.Err == nil {
			seen <- applied{ev.Version, time.Now()}
		}
	}))
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	waitApplied(b, seen, v, 10*time.Second)
	time.Sleep(publishInterval)
	start := time.Now()
	v = pub.publish(b, dataID, rules+"# warm-up\n")
	waitApplied(b, seen, v, 15*time.Second)
	b.Logf("warm-up publication applied after %v", time.Since(start).Round(time.Millisecond))

	n := max(b.N, 50)
	lat := make([]time.Duration, 0, n)
	last := time.Now()
	b.ResetTimer()
	for i := range n {
		time.Sleep(time.Until(last.Add(publishInterval)))
		last = time.Now()
		v := pub.publish(b, dataID, fmt.Sprintf("%s# update %d\n", rules, i))
		published := time.Now()
		lat = append(lat, waitApplied(b, seen, v, 15*time.Second).Sub(published))
	}
	b.StopTimer()
	meshtest.ReportLatency(b, lat, "")
	b.ReportMetric(float64(n), "updates")
}

func waitApplied(b *testing.B, seen <-chan applied, version string, d time.Duration) time.Time {
	b.Helper()
	return meshtest.Next(b, seen, d, "application of version "+version,
		func(a applied) bool { return a.version == version }).at
}
