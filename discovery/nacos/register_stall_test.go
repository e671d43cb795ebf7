package nacos

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
)

// These tests hold back the server's answers (relay.hold) while the
// connection stays up and the client's requests reach the server: a
// Register then times out after the server registered the instance, and
// nacos-sdk-go takes the client for unhealthy until a server check is
// answered on the same connection, then registers again ("redo") a
// snapshot of the instances it was asked to register. What the caller
// was told (an error, or a Close that returned nil) must be what the
// server ends with.

// stallSetup returns a watcher of service through cfg, and a Discovery
// through a relay whose requests time out after 1 s, with `others`
// services registered through it first (a process registering its
// services through one Discovery, as documented).
func stallSetup(t *testing.T, cfg Config, service string, delay time.Duration, others int) (addrs func() []string, disc *Discovery, r *relay) {
	t.Helper()
	skipUnderRace(t)
	group := "LIGHTMESH_TEST"
	watcher, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watcher.Close() })
	waitConnected(t, watcher)
	addrs = watchAddresses(t, watcher, service)
	r = startRelay(t, cfg.Addresses[0])
	r.delay = delay
	relayed := cfg
	relayed.Addresses = []string{r.addr}
	relayed.TimeoutMs = 1000
	disc, err = NewDiscovery(relayed, group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disc.Close() })
	waitConnected(t, disc)
	for i := range others {
		o, err := disc.Register(unique("lm-stall-other"), discovery.Instance{Address: fmt.Sprintf("10.42.2.%d:18096", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
	}
	return addrs, disc, r
}

// stalledRegister registers addr through disc with the server's answers
// held back for stall; the Register must fail.
func stalledRegister(t *testing.T, disc *Discovery, r *relay, service, addr string, stall time.Duration) {
	t.Helper()
	r.hold()
	time.AfterFunc(stall, r.release) // which may come after Register returned
	start := time.Now()
	reg, err := disc.Register(service, discovery.Instance{Address: addr})
	if err == nil {
		reg.Close()
		t.Fatalf("Register succeeded with the server's answers held back for %v", stall)
	}
	t.Logf("Register failed after %v (answers held back for %v): %v", time.Since(start).Round(time.Millisecond), stall, firstLine(err))
}

// settlesOn waits until the watcher reports want, for up to 15 s (the
// server may have the failed instance for a moment), and then checks it
// still does 2 s later.
func settlesOn(t *testing.T, addrs func() []string, what string, want ...string) {
	t.Helper()
	start := time.Now()
	meshtest.WaitFor(t, 15*time.Second, what, func() bool { return slices.Equal(addrs(), want) })
	time.Sleep(2 * time.Second)
	if got := addrs(); !slices.Equal(got, want) {
		t.Fatalf("%s, then discovery reports %v, want %v", what, got, want)
	}
	t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
}

// TestOutageFailedRegisterWhoseAnswerIsLate: a Register whose request reached
// the server and whose answer came after the timeout leaves nothing
// registered, although the SDK's own undo was refused (the client was
// unhealthy until its server check was answered, on the same
// connection, which keeps what it registered).
func TestOutageFailedRegisterWhoseAnswerIsLate(t *testing.T) {
	service := unique("lm-stall-late")
	addrs, disc, r := stallSetup(t, testConfig(t), service, 0, 0)
	// A marker on the watched service: the watcher is known to have
	// delivered when it reports it.
	marker, err := Register(testConfig(t), service, "LIGHTMESH_TEST", discovery.Instance{Address: "10.42.0.9:18090"})
	if err != nil {
		t.Fatal(err)
	}
	defer marker.Close()
	waitAddresses(t, addrs, "10.42.0.9:18090")
	stalledRegister(t, disc, r, service, "10.42.0.9:18091", 1600*time.Millisecond)
	settlesOn(t, addrs, "the failed instance gone", "10.42.0.9:18090")
}

// TestOutageFailedReplacementWhoseAnswerIsLate: the same with a registration
// in force through the Discovery: it comes back in place of the failed
// one, and its Close removes it.
func TestOutageFailedReplacementWhoseAnswerIsLate(t *testing.T) {
	service := unique("lm-stall-repl")
	addrs, disc, r := stallSetup(t, testConfig(t), service, 0, 0)
	cur, err := disc.Register(service, discovery.Instance{Address: "10.42.0.9:18093"})
	if err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, addrs, "10.42.0.9:18093")
	stalledRegister(t, disc, r, service, "10.42.0.9:18094", 1600*time.Millisecond)
	settlesOn(t, addrs, "the registration in force back", "10.42.0.9:18093")
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, addrs)
}

// TestOutageFailedRegisterRacingTheRedo: the SDK's redo, started by the server
// check that follows the failed request, registers a snapshot taken
// before the undo, one instance at a time (answers take 40 ms here, a
// remote server; four other services come first about half the time):
// it can register the failed instance again after the undo. It must not
// stay. Answers are held back so that the server check is answered while
// the undo is still being tried, at a few moments.
func TestOutageFailedRegisterRacingTheRedo(t *testing.T) {
	for trial := range 4 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			service := unique("lm-stall-race")
			addrs, disc, r := stallSetup(t, testConfig(t), service, 40*time.Millisecond, 4)
			marker, err := Register(testConfig(t), service, "LIGHTMESH_TEST", discovery.Instance{Address: "10.42.1.9:18090"})
			if err != nil {
				t.Fatal(err)
			}
			defer marker.Close()
			waitAddresses(t, addrs, "10.42.1.9:18090")
			stalledRegister(t, disc, r, service, "10.42.1.1:18095", 1050*time.Millisecond+time.Duration(trial)*45*time.Millisecond)
			settlesOn(t, addrs, "the failed instance gone", "10.42.1.9:18090")
		})
	}
}

// TestOutageCloseAfterAFailedReplacement: a service whose replacing Register
// failed closes the registration in force (it gives up and shuts down):
// Close returns nil and the service must leave, although the redo the
// failed request started may register it again after Close's
// deregistration.
func TestOutageCloseAfterAFailedReplacement(t *testing.T) {
	for trial := range 6 {
		t.Run(fmt.Sprint(trial), func(t *testing.T) {
			service := unique("lm-stall-close")
			addrs, disc, r := stallSetup(t, testConfig(t), service, 40*time.Millisecond, 4)
			cur, err := disc.Register(service, discovery.Instance{Address: "10.42.3.1:18097"})
			if err != nil {
				t.Fatal(err)
			}
			waitAddresses(t, addrs, "10.42.3.1:18097")
			stalledRegister(t, disc, r, service, "10.42.4.1:18098", 1050*time.Millisecond+time.Duration(trial)*30*time.Millisecond)
			if err := cur.Close(); err != nil {
				t.Fatal(err)
			}
			settlesOn(t, addrs, "the closed service gone")
		})
	}
}
