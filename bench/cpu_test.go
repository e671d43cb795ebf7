package bench

import (
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/internal/floor"
)

// cpuRate is the request rate of BenchmarkCPU, in requests per second.
const cpuRate = 2000

// BenchmarkCPU sends b.N loopback GETs (run it with a fixed count, e.g.
// -benchtime 20000x) at a fixed rate of cpuRate requests per second, one
// at a time, and reports:
//
//   - vCPU/1krps: the CPU the process used (user + system, getrusage)
//     per 1,000 requests per second; the upstream runs in the same
//     process, so lightmesh's own cost is lightmesh-full − bare;
//   - proxy-vCPU/1krps: for the proxy paths, the CPU of the proxy's
//     processes (from /proc), the figure Istio publishes for its sidecar
//     (0.20 vCPU per 1,000 rps in Istio 1.24);
//   - p50/p90/p99/p999-µs: percentiles of every request's latency, from a
//     log-linear histogram (1% resolution).
//
// path=floor-full is internal/floor's RoundTripper: the full stack's work
// done with the plain libraries and nothing looked up, the least that
// lightmesh-full's work can cost.
func BenchmarkCPU(b *testing.B) {
	srv := upstream(b)
	addr := strings.TrimPrefix(srv.URL, "http://")
	b.Run("path=bare", func(b *testing.B) { paced(b, newBase(b), newRequest(b, srv.URL+"/"), 0) })
	b.Run("path=lightmesh-full", func(b *testing.B) { paced(b, fullStack(b, addr), newRequest(b, "http://svc/"), 0) })
	b.Run("path=floor-full", func(b *testing.B) {
		paced(b, newFloor(b, addr, floor.NewProtection(time.Second, prometheus.NewRegistry())), newRequest(b, "http://svc/"), 0)
	})
	b.Run("path=nginx", func(b *testing.B) {
		url, pgid := startNginx(b, addr)
		paced(b, newBase(b), newRequest(b, url), pgid)
	})
	b.Run("path=haproxy", func(b *testing.B) {
		url, pgid := startHAProxy(b, addr)
		paced(b, newBase(b), newRequest(b, url), pgid)
	})
}

// The rate and concurrency of BenchmarkLoad.
const (
	loadRate    = 10_000
	loadCallers = 64
)

// BenchmarkLoad is BenchmarkCPU under concurrency: b.N loopback GETs
// (run it with a fixed count, e.g. -benchtime 50000x) at loadRate
// requests per second in all, from loadCallers goroutines each paced at
// its share of the rate, bare and through the full lightmesh stack. It
// reports what BenchmarkCPU does; the figure to read is the p99 that
// lightmesh adds when many calls are in flight at once.
func BenchmarkLoad(b *testing.B) {
	srv := upstream(b)
	addr := strings.TrimPrefix(srv.URL, "http://")
	b.Run("path=bare", func(b *testing.B) { pacedN(b, newBase(b), newRequest(b, srv.URL+"/"), 0, loadRate, loadCallers) })
	b.Run("path=lightmesh-full", func(b *testing.B) {
		pacedN(b, fullStack(b, addr), newRequest(b, "http://svc/"), 0, loadRate, loadCallers)
	})
}

// paced sends b.N requests at cpuRate, one at a time, and reports CPU and
// latency; pgid, when not 0, is a proxy's process group whose CPU is
// reported too.
func paced(b *testing.B, rt http.RoundTripper, req *http.Request, pgid int) {
	pacedN(b, rt, req, pgid, cpuRate, 1)
}

// pacedN is paced at rate requests per second from callers goroutines,
// each sending its share of b.N at rate/callers, their schedules
// staggered evenly.
func pacedN(b *testing.B, rt http.RoundTripper, req *http.Request, pgid, rate, callers int) {
	client := &http.Client{Transport: rt}
	if err := do(client, req); err != nil {
		b.Fatal(err)
	}
	hists := make([]histogram, callers)
	interval := time.Duration(callers) * time.Second / time.Duration(rate)
	cpu0, proxy0 := processCPU(), groupCPU(pgid)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := range callers {
		n := b.N / callers
		if g < b.N%callers {
			n++
		}
		wg.Go(func() {
			next := start.Add(interval * time.Duration(g) / time.Duration(callers))
			for range n {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
				t0 := time.Now()
				if err := do(client, req); err != nil {
					b.Error(err)
					return
				}
				hists[g].add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var hist histogram
	for i := range hists {
		hist.merge(&hists[i])
	}
	krps := float64(b.N) / elapsed.Seconds() / 1000
	b.ReportMetric((processCPU()-cpu0).Seconds()/elapsed.Seconds()/krps, "vCPU/1krps")
	if pgid != 0 {
		b.ReportMetric((groupCPU(pgid)-proxy0).Seconds()/elapsed.Seconds()/krps, "proxy-vCPU/1krps")
	}
	for _, q := range []struct {
		p    float64
		name string
	}{{0.5, "p50-µs"}, {0.9, "p90-µs"}, {0.99, "p99-µs"}, {0.999, "p999-µs"}} {
		b.ReportMetric(float64(hist.quantile(q.p))/float64(time.Microsecond), q.name)
	}
}

// processCPU returns the CPU time this process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// groupCPU returns the CPU time used so far by the live processes of
// process group pgid (0: none), from /proc/<pid>/stat.
func groupCPU(pgid int) time.Duration {
	if pgid == 0 {
		return 0
	}
	tick := 100.0 // USER_HZ on Linux
	var total float64
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range dirs {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses.
		i := strings.LastIndexByte(string(data), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		// f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		total += (ut + st) / tick
	}
	return time.Duration(total * float64(time.Second))
}

// histogram records durations in log-linear buckets of 1% width.
type histogram struct {
	counts map[int]int
	n      int
}

func bucketOf(d time.Duration) int {
	if d < time.Microsecond {
		return 0
	}
	return int(math.Log(float64(d)/float64(time.Microsecond))/math.Log(1.01)) + 1
}

// merge adds the counts of o to h.
func (h *histogram) merge(o *histogram) {
	if h.counts == nil {
		h.counts = map[int]int{}
	}
	for k, c := range o.counts {
		h.counts[k] += c
	}
	h.n += o.n
}

func (h *histogram) add(d time.Duration) {
	if h.counts == nil {
		h.counts = map[int]int{}
	}
	h.counts[bucketOf(d)]++
	h.n++
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	maxB := 0
	for k := range h.counts {
		maxB = max(maxB, k)
	}
	rank := int(math.Ceil(q * float64(h.n)))
	seen := 0
	for k := 0; k <= maxB; k++ {
		seen += h.counts[k]
		if seen >= rank {
			return time.Duration(math.Pow(1.01, float64(k)) * float64(time.Microsecond))
		}
	}
	return time.Duration(math.Pow(1.01, float64(maxB)) * float64(time.Microsecond))
}

// cpuTurn is how many requests each variant of BenchmarkCPUPaired sends
// in a turn: 50 ms at cpuRate, long enough that the process's CPU time
// (getrusage) moves by milliseconds, short enough that the machine does
// not drift within an iteration.
const cpuTurn = 100

// BenchmarkCPUPaired is BenchmarkCPU's CPU figure taken the way paired
// takes latency: each iteration sends a turn of cpuTurn GETs, one at a
// time on BenchmarkCPU's schedule (one every 1/cpuRate from the turn's
// start), through every variant in a new random order — bare, bare-again
// (its difference from bare is the method's noise), floor-full and
// lightmesh-full — and reads the process's CPU time (user + system, the
// upstream's included) around each turn. It reports bare's CPU per 1,000
// rps (bare-vCPU/1krps), the median over iterations of what each other
// variant's turn used above bare's in the same iteration
// (<name>-added-vCPU/1krps), and the rate the turns reached (rps). Run it
// with a fixed count, e.g. -benchtime 200x.
//
// Why: BenchmarkCPU runs each path for seconds one after the other, and
// a paced request's whole CPU (50-90 µs here, wake-ups included) drifts
// between those runs by more than the few µs the mesh adds.
//
// The schedule is kept by the clock, as BenchmarkCPU keeps it, rather than
// by sleeping an interval after each request: an idle Go process sleeps
// at least about 1 ms however short the sleep asked, so a request that
// waited too long is followed at once by the next, and the turn keeps
// cpuRate on average (in pairs about 1 ms apart) instead of falling to
// about 850 rps. Unlike BenchmarkCPU's, it restarts after a gap of over
// ten intervals (a new turn, or a stall of the machine) instead of
// sending the requests it missed back to back. rps is the requests sent
// over the benchmark's whole run, its warm-up included.
func BenchmarkCPUPaired(b *testing.B) {
	srv := upstream(b)
	addr := strings.TrimPrefix(srv.URL, "http://")
	interval := time.Second / cpuRate
	var requests int
	via := func(rt http.RoundTripper, req *http.Request) func() error {
		client := &http.Client{Transport: rt}
		var next time.Time
		return func() error {
			now := time.Now()
			switch {
			case now.Sub(next) > 10*interval:
				// A new turn (the other variants' turns came between)
				// or a stall: the schedule starts again now.
				next = now
			case next.After(now):
				time.Sleep(next.Sub(now))
			}
			next = next.Add(interval)
			requests++
			return do(client, req)
		}
	}
	perKRPS := func(d time.Duration) float64 { return d.Seconds() / cpuTurn * 1000 }
	start := time.Now()
	pairedBy(b, []*pairedVariant{
		{name: "bare", call: via(newBase(b), newRequest(b, srv.URL+"/"))},
		{name: "bare-again", call: via(newBase(b), newRequest(b, srv.URL+"/"))},
		{name: "floor-full", call: via(newFloor(b, addr, floor.NewProtection(time.Second, prometheus.NewRegistry())), newRequest(b, "http://svc/"))},
		{name: "lightmesh-full", call: via(fullStack(b, addr), newRequest(b, "http://svc/"))},
	}, cpuTurn, processCPU, perKRPS, "vCPU/1krps")
	b.ReportMetric(float64(requests)/time.Since(start).Seconds(), "rps")
}
