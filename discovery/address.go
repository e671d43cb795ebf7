package discovery

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
)

// HostEnv is the environment variable AdvertiseAddress reads first: the
// address Kubernetes gives a pod through the downward API
// (env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]).
const HostEnv = "POD_IP"

// AdvertiseAddress returns the address other processes reach this one at,
// for a listener at addr ("host:port"). An addr with a host, other than
// an unspecified one (0.0.0.0, ::), is returned unchanged, loopback
// included: the caller said so. Otherwise the host is, in this order:
//   - the value of the environment variable HostEnv (POD_IP), taken as
//     given;
//   - the address of the interface that holds the default route (the one
//     the kernel would send a packet to the internet from; nothing is
//     sent);
//   - the first IPv4, then IPv6, global unicast address of an interface
//     that is up and not a loopback.
//
// It never picks a loopback or link-local address by itself, and fails,
// naming HostEnv, when there is no other. This is what go-zero
// (netx.InternalIp) and kratos (internal/host.Extract) do.
func AdvertiseAddress(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("discovery: advertise address %.80q: want host:port or :port", addr)
	}
	if ip, err := netip.ParseAddr(host); host != "" && (err != nil || !ip.IsUnspecified()) {
		return addr, nil
	}
	if v := os.Getenv(HostEnv); v != "" {
		return net.JoinHostPort(v, port), nil
	}
	ip, err := routedIP()
	if err != nil {
		return "", fmt.Errorf("discovery: advertise address for %s: %w; set %s or give the host", addr, err, HostEnv)
	}
	return net.JoinHostPort(ip.String(), port), nil
}

// routedIP returns the address of the interface holding the default
// route, or else the first suitable interface address.
func routedIP() (netip.Addr, error) {
	for _, network := range []string{"udp4", "udp6"} {
		// A UDP "connection" only asks the kernel for a route; it sends
		// nothing. The destinations are documentation addresses
		// (RFC 5737, RFC 3849), reached through the default route.
		dst := "198.51.100.1:9"
		if network == "udp6" {
			dst = "[2001:db8::1]:9"
		}
		c, err := net.Dial(network, dst)
		if err != nil {
			continue
		}
		local := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
		if usable(local) {
			return local, nil
		}
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	var v6 netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil || !usable(p.Addr()) {
				continue
			}
			if ip := p.Addr().Unmap(); ip.Is4() {
				return ip, nil
			} else if !v6.IsValid() {
				v6 = ip
			}
		}
	}
	if v6.IsValid() {
		return v6, nil
	}
	return netip.Addr{}, errors.New("no address but loopback or link-local")
}

// usable reports whether ip can be advertised: global unicast (private
// ranges included), not loopback or link-local.
func usable(ip netip.Addr) bool {
	return ip.IsValid() && ip.IsGlobalUnicast() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast()
}
