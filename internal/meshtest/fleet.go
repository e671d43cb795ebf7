package meshtest

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/mesh"
	"github.com/lightmesh/lightmesh/rules"
)

// FleetPlane is a control plane for RunFleet: where the documents are
// published and how a process connects to them.
type FleetPlane struct {
	// Name labels the figures ("etcd", "nacos").
	Name string
	// Put publishes doc as the document called name.
	Put func(name, doc string) error
	// Catalog connects one process to the documents: called once per
	// process, and its catalog is shared by all the process's meshes.
	// It runs in the child processes, so it must depend only on what
	// the environment passes them (see FleetEnv).
	Catalog func() (rules.Catalog, func(), error)
	// Port is the control plane's TCP port, to count the connections a
	// process holds to it.
	Port int
}

// FleetConfig sizes a fleet run.
type FleetConfig struct {
	Documents int // documents in the catalog, one per service
	Processes int // child processes
	Meshes    int // meshes per process
	Watched   int // documents each mesh watches, the hot and the bad ones included
}

// FleetChildEnv, set in a child's environment, makes RunFleet run the
// child's part: "process-index,meshes,watched,documents".
const FleetChildEnv = "LIGHTMESH_FLEET_CHILD"

// fleetDoc is the document of service name, its timeout counting the
// rounds: a mesh's applied rules tell which round it has.
func fleetDoc(name string, round int) string {
	return fmt.Sprintf("apiVersion: lightmesh/v1\nservices:\n  %s:\n    timeout: %dms\n", name, round+1)
}

// FleetName names document i of a fleet run.
func FleetName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// The hot document every mesh watches, whose updates are timed, and the
// bad one every mesh watches too, updated with a broken version at the
// same moment in every other round.
var (
	fleetHot = FleetName(0)
	fleetBad = FleetName(1)
)

// FleetResult is what one RunFleet measured.
type FleetResult struct {
	// Latency holds, for each round and each mesh, the time from the
	// publication of the hot document to the mesh applying it; Clean
	// those of rounds without a concurrent rejection, Rejected those of
	// rounds in which the bad document was broken at the same moment.
	Clean, Rejected []time.Duration
	// AllApplied holds, per round, the time until the last mesh applied.
	AllApplied []time.Duration
	// Conns is the most TCP connections one process held to the control
	// plane; HeapPerMesh the largest live heap a process's meshes added,
	// per mesh.
	Conns       int
	HeapPerMesh uint64
}

// RunFleet runs cfg.Processes child processes of the test binary, each
// with cfg.Meshes meshes on one shared catalog, each mesh watching the
// hot document, the bad one and cfg.Watched-2 others chosen at random
// among cfg.Documents; it publishes the hot document rounds times and
// times each mesh applying it, after one warm-up round. The documents must be published already
// (PublishFleet). A child process is started by the test named testName
// with FleetChildEnv set; that test calls RunFleetChild.
func RunFleet(tb testing.TB, plane FleetPlane, cfg FleetConfig, testName string, rounds int) FleetResult {
	tb.Helper()
	type applied struct {
		round int
		at    time.Time
	}
	events := make(chan applied, cfg.Processes*cfg.Meshes*4)
	var res FleetResult
	var mu sync.Mutex
	ready := make(chan error, cfg.Processes)
	for p := range cfg.Processes {
		cmd := exec.Command(os.Args[0], "-test.run=^"+testName+"$", "-test.bench=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%d,%d,%d", FleetChildEnv, p, cfg.Meshes, cfg.Watched, cfg.Documents))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			tb.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			tb.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() {
			stdin.Close() // the child stops when its stdin ends
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				switch {
				case len(f) == 4 && f[0] == "ready":
					conns, _ := strconv.Atoi(f[1])
					before, _ := strconv.ParseUint(f[2], 10, 64)
					after, _ := strconv.ParseUint(f[3], 10, 64)
					mu.Lock()
					res.Conns = max(res.Conns, conns)
					if after > before {
						res.HeapPerMesh = max(res.HeapPerMesh, (after-before)/uint64(cfg.Meshes))
					}
					mu.Unlock()
					ready <- nil
				case len(f) == 3 && f[0] == "applied":
					round, _ := strconv.Atoi(f[1])
					ns, _ := strconv.ParseInt(f[2], 10, 64)
					events <- applied{round, time.Unix(0, ns)}
				case len(f) >= 1 && f[0] == "failed":
					ready <- fmt.Errorf("process %d: %s", p, sc.Text())
				}
			}
		}()
	}
	deadline := time.After(3 * time.Minute)
	for range cfg.Processes {
		select {
		case err := <-ready:
			if err != nil {
				tb.Fatal(err)
			}
		case <-deadline:
			tb.Fatal("the fleet's processes did not start within 3 minutes")
		}
	}
	meshes := cfg.Processes * cfg.Meshes
	// Round 1 warms the fleet up and is not counted: the first update
	// after the meshes started takes 100-250 ms more in every run (the
	// children are still collecting their start-up garbage).
	for round := 1; round <= rounds+1; round++ {
		warmUp := round == 1
		withRejection := round%2 == 0
		if withRejection {
			go plane.Put(fleetBad, BrokenRules(fleetBad)+fmt.Sprintf("# round %d\n", round))
		}
		start := time.Now()
		if err := plane.Put(fleetHot, fleetDoc(fleetHot, round)); err != nil {
			tb.Fatal(err)
		}
		var last time.Duration
		timeout := time.After(30 * time.Second)
		for seen := 0; seen < meshes; {
			select {
			case ev := <-events:
				if ev.round != round {
					continue // a late or early one: rounds are apart
				}
				seen++
				d := ev.at.Sub(start)
				last = max(last, d)
				switch {
				case warmUp:
				case withRejection:
					res.Rejected = append(res.Rejected, d)
				default:
					res.Clean = append(res.Clean, d)
				}
			case <-timeout:
				tb.Fatalf("round %d: %d of %d meshes applied the hot document within 30s", round, seen, meshes)
			}
		}
		tb.Logf("%s round %d (warm-up: %v, rejection at the same moment: %v): all %d meshes applied after %v", plane.Name, round, warmUp, withRejection, meshes, last)
		if !warmUp {
			res.AllApplied = append(res.AllApplied, last)
		}
		// One update a second of one document: faster than ops edit
		// one, and within nacos-sdk-go's limit of 5 reads a second of
		// one item per process (a push costs the SDK's read and one
		// or two of the catalog's).
		time.Sleep(time.Until(start.Add(time.Second)))
	}
	return res
}

// PublishFleet publishes the n documents of a fleet run, workers at a
// time.
func PublishFleet(tb testing.TB, plane FleetPlane, n, workers int) {
	tb.Helper()
	names := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range names {
				if err := plane.Put(FleetName(i), fleetDoc(FleetName(i), 0)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := range n {
		select {
		case names <- i:
		case err := <-errs:
			close(names)
			wg.Wait()
			tb.Fatal(err)
		}
	}
	close(names)
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
}

// RunFleetChild runs one child process of RunFleet, from the value of
// FleetChildEnv: it connects one catalog, starts its meshes on it,
// prints "ready <connections> <heap before> <heap after>", then
// "applied <round> <unix ns>" each time a mesh applies a version of the
// hot document, until its stdin ends.
func RunFleetChild(plane FleetPlane, spec string) {
	fail := func(err error) { fmt.Printf("failed %v\n", err); os.Exit(1) }
	var index, meshes, watched, documents int
	if _, err := fmt.Sscanf(spec, "%d,%d,%d,%d", &index, &meshes, &watched, &documents); err != nil {
		fail(fmt.Errorf("%s=%q: %w", FleetChildEnv, spec, err))
	}
	cat, closeCat, err := plane.Catalog()
	if err != nil {
		fail(err)
	}
	defer closeCat()
	out := make(chan string, 1024)
	var printed sync.WaitGroup
	printed.Add(1)
	go func() {
		defer printed.Done()
		w := bufio.NewWriter(os.Stdout)
		for line := range out {
			w.WriteString(line)
			if len(out) == 0 {
				w.Flush()
			}
		}
		w.Flush()
	}()
	before := liveHeap()
	rnd := rand.New(rand.NewPCG(uint64(index), 1))
	var all []*mesh.Mesh
	for i := range meshes {
		names := []string{fleetHot, fleetBad}
		for len(names) < watched {
			if n := FleetName(2 + rnd.IntN(documents-2)); !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		var m *mesh.Mesh
		var mready = make(chan struct{})
		onChange := func(ev mesh.RulesEvent) {
			<-mready
			if ev.Err != nil || ev.Document != fleetHot {
				return
			}
			now := time.Now()
			if p := m.Table().Rules().Policy(fleetHot); p != nil {
				out <- fmt.Sprintf("applied %d %d\n", p.Default.Timeout.Milliseconds()-1, now.UnixNano())
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		m, err = mesh.New(ctx, mesh.WithRuleCatalog(cat), mesh.WithServices(names...),
			mesh.WithOnRulesChange(onChange), mesh.WithStartTimeout(time.Minute))
		cancel()
		if err != nil {
			fail(fmt.Errorf("mesh %d: %w", i, err))
		}
		close(mready)
		all = append(all, m)
	}
	after := liveHeap()
	out <- fmt.Sprintf("ready %d %d %d\n", TCPConnsTo(plane.Port), before, after)
	io.Copy(io.Discard, os.Stdin)
	for _, m := range all {
		m.Close()
	}
	close(out)
	printed.Wait()
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TCPConnsTo counts this process's established TCP connections whose
// remote port is port: the sockets among its open files that
// /proc/net/tcp and tcp6 (which list every socket of the network
// namespace) show established to that port; -1 when they cannot be read.
func TCPConnsTo(port int) int {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	mine := map[string]bool{}
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:[") {
			mine[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	want := strings.ToUpper(hex.EncodeToString([]byte{byte(port >> 8), byte(port)}))
	n := 0
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			return -1
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			// f[2] is the remote address as hex ADDR:PORT, f[3] the
			// state (01: established), f[9] the socket's inode.
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "01" && strings.HasSuffix(f[2], ":"+want) && mine[f[9]] {
				n++
			}
		}
	}
	return n
}

// Percentile returns the q-quantile (0..1) of ds, nearest rank.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ReportFleet reports res as the benchmark's metrics: the per-mesh
// latency (p50, p99) of clean rounds and of rounds with a concurrent
// rejection, the p99 of the time until every mesh had applied, the most
// connections a process held and the heap per mesh. It fails b when a
// process held more than one connection to the control plane.
func ReportFleet(b *testing.B, plane FleetPlane, res FleetResult) {
	if res.Conns != 1 {
		b.Errorf("a process held %d connections to %s, want 1", res.Conns, plane.Name)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(Percentile(res.Clean, 0.5)), "p50-ms")
	b.ReportMetric(ms(Percentile(res.Clean, 0.99)), "p99-ms")
	b.ReportMetric(ms(Percentile(res.Rejected, 0.99)), "p99-with-rejection-ms")
	b.ReportMetric(ms(Percentile(res.AllApplied, 0.99)), "all-applied-p99-ms")
	b.ReportMetric(float64(res.Conns), "conns/process")
	b.ReportMetric(float64(res.HeapPerMesh)/(1<<20), "heap-MB/mesh")
}
