package engine

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// manyServices returns a State of n services with rules (each with a
// breaker, instance breakers and a limit) and one instance each.
func manyServices(tb testing.TB, n int) *State {
	tb.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: lightmesh/v1\nservices:\n")
	lists := make(map[string][]discovery.Instance, n)
	for i := range n {
		name := fmt.Sprintf("svc-%05d", i)
		fmt.Fprintf(&b, "  %s:\n    breaker: {}\n    outlierDetection: {}\n    rateLimit: {rps: 100}\n", name)
		lists[name] = []discovery.Instance{{Address: fmt.Sprintf("10.%d.%d.1:80", i/250, i%250)}}
	}
	rules, err := router.Load([]byte(b.String()))
	if err != nil {
		tb.Fatal(err)
	}
	return NewState(router.NewTable(nil, lists)).WithRules(rules, nil)
}

// BenchmarkInstanceUpdate measures the State rebuilt for one instance
// change of one service, with 100 and 10,000 services: it must not grow
// with the number of services.
func BenchmarkInstanceUpdate(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		st := manyServices(b, n)
		list := []discovery.Instance{{Address: "10.255.255.1:80"}, {Address: "10.255.255.2:80"}}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				st.WithInstances("svc-00042", list, nil)
			}
		})
	}
}

// BenchmarkPolicyMemory reports the heap the protection of 10,000
// services holds (breaker, 1 instance breaker and a limiter each).
func BenchmarkPolicyMemory(b *testing.B) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		st := manyServices(b, 10_000)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MB/10k-services")
		runtime.KeepAlive(st)
	}
}
