package meshtest

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// SoakDuration returns the soak duration set in LIGHTMESH_SOAK (a Go
// duration, e.g. 10m), skipping tb when it is not set: soaks are run by
// hand, not in CI.
func SoakDuration(tb testing.TB) time.Duration {
	tb.Helper()
	v := os.Getenv("LIGHTMESH_SOAK")
	if v == "" {
		tb.Skip("soak test: set LIGHTMESH_SOAK=10m to run it")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute {
		tb.Fatalf("LIGHTMESH_SOAK=%q: want a duration of at least 1m", v)
	}
	return d
}

// SoakPlane is the control plane a soak drives: it publishes rule
// documents and registers instances, as ops and deployments would.
type SoakPlane struct {
	// Publish publishes doc as the rules the mesh under test watches.
	Publish func(doc string) error
	// Join registers b as an instance of the service, labelled env, and
	// returns the function that deregisters it.
	Join func(b *Backend, env string) (leave func() error, err error)
	// Applied reports whether the mesh runs doc, the last published.
	Applied func(doc string) bool
}

// Resources is what a process holds at one moment.
type Resources struct {
	HeapBytes  uint64 // live heap after a GC
	Goroutines int
	OpenFDs    int // -1 where /proc/self/fd cannot be read
}

// Measure returns the process's resources after a GC.
func Measure() Resources {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	r := Resources{HeapBytes: ms.HeapAlloc, Goroutines: runtime.NumGoroutine(), OpenFDs: -1}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		r.OpenFDs = len(fds)
	}
	return r
}

// String is the resources as the soak logs them.
func (r Resources) String() string {
	return fmt.Sprintf("heap %.1f MB, %d goroutines, %d open fds", float64(r.HeapBytes)/(1<<20), r.Goroutines, r.OpenFDs)
}

// RunSoak drives service for d through client: 50 requests a second
// (and 5 more in the staging lane), answered by real backends; a new rule document (lanes
// by X-Env, a fresh comment each time) every second; and every two
// seconds one base instance joining and another leaving, while
// staging-1 and base-1 stay. It measures the process's resources after
// a warm-up (a minute, or a fifth of d when shorter) and at the end, and fails tb when requests failed,
// when the last document was not applied, or when goroutines grew by
// more than 20, open files by more than 20 or the heap by more than
// 50 % + 8 MB.
func RunSoak(tb testing.TB, d time.Duration, client *http.Client, service string, plane SoakPlane) {
	tb.Helper()
	stable := []*Backend{NewBackend(tb, "base-1"), NewBackend(tb, "staging-1")}
	churn := []*Backend{NewBackend(tb, "base-2"), NewBackend(tb, "base-3"), NewBackend(tb, "base-4")}
	for i, b := range stable {
		leave, err := plane.Join(b, []string{"base", "staging"}[i])
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { leave() })
	}
	leaves := map[*Backend]func() error{}
	tb.Cleanup(func() {
		for _, leave := range leaves {
			leave()
		}
	})
	doc := func(i int) string { return LaneRules(service) + "# soak update " + strconv.Itoa(i) + "\n" }
	if err := plane.Publish(doc(0)); err != nil {
		tb.Fatal(err)
	}
	WaitFor(tb, 30*time.Second, "the first soak rules applied", func() bool { return plane.Applied(doc(0)) })

	const rate = 50
	load := StartLoad(tb, client, "http://"+service+"/", int(d.Seconds())*rate+rate, rate, nil)
	staging := StartLoad(tb, client, "http://"+service+"/", int(d.Seconds())*5+5, 5, WithHeader("x-env", "staging"))
	start := time.Now()
	warmUp := min(time.Minute, d/5)
	var before Resources
	measured := false
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	updates, moves := 0, 0
	for i := 1; time.Since(start) < d; i++ {
		<-tick.C
		if err := plane.Publish(doc(i)); err != nil {
			tb.Errorf("publish update %d: %v", i, err)
		}
		updates = i
		if i%2 == 0 {
			b := churn[(i/2)%len(churn)]
			if leave, ok := leaves[b]; ok {
				if err := leave(); err != nil {
					tb.Errorf("deregister %s: %v", b.Name, err)
				}
				delete(leaves, b)
			} else {
				leave, err := plane.Join(b, "base")
				if err != nil {
					tb.Errorf("register %s: %v", b.Name, err)
				} else {
					leaves[b] = leave
				}
			}
			moves++
		}
		if !measured && time.Since(start) >= warmUp {
			before, measured = Measure(), true
			tb.Logf("after the warm-up: %v", before)
		}
	}
	WaitFor(tb, 30*time.Second, "the last soak rules applied", func() bool { return plane.Applied(doc(updates)) })
	res, stagingRes := load.Stop(), staging.Stop()
	// Idle connections to backends that left are closed by the transport
	// in time; close them now so only leaks remain.
	client.CloseIdleConnections()
	time.Sleep(time.Second)
	after := Measure()
	tb.Logf("after %v: %v", time.Since(start).Round(time.Second), after)
	tb.Logf("%d rule updates, %d instance joins and leaves; %d requests (%d failed, by backend %v), %d lane requests (%d failed, %v); slowest %v",
		updates, moves, res.Sent, res.Failed, res.ByBody, stagingRes.Sent, stagingRes.Failed, stagingRes.ByBody, max(res.MaxLatency, stagingRes.MaxLatency))
	if res.Failed+stagingRes.Failed != 0 {
		tb.Errorf("%d requests failed: %v %v", res.Failed+stagingRes.Failed, res.Errors, stagingRes.Errors)
	}
	if n := stagingRes.ByBody["staging-1"]; n != stagingRes.Sent {
		tb.Errorf("%d of %d lane requests reached staging-1: %v", n, stagingRes.Sent, stagingRes.ByBody)
	}
	if after.Goroutines > before.Goroutines+20 {
		tb.Errorf("goroutines grew from %d to %d", before.Goroutines, after.Goroutines)
	}
	if after.OpenFDs > before.OpenFDs+20 {
		tb.Errorf("open files grew from %d to %d", before.OpenFDs, after.OpenFDs)
	}
	if after.HeapBytes > before.HeapBytes*3/2+8<<20 {
		tb.Errorf("heap grew from %d to %d bytes", before.HeapBytes, after.HeapBytes)
	}
}
