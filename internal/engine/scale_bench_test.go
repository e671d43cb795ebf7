package engine

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/router"
)

// manyServices returns a State of n services with one instance each,
// the first router.MaxServices of them (a rule set's limit) with rules
// of their own: a breaker, instance breakers and a limit. The rest, as
// services discovery reports beyond those the rules name, take the
// built-in defaults. The rules are written as documents of up to 5,000
// services composed as a per-service layout is (router.Compose), since
// one document holds at most 1 MiB.
func manyServices(tb testing.TB, n int) *State {
	tb.Helper()
	const perDoc = 5_000
	lists := make(map[string][]discovery.Instance, n)
	for i := range n {
		lists[serviceName(i)] = []discovery.Instance{{Address: fmt.Sprintf("10.%d.%d.%d:80", i>>16&255, i>>8&255, i&255)}}
	}
	ruled := min(n, router.MaxServices)
	var docs []*router.Document
	for first := 0; first < ruled; first += perDoc {
		var b strings.Builder
		b.WriteString("apiVersion: lightmesh/v1\nservices:\n")
		for i := first; i < min(first+perDoc, ruled); i++ {
			fmt.Fprintf(&b, "  %s:\n    breaker: {}\n    outlierDetection: {}\n    rateLimit: {rps: 100}\n", serviceName(i))
		}
		doc, err := router.Parse([]byte(b.String()))
		if err != nil {
			tb.Fatal(err)
		}
		docs = append(docs, doc)
	}
	rules, err := router.Compose(nil, docs...)
	if err != nil {
		tb.Fatal(err)
	}
	return NewState(router.NewTable(nil, lists)).WithRules(rules, nil)
}

// serviceName is the name of manyServices' service i.
func serviceName(i int) string { return fmt.Sprintf("svc-%05d", i) }

// scaleSizes are the service counts the scaling benchmarks compare: a
// cost that grew with the number of services would grow 100× and then
// 10× again between them.
var scaleSizes = []int{100, 10_000, 100_000}

// BenchmarkInstanceUpdate measures the State rebuilt for one instance
// change of one service, with 100, 10,000 and 100,000 services: it must
// not grow with the number of services. It reports how many collections
// ran in the loop (GCs): run it long enough that there are some at every
// size, so that collecting each change's garbage is in the figure (run.sh:
// -benchtime 200000x; at 100,000 services the heap is about 225 MB and
// the first collection comes after about as much more is allocated).
func BenchmarkInstanceUpdate(b *testing.B) {
	for _, n := range scaleSizes {
		st := manyServices(b, n)
		list := []discovery.Instance{{Address: "10.255.255.1:80"}, {Address: "10.255.255.2:80"}}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				st.WithInstances("svc-00042", list, nil)
			}
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.NumGC-before.NumGC), "GCs")
		})
	}
}

// BenchmarkPolicyMemory reports the heap the State of manyServices(n)
// holds, in total and per service, for each of scaleSizes: up to 10,000
// services with rules of their own (a breaker, instance breakers and a
// limiter each), beyond that discovered services on the built-in
// defaults.
func BenchmarkPolicyMemory(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				st := manyServices(b, n)
				runtime.GC()
				runtime.ReadMemStats(&after)
				held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
				b.ReportMetric(held/(1<<20), "MB")
				b.ReportMetric(held/float64(n), "B/service")
				runtime.KeepAlive(st)
			}
		})
	}
}
