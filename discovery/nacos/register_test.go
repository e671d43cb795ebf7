package nacos

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/meshtest"
)

// watchAddresses follows service through d and returns the addresses it
// last reported.
func watchAddresses(t *testing.T, d *Discovery, service string) func() []string {
	t.Helper()
	ch := make(chan []string, 64)
	keepWatching(t, d, service, func(ins []discovery.Instance) {
		var a []string
		for _, in := range ins {
			a = append(a, in.Address)
		}
		ch <- a
	})
	var last []string
	return func() []string {
		for {
			select {
			case last = <-ch:
				continue
			default:
			}
			return last
		}
	}
}

func waitAddresses(t *testing.T, get func() []string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // the SDK re-reads a service every 10 s, making up for a lost push
	for {
		got := get()
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery reports %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRegisterFindsItsAddress: Register and Discovery.Register take an
// address without a host, as a server's listen address is written
// (":8080"), and register the address other processes reach: POD_IP
// when set, else the address of the default route's interface, never
// loopback. Discovery.Register shares the discovery's naming client:
// deregistering leaves it working.
func TestRegisterFindsItsAddress(t *testing.T) {
	cfg := testConfig(t)
	group := "LIGHTMESH_TEST"
	service := unique("lm-addr")
	disc, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	addrs := watchAddresses(t, disc, service)

	t.Setenv(discovery.HostEnv, "")
	var r1 *Registration
	eventually(t, "register", func() (err error) {
		r1, err = Register(cfg, service, group, discovery.Instance{Address: ":18081"})
		return err
	})
	defer r1.Close()
	host, _, _ := net.SplitHostPort(r1.Address())
	if ip, err := netip.ParseAddr(host); err != nil || ip.IsLoopback() || !ip.IsGlobalUnicast() {
		t.Fatalf("registered at %s, want a non-loopback address of this machine", r1.Address())
	}
	waitAddresses(t, addrs, r1.Address())
	t.Logf("\":18081\" registered as %s", r1.Address())

	t.Setenv(discovery.HostEnv, "10.42.0.7")
	waitConnected(t, disc)
	r2, err := disc.Register(service, discovery.Instance{Address: "0.0.0.0:18082"})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Address() != "10.42.0.7:18082" {
		t.Fatalf("with POD_IP=10.42.0.7, registered at %s", r2.Address())
	}
	want := []string{"10.42.0.7:18082", r1.Address()}
	slices.Sort(want)
	waitAddresses(t, addrs, want...)

	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, addrs, r1.Address())
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	// The discovery's client is still open: it saw the last one leave.
	waitAddresses(t, addrs)
}

// TestReplacedRegistrationClose: Nacos 2.x keeps one instance per
// service and connection, so a second Discovery.Register of a service
// replaces the first, as documented. Closing the replaced registration
// afterwards (a program that registers its new address, then closes the
// old registration) must leave the instance that replaced it
// registered: Nacos deregisters by service and connection, whatever the
// address, so the old registration's Close used to remove the new one.
func TestReplacedRegistrationClose(t *testing.T) {
	cfg := testConfig(t)
	group := "LIGHTMESH_TEST"
	service := unique("lm-replace")
	disc, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer disc.Close()
	watcher, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	addrs := watchAddresses(t, watcher, service)
	waitConnected(t, disc)
	old, err := disc.Register(service, discovery.Instance{Address: "10.42.0.7:18083"})
	if err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, addrs, "10.42.0.7:18083")
	cur, err := disc.Register(service, discovery.Instance{Address: "10.42.0.8:18083"})
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	waitAddresses(t, addrs, "10.42.0.8:18083")
	if err := old.Close(); err != nil {
		t.Errorf("closing the replaced registration: %v", err)
	}
	// The server pushes a naming change within about 0.5 s.
	time.Sleep(2 * time.Second)
	if got := addrs(); !slices.Equal(got, []string{"10.42.0.8:18083"}) {
		t.Fatalf("after closing the replaced registration, discovery reports %v, want [10.42.0.8:18083]", got)
	}
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	waitAddresses(t, addrs)
}

// TestOutageFailedRegisterLeavesNothingBehind: a Discovery.Register that
// returns an error (here: the connection to the server is down) leaves
// no instance to appear once the client reconnects, and does not take
// the place of the service's registration in force. The SDK keeps every
// instance it was asked to register, failed or not, and registers it by
// itself on the next connection: the failed one used to appear then,
// registered with no Registration to close it, replacing the one that
// was.
func TestOutageFailedRegisterLeavesNothingBehind(t *testing.T) {
	cfg := testConfig(t)
	skipUnderRace(t)
	group := "LIGHTMESH_TEST"
	watcher, err := NewDiscovery(cfg, group)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	// setUp returns a discovery connected through a relay, and the relay.
	setUp := func(t *testing.T) (*Discovery, *relay) {
		r := startRelay(t, cfg.Addresses[0])
		relayed := cfg
		relayed.Addresses = []string{r.addr}
		disc, err := NewDiscovery(relayed, group)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { disc.Close() })
		meshtest.WaitFor(t, 30*time.Second, "the relayed client connected", disc.client.ServerHealthy)
		return disc, r
	}
	// failRegister cuts the relay, registers addr, which must fail, and
	// restores the relay until the client has connected again.
	failRegister := func(t *testing.T, disc *Discovery, r *relay, service, addr string) {
		r.cut()
		meshtest.WaitFor(t, 30*time.Second, "the client saw the connection go", func() bool { return !disc.client.ServerHealthy() })
		if reg, err := disc.Register(service, discovery.Instance{Address: addr}); err == nil {
			reg.Close()
			t.Fatal("Register succeeded with the server unreachable")
		}
		r.restore()
		meshtest.WaitFor(t, 30*time.Second, "the client connected again", disc.client.ServerHealthy)
	}

	t.Run("first registration", func(t *testing.T) {
		service := unique("lm-failreg")
		addrs := watchAddresses(t, watcher, service)
		// A marker, registered by a client of its own: the watcher has
		// delivered once it reports it.
		marker, err := Register(cfg, service, group, discovery.Instance{Address: "10.42.0.9:18086"})
		if err != nil {
			t.Fatal(err)
		}
		defer marker.Close()
		waitAddresses(t, addrs, "10.42.0.9:18086")
		disc, r := setUp(t)
		failRegister(t, disc, r, service, "10.42.0.9:18085")
		// The SDK's own re-registration runs as it connects; its push
		// reaches the watcher within about 0.5 s.
		time.Sleep(3 * time.Second)
		if got := addrs(); !slices.Equal(got, []string{"10.42.0.9:18086"}) {
			t.Fatalf("after a failed Register and a reconnect, discovery reports %v, want the marker only", got)
		}
	})

	t.Run("replacing a registration", func(t *testing.T) {
		service := unique("lm-failreg")
		addrs := watchAddresses(t, watcher, service)
		disc, r := setUp(t)
		cur, err := disc.Register(service, discovery.Instance{Address: "10.42.0.9:18087"})
		if err != nil {
			t.Fatal(err)
		}
		waitAddresses(t, addrs, "10.42.0.9:18087")
		failRegister(t, disc, r, service, "10.42.0.9:18088")
		// The server dropped the instance with the connection; the
		// registration in force comes back, not the failed one.
		meshtest.WaitFor(t, 15*time.Second, "an instance registered again", func() bool { return len(addrs()) > 0 })
		time.Sleep(time.Second) // a replacement would follow within about 0.5 s
		if got := addrs(); !slices.Equal(got, []string{"10.42.0.9:18087"}) {
			t.Fatalf("after a failed replacing Register and a reconnect, discovery reports %v, want [10.42.0.9:18087]", got)
		}
		if err := cur.Close(); err != nil {
			t.Fatal(err)
		}
		waitAddresses(t, addrs)
	})
}
