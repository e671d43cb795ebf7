package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSummarizeOtherCoreCounts checks that the rows of the groups run.sh
// runs on the default GOMAXPROCS (routing, the pick, scaling) are computed
// on a machine of any size: go test names them with -N on N cores and
// without a suffix on one.
func TestSummarizeOtherCoreCounts(t *testing.T) {
	for _, sfx := range []string{"", "-2", "-4"} {
		dir := t.TempDir()
		write := func(name, text string) {
			text = strings.ReplaceAll(text, "-N ", sfx+" ")
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		write("route.txt", `BenchmarkRoute/instances=10-N 	1000	100 ns/op	0 B/op	0 allocs/op
BenchmarkRoute/instances=1000-N 	1000	110 ns/op	0 B/op	0 allocs/op
BenchmarkRoute/instances=10000-N 	1000	120 ns/op	0 B/op	0 allocs/op
`)
		write("pick.txt", `BenchmarkPick-N 	1000	200 ns/op	0 B/op	0 allocs/op
BenchmarkGRPC/client=bare-N 	1000	60000 ns/op	0 B/op	0 allocs/op
BenchmarkGRPC/client=mesh-N 	1000	63000 ns/op	0 B/op	0 allocs/op
`)
		r, err := load(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, x := range summarize(r) {
			got = append(got, x.what+": "+x.result)
		}
		for _, want := range []string{
			"Routing, 100 routes, 10 / 1,000 / 10,000 instances: 100 / 110 / 120 ns, 0 allocs (flat within 1.20×)",
			"gRPC unary through lightmesh (full stack) vs bare grpc.NewClient: 63.00 µs vs 60.00 µs (+5.0%)",
			"  the pick: 200 ns, 0 allocs",
		} {
			if !strings.Contains(strings.Join(got, "\n"), want) {
				t.Errorf("suffix %q: rows\n%s\nwant one %q", sfx, strings.Join(got, "\n"), want)
			}
		}
	}
}
