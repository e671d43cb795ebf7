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
// without a suffix on one. It also checks the scaling and memory rows.
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
		write("scale.txt", `BenchmarkInstanceUpdate/services=100-N 	200	5000 ns/op	55 GCs	5000 B/op	37 allocs/op
BenchmarkInstanceUpdate/services=10000-N 	200	10000 ns/op	3 GCs	28000 B/op	43 allocs/op
BenchmarkInstanceUpdate/services=100000-N 	200	40000 ns/op	0 GCs	300000 B/op	49 allocs/op
`)
		write("memory.txt", `BenchmarkPolicyMemory/services=100-N 	1	9000000 ns/op	0.4 MB	4096 B/service
BenchmarkPolicyMemory/services=10000-N 	1	900000000 ns/op	40 MB	4198 B/service
BenchmarkPolicyMemory/services=100000-N 	1	9000000000 ns/op	400 MB	4300 B/service
`)
		got := rowsOf(t, dir)
		for _, want := range []string{
			"State rebuilt on one instance change, 100 → 10,000 services: 5.00 µs → 10.00 µs (2.0×; collections in a round's loop, at least: 55, 3) | yes",
			"  10,000 → 100,000 services: 10.00 µs → 40.00 µs (4.0×; 100 → 100,000: 8.0×; collections, at least: 0) | yes",
			"Heap per service: with rules of its own (a breaker, instance breakers, a limit) at 100 / 10,000 services; discovered only, on the built-in defaults: 4.0 / 4.1 KB; 4.1 KB (40.0 MB for 10,000 with rules, 400.0 MB with 90,000 more discovered)",
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

// TestSummarizeAdmitPaired checks that the decision-path target is decided
// on BenchmarkAdmitPaired's ratio when it is there (here met paired and
// missed one after the other), and on BenchmarkAdmit's without it.
func TestSummarizeAdmitPaired(t *testing.T) {
	admit := `BenchmarkAdmit/mesh=breaker+limit-2 	1000	300 ns/op	0 B/op	0 allocs/op
BenchmarkAdmit/mesh=breaker+limit/parallel-2 	1000	310 ns/op	0 B/op	0 allocs/op
BenchmarkAdmit/mesh=breaker+outlier+limit-2 	1000	350 ns/op	0 B/op	0 allocs/op
BenchmarkAdmit/mesh=breaker+outlier+limit/parallel-2 	1000	360 ns/op	0 B/op	0 allocs/op
BenchmarkAdmit/raw=gobreaker+rate-2 	1000	200 ns/op	0 B/op	0 allocs/op
BenchmarkAdmit/raw=2gobreaker+rate-2 	1000	300 ns/op	0 B/op	0 allocs/op
BenchmarkAdmit/raw=gobreaker+rate/parallel-2 	1000	210 ns/op	0 B/op	0 allocs/op
`
	paired := `BenchmarkAdmitPaired/mesh=breaker+limit-2         	     355	       228.5 mesh-ns	         1.138 mesh/raw	         0.7358 mesh/raw2	       201.1 raw-ns	       310.8 raw2-ns	     114 B/op	       0 allocs/op
BenchmarkAdmitPaired/mesh=breaker+outlier+limit-2 	     421	       277.2 mesh-ns	         1.372 mesh/raw	         0.8861 mesh/raw2	       201.6 raw-ns	       312.5 raw2-ns	      96 B/op	       0 allocs/op
`
	for _, tc := range []struct {
		text string
		want map[string]string // row what → met
	}{
		{admit + paired, map[string]string{
			"Decision path (breaker+limit) vs raw gobreaker Execute + rate.Allow, paired":         yes(true),
			"Decision path (breaker+outlier+limit) vs raw gobreaker Execute + rate.Allow, paired": yes(false),
		}},
		{admit, map[string]string{
			"Decision path (breaker+limit) vs raw gobreaker Execute + rate.Allow":         yes(false),
			"Decision path (breaker+outlier+limit) vs raw gobreaker Execute + rate.Allow": yes(false),
		}},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "admit.txt"), []byte(tc.text), 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := load(dir)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]row{}
		for _, x := range summarize(r) {
			got[x.what] = x
		}
		for what, met := range tc.want {
			if x, ok := got[what]; !ok {
				t.Errorf("no row %q", what)
			} else if x.met != met {
				t.Errorf("%s: %s, met %q, want %q", what, x.result, x.met, met)
			}
		}
		if x, ok := got["Decision path (breaker+limit) vs raw gobreaker Execute + rate.Allow, paired"]; ok && !strings.Contains(x.result, "228 ns vs 201 ns (1.14×)") {
			t.Errorf("paired row: %s", x.result)
		}
	}
}

// TestSummarizeCPUPaired checks that the CPU target is decided on
// BenchmarkCPUPaired when it ran (here missed), with BenchmarkCPU's
// figure (here met) then shown as information only.
func TestSummarizeCPUPaired(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cpu.txt", `BenchmarkCPU/path=bare-2 	20000	500000 ns/op	250 p99-µs	0.0500 vCPU/1krps
BenchmarkCPU/path=lightmesh-full-2 	20000	500000 ns/op	260 p99-µs	0.0510 vCPU/1krps
`)
	write("cpupaired.txt", `BenchmarkCPUPaired-2 	100	0 ns/op	0.0010 bare-again-added-vCPU/1krps	0.0800 bare-vCPU/1krps	0.0040 floor-full-added-vCPU/1krps	0.0100 lightmesh-full-added-vCPU/1krps	1990 rps
BenchmarkCPUPaired-2 	100	0 ns/op	-0.0010 bare-again-added-vCPU/1krps	0.0800 bare-vCPU/1krps	0.0060 floor-full-added-vCPU/1krps	0.0120 lightmesh-full-added-vCPU/1krps	1990 rps
BenchmarkCPUPaired-2 	100	0 ns/op	0.0000 bare-again-added-vCPU/1krps	0.0800 bare-vCPU/1krps	0.0050 floor-full-added-vCPU/1krps	0.0140 lightmesh-full-added-vCPU/1krps	1990 rps
`)
	all := strings.Join(rowsOf(t, dir), "\n")
	for _, want := range []string{
		"CPU lightmesh adds per 1,000 rps (2,000 rps, one at a time), paired: 0.0120 vCPU [0.0100 to 0.0140] (Istio 1.24 sidecar: 0.20, 17× more); bare uses 0.0800; the turns ran at 1990 rps | **no**",
		"  the noise: a second bare transport; the floor (floor-full) adds: +0.0000 vCPU [-0.0010 to 0.0010]; 0.0050 vCPU [0.0040 to 0.0060] | —",
		"  the same, each path's run one after the other (BenchmarkCPU): 0.0010 vCPU",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("rows\n%s\nwant one %q", all, want)
		}
	}
	if strings.Contains(all, "CPU lightmesh adds per 1,000 rps (2,000 rps, one at a time): ") {
		t.Errorf("BenchmarkCPU's figure decided the target beside the paired one:\n%s", all)
	}
}

// rowsOf returns the summary's rows of the results in dir, each as
// "what: result | met".
func rowsOf(t *testing.T, dir string) []string {
	t.Helper()
	r, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, x := range summarize(r) {
		rows = append(rows, x.what+": "+x.result+" | "+x.met)
	}
	return rows
}
