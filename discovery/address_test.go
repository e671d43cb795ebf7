package discovery

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestAdvertiseAddress(t *testing.T) {
	t.Setenv(HostEnv, "")
	for _, addr := range []string{"10.0.0.1:80", "127.0.0.1:80", "api.internal:8080", "[fd00::1]:80"} {
		if got, err := AdvertiseAddress(addr); err != nil || got != addr {
			t.Errorf("AdvertiseAddress(%q) = %q, %v; want it unchanged", addr, got, err)
		}
	}
	if _, err := AdvertiseAddress("8080"); err == nil {
		t.Error("AdvertiseAddress(\"8080\") succeeded, want an error")
	}

	// No host, no POD_IP: an address of one of this machine's interfaces,
	// never loopback.
	for _, addr := range []string{":8080", "0.0.0.0:8080", "[::]:8080"} {
		got, err := AdvertiseAddress(addr)
		if err != nil {
			if !strings.Contains(err.Error(), HostEnv) {
				t.Errorf("AdvertiseAddress(%q) failed without naming %s: %v", addr, HostEnv, err)
			}
			continue
		}
		host, port, _ := net.SplitHostPort(got)
		ip, perr := netip.ParseAddr(host)
		if perr != nil || ip.IsLoopback() || !ip.IsGlobalUnicast() || port != "8080" {
			t.Errorf("AdvertiseAddress(%q) = %q, want a non-loopback address of this machine on port 8080", addr, got)
		}
		if !ownAddress(t, ip) {
			t.Errorf("AdvertiseAddress(%q) = %q, not an address of this machine's interfaces", addr, got)
		}
		t.Logf("AdvertiseAddress(%q) = %s", addr, got)
	}

	t.Setenv(HostEnv, "10.42.0.7")
	for _, addr := range []string{":8080", "0.0.0.0:8080"} {
		if got, err := AdvertiseAddress(addr); err != nil || got != "10.42.0.7:8080" {
			t.Errorf("with %s=10.42.0.7, AdvertiseAddress(%q) = %q, %v; want 10.42.0.7:8080", HostEnv, addr, got, err)
		}
	}
}

func ownAddress(t *testing.T, ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == ip {
			return true
		}
	}
	return false
}
