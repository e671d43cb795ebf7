package nacos

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/lightmesh/lightmesh/discovery"
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
	deadline := time.Now().Add(10 * time.Second)
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
	r1, err := Register(cfg, service, group, discovery.Instance{Address: ":18081"})
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	host, _, _ := net.SplitHostPort(r1.Address())
	if ip, err := netip.ParseAddr(host); err != nil || ip.IsLoopback() || !ip.IsGlobalUnicast() {
		t.Fatalf("registered at %s, want a non-loopback address of this machine", r1.Address())
	}
	waitAddresses(t, addrs, r1.Address())
	t.Logf("\":18081\" registered as %s", r1.Address())

	t.Setenv(discovery.HostEnv, "10.42.0.7")
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
