// Command summary reads the raw results bench/run.sh wrote
// (bench/results/*.txt) and prints the README's benchmark table: each
// target with the figure measured (medians of the runs) and whether it is
// met. run.sh puts its output between the README's bench markers, so the
// table's numbers are never typed by hand.
//
//	go run ./summary results
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// results maps "file:benchmark name" and a unit to the values measured.
type results map[string]map[string][]float64

func load(dir string) (results, error) {
	r := results{}
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	for _, path := range files {
		group := strings.TrimSuffix(filepath.Base(path), ".txt")
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
				continue
			}
			key := group + ":" + fields[0]
			if r[key] == nil {
				r[key] = map[string][]float64{}
			}
			for i := 2; i+1 < len(fields); i += 2 {
				if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
					r[key][fields[i+1]] = append(r[key][fields[i+1]], v)
				}
			}
		}
		f.Close()
	}
	return r, nil
}

// median returns the median of the values of group:name in unit, and
// whether there are any.
func (r results) median(group, name, unit string) (float64, bool) {
	vs := slices.Clone(r[group+":"+name][unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if n := len(vs); n%2 == 1 {
		return vs[n/2], true
	} else {
		return (vs[n/2-1] + vs[n/2]) / 2, true
	}
}

// span returns the lowest and highest of the values of group:name in
// unit: for the paired rows, whose figure moves between rounds by more
// than some of the differences they show.
func (r results) span(group, name, unit string) (lo, hi float64) {
	vs := r[group+":"+name][unit]
	if len(vs) == 0 {
		return 0, 0
	}
	return slices.Min(vs), slices.Max(vs)
}

// procsSuffix returns the suffix go test gave the benchmarks that ran on
// the default GOMAXPROCS (the groups run.sh runs without -cpu): "-N" on N
// cores, "" on one, whichever most of those groups' names end with.
func (r results) procsSuffix() string {
	count := map[string]int{}
	for key := range r {
		group, name, _ := strings.Cut(key, ":")
		switch group {
		case "route", "admit", "scale", "memory", "overhead", "pick", "cpu", "cpupaired", "load":
		default:
			continue
		}
		sfx := ""
		if i := strings.LastIndexByte(name, '-'); i >= 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				sfx = name[i:]
			}
		}
		count[sfx]++
	}
	best, n := "-2", 0
	for s, c := range count {
		if c > n || c == n && s < best {
			best, n = s, c
		}
	}
	return best
}

// cpuSuffix is the suffix go test gives benchmark names run with -cpu procs.
func cpuSuffix(procs string) string {
	if procs == "1" {
		return ""
	}
	return "-" + procs
}

type row struct{ what, result, target, met string }

// pairedSpan is the range, in brackets, of what variant added to bare in
// the rounds of the paired benchmark name.
func pairedSpan(r results, name, variant string) string {
	lo, hi := r.span("paired", name, variant+"-added-µs")
	return fmt.Sprintf("[%+.1f to %+.1f]", lo, hi)
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func us(ns float64) string { return fmt.Sprintf("%.2f µs", ns/1000) }

func main() {
	dir := "results"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	r, err := load(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("| benchmark | result | target | met? |")
	fmt.Println("|---|---|---|---|")
	for _, x := range summarize(r) {
		fmt.Printf("| %s | %s | %s | %s |\n", x.what, x.result, x.target, x.met)
	}
}

// summarize returns the table's rows from the results r.
func summarize(r results) []row {
	sfx := r.procsSuffix() // of the groups run.sh runs without -cpu
	var rows []row
	add := func(what, result, target string, ok bool) {
		rows = append(rows, row{what, result, target, yes(ok)})
	}
	m := func(group, name, unit string) float64 {
		v, _ := r.median(group, name, unit)
		return v
	}
	info := func(what, result string) { rows = append(rows, row{what, result, "—", "—"}) }
	have := func(group, name string) bool { _, ok := r.median(group, name, "ns/op"); return ok }

	// Routing.
	if have("route", "BenchmarkRoute/instances=10"+sfx) {
		a, b, c := m("route", "BenchmarkRoute/instances=10"+sfx, "ns/op"), m("route", "BenchmarkRoute/instances=1000"+sfx, "ns/op"), m("route", "BenchmarkRoute/instances=10000"+sfx, "ns/op")
		allocs := m("route", "BenchmarkRoute/instances=1000"+sfx, "allocs/op")
		hi, lo := max(a, b, c), min(a, b, c)
		add("Routing, 100 routes, 10 / 1,000 / 10,000 instances", fmt.Sprintf("%.0f / %.0f / %.0f ns, %.0f allocs (flat within %.2f×)", a, b, c, allocs, hi/lo),
			"≤ 200 ns, 0 allocs, flat within 1.5×", hi <= 200 && allocs == 0 && hi/lo <= 1.5)
		if have("route", "BenchmarkRoute/instances=100000"+sfx) {
			d := m("route", "BenchmarkRoute/instances=100000"+sfx, "ns/op")
			add("  the same at 100,000 instances", fmt.Sprintf("%.0f ns (%.2f× the 10-instance figure)", d, d/a), "flat within 1.5×", d/a <= 1.5)
		}
	}
	for _, indexed := range []string{"true", "false"} {
		name := func(n int) string { return fmt.Sprintf("BenchmarkRouteCount/index=%s/routes=%d"+sfx, indexed, n) }
		if !have("route", name(1)) {
			continue
		}
		a, b, c, d := m("route", name(1), "ns/op"), m("route", name(10), "ns/op"), m("route", name(100), "ns/op"), m("route", name(1000), "ns/op")
		if indexed == "true" {
			// One route is below the index's threshold (a plain scan);
			// from 10 routes on the index serves.
			info("Routing, match at the last of 1 / 10 / 100 / 1,000 routes, exact-header index hitting", fmt.Sprintf("%.0f / %.0f / %.0f / %.0f ns (10 → 1,000 routes: %.2f×)", a, b, c, d, d/b))
		} else {
			info("  the same, every route scanned (prefix conditions)", fmt.Sprintf("%.0f / %.0f / %.0f / %.0f ns (%.1f ns per route)", a, b, c, d, (d-a)/999))
		}
	}
	// Decision path.
	if have("admit", "BenchmarkAdmit/raw=gobreaker+rate"+sfx) {
		raw, rawPar := m("admit", "BenchmarkAdmit/raw=gobreaker+rate"+sfx, "ns/op"), m("admit", "BenchmarkAdmit/raw=gobreaker+rate/parallel"+sfx, "ns/op")
		for _, v := range []string{"breaker+limit", "breaker+outlier+limit"} {
			s, p := m("admit", "BenchmarkAdmit/mesh="+v+""+sfx, "ns/op"), m("admit", "BenchmarkAdmit/mesh="+v+"/parallel"+sfx, "ns/op")
			allocs := m("admit", "BenchmarkAdmit/mesh="+v+""+sfx, "allocs/op")
			// The paired figures (mesh and raw timed in alternating turns)
			// decide the target when they are there: run one after the
			// other, the two moved by up to 1.5× between runs.
			paired := "BenchmarkAdmitPaired/mesh=" + v + sfx
			if ratio, ok := r.median("admit", paired, "mesh/raw"); ok {
				add("Decision path ("+v+") vs raw gobreaker Execute + rate.Allow, paired", fmt.Sprintf("%.0f ns vs %.0f ns (%.2f×), %.0f allocs; one after the other: %.0f vs %.0f ns",
					m("admit", paired, "mesh-ns"), m("admit", paired, "raw-ns"), ratio, allocs, s, raw), "0 allocs, ≤ 1.25× raw", allocs == 0 && ratio <= 1.25)
				if v == "breaker+outlier+limit" {
					info("  the floor: two raw gobreaker Executes (service, instance) + rate.Allow, paired", fmt.Sprintf("%.0f ns (%.2f× raw; the mesh %.2f× it, with the route match)",
						m("admit", paired, "raw2-ns"), m("admit", paired, "raw2-ns")/m("admit", paired, "raw-ns"), m("admit", paired, "mesh/raw2")))
				}
			} else {
				add("Decision path ("+v+") vs raw gobreaker Execute + rate.Allow", fmt.Sprintf("%.0f ns vs %.0f ns (%.2f×), %.0f allocs", s, raw, s/raw, allocs),
					"0 allocs, ≤ 1.25× raw", allocs == 0 && s/raw <= 1.25)
				if two, ok := r.median("admit", "BenchmarkAdmit/raw=2gobreaker+rate"+sfx, "ns/op"); ok && v == "breaker+outlier+limit" {
					info("  the floor: two raw gobreaker Executes (service, instance) + rate.Allow", fmt.Sprintf("%.0f ns (%.2f× raw; the mesh %.2f× it, with the route match)", two, two/raw, s/two))
				}
			}
			add("  the same under RunParallel (2 cores)", fmt.Sprintf("%.0f ns, %.2f× its serial figure (raw: %.2f×)", p, p/s, rawPar/raw), "within 1.3× of serial", p/s <= 1.3)
		}
	}
	// Overhead over an in-process RoundTripper.
	if have("overhead", "BenchmarkOverhead/stack=base"+sfx) {
		base, ba := m("overhead", "BenchmarkOverhead/stack=base"+sfx, "ns/op"), m("overhead", "BenchmarkOverhead/stack=base"+sfx, "allocs/op")
		for _, c := range []struct {
			stack, target, floor string
			ns, allocs           float64
		}{{"routing", "≤ 250 ns", "floor", 250, -1}, {"propagate", "≤ 400 ns, ≤ 4 allocs", "floor-trace", 400, 4}, {"full", "≤ 1.2 µs, ≤ 10 allocs", "floor-full", 1200, 10}} {
			v, a := m("overhead", "BenchmarkOverhead/stack="+c.stack+""+sfx, "ns/op")-base, m("overhead", "BenchmarkOverhead/stack="+c.stack+""+sfx, "allocs/op")-ba
			add("SDK's own cost, "+c.stack+" (over an in-process RoundTripper)", fmt.Sprintf("+%.0f ns, +%.0f allocs", v, a), c.target, v <= c.ns && (c.allocs < 0 || a <= c.allocs))
			// The floor: what any RoundTripper that keeps the caller's
			// request unchanged must do to send it there with its headers.
			if f, ok := r.median("overhead", "BenchmarkOverhead/stack="+c.floor+""+sfx, "ns/op"); ok {
				fa := m("overhead", "BenchmarkOverhead/stack="+c.floor+""+sfx, "allocs/op") - ba
				what := "request and URL copy, header map copy, the headers added"
				if c.floor == "floor-full" {
					what += "; timeout, rate limiter, two breakers and metrics from the plain libraries"
				}
				info("  the floor (stack="+c.floor+": "+what+")", fmt.Sprintf("+%.0f ns, +%.0f allocs; the mesh's own above it %+.0f ns", f-base, fa, v-(f-base)))
			}
		}
	}
	// Loopback transport vs otelhttp.
	for _, procs := range []string{"1", "2"} {
		sfx := cpuSuffix(procs)
		bare, ok := r.median("transport", "BenchmarkTransport/rt=bare"+sfx, "ns/op")
		if !ok {
			continue
		}
		full := m("transport", "BenchmarkTransport/rt=lightmesh-full"+sfx, "ns/op") - bare
		prop := m("transport", "BenchmarkTransport/rt=lightmesh-propagate"+sfx, "ns/op") - bare
		spans := m("transport", "BenchmarkTransport/rt=lightmesh-spans"+sfx, "ns/op")
		otel := m("transport", "BenchmarkTransport/rt=otelhttp"+sfx, "ns/op")
		add("Loopback GET, full stack adds (GOMAXPROCS="+procs+")", fmt.Sprintf("+%s over bare %s", us(full), us(bare)), "≤ 2 µs", full <= 2000)
		add("  propagate-only adds, vs otelhttp's", fmt.Sprintf("+%s vs +%s (%.2f of it)", us(prop), us(otel-bare), prop/(otel-bare)), "≤ 1/3 of otelhttp's", prop <= (otel-bare)/3)
		add("  span mode vs otelhttp", fmt.Sprintf("%s vs %s", us(spans), us(otel)), "≤ otelhttp", spans <= otel)
	}
	// Allocations per loopback call beside the floors'.
	if _, ok := r.median("transport", "BenchmarkTransport/rt=floor-full", "allocs/op"); ok {
		a := func(group, name string) float64 { return m(group, name, "allocs/op") }
		info("Allocations per loopback call, HTTP: bare; propagate vs floor-trace; full vs floor-full; otelhttp",
			fmt.Sprintf("%.0f; %.0f vs %.0f; %.0f vs %.0f; %.0f", a("transport", "BenchmarkTransport/rt=bare"),
				a("transport", "BenchmarkTransport/rt=lightmesh-propagate"), a("transport", "BenchmarkTransport/rt=floor-trace"),
				a("transport", "BenchmarkTransport/rt=lightmesh-full"), a("transport", "BenchmarkTransport/rt=floor-full"), a("transport", "BenchmarkTransport/rt=otelhttp")))
		if _, ok := r.median("grpc", "BenchmarkGRPC/rpc=floor-full", "allocs/op"); ok {
			info("  gRPC: bare; propagate vs floor-propagate; full vs floor-full; otelgrpc",
				fmt.Sprintf("%.0f; %.0f vs %.0f; %.0f vs %.0f; %.0f", a("grpc", "BenchmarkGRPC/rpc=bare"),
					a("grpc", "BenchmarkGRPC/rpc=lightmesh-propagate"), a("grpc", "BenchmarkGRPC/rpc=floor-propagate"),
					a("grpc", "BenchmarkGRPC/rpc=lightmesh-full"), a("grpc", "BenchmarkGRPC/rpc=floor-full"), a("grpc", "BenchmarkGRPC/rpc=otelgrpc")))
		}
	}
	// The same loopback calls, paired: every variant's calls made in turn
	// within each iteration, so that the machine's drift falls on all.
	for _, procs := range []string{"1", "2"} {
		name := "BenchmarkPairedTransport" + cpuSuffix(procs)
		bare, ok := r.median("paired", name, "bare-µs")
		if !ok {
			continue
		}
		full, prop := m("paired", name, "lightmesh-full-added-µs"), m("paired", name, "lightmesh-propagate-added-µs")
		wire, otel := m("paired", name, "bare-meshheaders-added-µs"), m("paired", name, "otelhttp-added-µs")
		floorFull, floorTrace := m("paired", name, "floor-full-added-µs"), m("paired", name, "floor-trace-added-µs")
		add("Loopback GET, paired (GOMAXPROCS="+procs+"): full stack adds", fmt.Sprintf("%+.2f µs %s over bare %.2f µs", full, pairedSpan(r, name, "lightmesh-full"), bare), "≤ 2 µs", full <= 2)
		if again, ok := r.median("paired", name, "bare-again-added-µs"); ok {
			info("  the noise: a second bare transport", fmt.Sprintf("%+.2f µs %s", again, pairedSpan(r, name, "bare-again")))
		}
		info("  the floors: the mesh's headers sent bare; floor-trace; floor-full", fmt.Sprintf("%+.2f µs %s; %+.2f µs %s; %+.2f µs %s (lightmesh-full above it: %+.2f µs)",
			wire, pairedSpan(r, name, "bare-meshheaders"), floorTrace, pairedSpan(r, name, "floor-trace"), floorFull, pairedSpan(r, name, "floor-full"), full-floorFull))
		add("  propagate-only adds, vs otelhttp's", fmt.Sprintf("%+.2f µs %s vs %+.2f µs %s (%.2f of it; above floor-trace: %+.2f µs)",
			prop, pairedSpan(r, name, "lightmesh-propagate"), otel, pairedSpan(r, name, "otelhttp"), prop/otel, prop-floorTrace), "≤ 1/3 of otelhttp's", prop <= otel/3)
	}
	for _, procs := range []string{"1", "2"} {
		name := "BenchmarkPairedGRPC" + cpuSuffix(procs)
		bare, ok := r.median("paired", name, "bare-µs")
		if !ok {
			continue
		}
		pct := func(v string) (float64, float64) {
			d := m("paired", name, v+"-added-µs")
			return d, d / bare * 100
		}
		full, fullPct := pct("lightmesh-full")
		prop, propPct := pct("lightmesh-propagate")
		wire, wirePct := pct("bare-meshmetadata")
		otel, otelPct := pct("otelgrpc")
		floorFull, floorFullPct := pct("floor-full")
		floorProp, floorPropPct := pct("floor-propagate")
		add("gRPC unary, paired (GOMAXPROCS="+procs+"): full stack over bare", fmt.Sprintf("%+.1f%% (%+.2f µs %s over %.2f µs)", fullPct, full, pairedSpan(r, name, "lightmesh-full"), bare), "within 8%", fullPct <= 8)
		if _, ok := r.median("paired", name, "bare-again-added-µs"); ok {
			again, againPct := pct("bare-again")
			info("  the noise: a second bare connection", fmt.Sprintf("%+.1f%% (%+.2f µs %s)", againPct, again, pairedSpan(r, name, "bare-again")))
		}
		info("  the floors: the mesh's metadata sent bare; floor-propagate; floor-full", fmt.Sprintf("%+.1f%% (%+.2f µs %s); %+.1f%% (%+.2f µs %s); %+.1f%% (%+.2f µs %s)",
			wirePct, wire, pairedSpan(r, name, "bare-meshmetadata"), floorPropPct, floorProp, pairedSpan(r, name, "floor-propagate"), floorFullPct, floorFull, pairedSpan(r, name, "floor-full")))
		add("  propagate-only over bare", fmt.Sprintf("%+.1f%% (%+.2f µs %s); otelgrpc %+.1f%% (%+.2f µs %s)",
			propPct, prop, pairedSpan(r, name, "lightmesh-propagate"), otelPct, otel, pairedSpan(r, name, "otelgrpc")), "within 4%", propPct <= 4)
	}
	for _, procs := range []string{"1", "2"} {
		sfx := cpuSuffix(procs)
		bare, ok := r.median("throughput", "BenchmarkThroughput/rt=bare"+sfx, "req/s")
		if !ok {
			continue
		}
		mesh := m("throughput", "BenchmarkThroughput/rt=lightmesh-full"+sfx, "req/s")
		add("Throughput, full stack vs bare (GOMAXPROCS="+procs+")", fmt.Sprintf("%.0f vs %.0f req/s (%.0f%%)", mesh, bare, mesh/bare*100), "≥ 95%", mesh/bare >= 0.95)
		if f, ok := r.median("throughput", "BenchmarkThroughput/rt=floor-full"+sfx, "req/s"); ok {
			info("  the floor (floor-full)", fmt.Sprintf("%.0f req/s (%.0f%% of bare)", f, f/bare*100))
		}
	}
	// Proxy hop.
	for _, procs := range []string{"1", "2"} {
		sfx := cpuSuffix(procs)
		bare, ok := r.median("proxy", "BenchmarkProxyHop/path=bare"+sfx, "ns/op")
		if !ok {
			continue
		}
		mesh := m("proxy", "BenchmarkProxyHop/path=lightmesh-full"+sfx, "ns/op") - bare
		for _, p := range []string{"nginx", "haproxy"} {
			if hop, ok := r.median("proxy", "BenchmarkProxyHop/path="+p+sfx, "ns/op"); ok {
				add(fmt.Sprintf("A %s hop vs lightmesh (GOMAXPROCS=%s)", p, procs), fmt.Sprintf("+%s vs +%s (%.0f×)", us(hop-bare), us(mesh), (hop-bare)/mesh), "≥ 45×", (hop-bare)/mesh >= 45)
			}
		}
	}
	// CPU: decided on BenchmarkCPUPaired (every variant's turns in each
	// iteration) when it ran, on BenchmarkCPU's runs one after the other
	// otherwise.
	cpuPaired := "BenchmarkCPUPaired" + sfx
	_, havePaired := r.median("cpupaired", cpuPaired, "bare-vCPU/1krps")
	if havePaired {
		full := m("cpupaired", cpuPaired, "lightmesh-full-added-vCPU/1krps")
		span := func(variant string) string {
			lo, hi := r.span("cpupaired", cpuPaired, variant+"-added-vCPU/1krps")
			return fmt.Sprintf("[%.4f to %.4f]", lo, hi)
		}
		add("CPU lightmesh adds per 1,000 rps (2,000 rps, one at a time), paired", fmt.Sprintf("%.4f vCPU %s (Istio 1.24 sidecar: 0.20, %.0f× more); bare uses %.4f; the turns ran at %.0f rps", full, span("lightmesh-full"), 0.20/full, m("cpupaired", cpuPaired, "bare-vCPU/1krps"), m("cpupaired", cpuPaired, "rps")),
			"≥ 100× below 0.20", full <= 0.002)
		info("  the noise: a second bare transport; the floor (floor-full) adds", fmt.Sprintf("%+.4f vCPU %s; %.4f vCPU %s",
			m("cpupaired", cpuPaired, "bare-again-added-vCPU/1krps"), span("bare-again"), m("cpupaired", cpuPaired, "floor-full-added-vCPU/1krps"), span("floor-full")))
	}
	if bare, ok := r.median("cpu", "BenchmarkCPU/path=bare"+sfx, "vCPU/1krps"); ok {
		added := m("cpu", "BenchmarkCPU/path=lightmesh-full"+sfx, "vCPU/1krps") - bare
		nginx, _ := r.median("cpu", "BenchmarkCPU/path=nginx"+sfx, "proxy-vCPU/1krps")
		haproxy, _ := r.median("cpu", "BenchmarkCPU/path=haproxy"+sfx, "proxy-vCPU/1krps")
		what, result := "CPU lightmesh adds per 1,000 rps (2,000 rps, one at a time)", fmt.Sprintf("%.4f vCPU (Istio 1.24 sidecar: 0.20, %.0f× more; nginx %.4f, HAProxy %.4f in this run)", added, 0.20/added, nginx, haproxy)
		if havePaired {
			info("  the same, each path's run one after the other (BenchmarkCPU)", result)
		} else {
			add(what, result, "≥ 100× below 0.20", added <= 0.002)
		}
		if f, ok := r.median("cpu", "BenchmarkCPU/path=floor-full"+sfx, "vCPU/1krps"); ok {
			info("  the floor (floor-full) adds, one after the other", fmt.Sprintf("%.4f vCPU", f-bare))
		}
		p99b, p99m := m("cpu", "BenchmarkCPU/path=bare"+sfx, "p99-µs"), m("cpu", "BenchmarkCPU/path=lightmesh-full"+sfx, "p99-µs")
		info("  p99 latency at that rate, bare / lightmesh / nginx / HAProxy", fmt.Sprintf("%.0f / %.0f / %.0f / %.0f µs", p99b, p99m, m("cpu", "BenchmarkCPU/path=nginx"+sfx, "p99-µs"), m("cpu", "BenchmarkCPU/path=haproxy"+sfx, "p99-µs")))
	}
	if p99b, ok := r.median("load", "BenchmarkLoad/path=bare"+sfx, "p99-µs"); ok {
		p99m := m("load", "BenchmarkLoad/path=lightmesh-full"+sfx, "p99-µs")
		cpub, cpum := m("load", "BenchmarkLoad/path=bare"+sfx, "vCPU/1krps"), m("load", "BenchmarkLoad/path=lightmesh-full"+sfx, "vCPU/1krps")
		info("  at 10,000 rps from 64 callers: p99 bare / lightmesh; CPU lightmesh adds per 1,000 rps", fmt.Sprintf("%.0f / %.0f µs (%+.0f µs); %.4f vCPU", p99b, p99m, p99m-p99b, cpum-cpub))
	}
	// gRPC.
	if bare, ok := r.median("pick", "BenchmarkGRPC/client=bare"+sfx, "ns/op"); ok {
		mesh := m("pick", "BenchmarkGRPC/client=mesh"+sfx, "ns/op")
		add("gRPC unary through lightmesh (full stack) vs bare grpc.NewClient", fmt.Sprintf("%s vs %s (%+.1f%%)", us(mesh), us(bare), (mesh/bare-1)*100), "within 8%", mesh/bare <= 1.08)
		add("  the pick", fmt.Sprintf("%.0f ns, %.0f allocs", m("pick", "BenchmarkPick"+sfx, "ns/op"), m("pick", "BenchmarkPick"+sfx, "allocs/op")), "0 allocs", m("pick", "BenchmarkPick"+sfx, "allocs/op") == 0)
	}
	if bare, ok := r.median("grpc", "BenchmarkGRPC/rpc=bare-2", "ns/op"); ok {
		prop, otel := m("grpc", "BenchmarkGRPC/rpc=lightmesh-propagate-2", "ns/op"), m("grpc", "BenchmarkGRPC/rpc=otelgrpc-2", "ns/op")
		add("gRPC propagate-only vs otelgrpc's stats handler (same tracer)", fmt.Sprintf("+%s vs +%s over bare", us(prop-bare), us(otel-bare)), "cheaper than otelgrpc", prop < otel)
	}
	// Scaling.
	if small, ok := r.median("scale", "BenchmarkInstanceUpdate/services=100"+sfx, "ns/op"); ok {
		big := m("scale", "BenchmarkInstanceUpdate/services=10000"+sfx, "ns/op")
		// The collections that ran in the loop: with none, the figure
		// leaves out collecting the change's garbage.
		gcs := func(n string) string {
			lo, _ := r.span("scale", "BenchmarkInstanceUpdate/services="+n+sfx, "GCs")
			return fmt.Sprintf("%.0f", lo)
		}
		add("State rebuilt on one instance change, 100 → 10,000 services", fmt.Sprintf("%s → %s (%.1f×; collections in a round's loop, at least: %s, %s)", us(small), us(big), big/small, gcs("100"), gcs("10000")), "not O(services)", big/small <= 5)
		if huge, ok := r.median("scale", "BenchmarkInstanceUpdate/services=100000"+sfx, "ns/op"); ok {
			add("  10,000 → 100,000 services", fmt.Sprintf("%s → %s (%.1f×; 100 → 100,000: %.1f×; collections, at least: %s)", us(big), us(huge), huge/big, huge/small, gcs("100000")), "not O(services)", huge/big <= 5)
		}
	}
	if small, ok := r.median("memory", "BenchmarkPolicyMemory/services=100"+sfx, "B/service"); ok {
		// At 100,000 services 10,000 have rules (a rule set's limit) and
		// 90,000 are discovered only: the two kinds are shown apart.
		mid, big := m("memory", "BenchmarkPolicyMemory/services=10000"+sfx, "MB"), m("memory", "BenchmarkPolicyMemory/services=100000"+sfx, "MB")
		info("Heap per service: with rules of its own (a breaker, instance breakers, a limit) at 100 / 10,000 services; discovered only, on the built-in defaults",
			fmt.Sprintf("%.1f / %.1f KB; %.1f KB (%.1f MB for 10,000 with rules, %.1f MB with 90,000 more discovered)", small/1024, mid*1024/10_000, (big-mid)*1024/90_000, mid, big))
	}
	return rows
}
