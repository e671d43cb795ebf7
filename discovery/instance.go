package discovery

import (
	"fmt"
	"net"
	"strconv"
)

// Instance is one reachable copy of a service.
type Instance struct {
	// Address is host:port.
	Address string `json:"address"`
	// Weight is the instance's relative share of its subset's traffic;
	// zero means 1. Negative weights are invalid.
	Weight int `json:"weight,omitempty"`
	// Labels are the instance's metadata labels (env=staging); subsets
	// select instances by them.
	Labels map[string]string `json:"labels,omitempty"`
	// Unhealthy marks an instance that must get no traffic (failing its
	// health checks, disabled in the registry). The zero value is healthy.
	Unhealthy bool `json:"unhealthy,omitempty"`
}

// Limits on instance metadata; values beyond them make Validate fail.
const (
	MaxLabels        = 64
	MaxLabelKeyLen   = 128
	MaxLabelValueLen = 256
	// MaxHostLen bounds the host of an address: the length limit of a DNS
	// name, which IP addresses are well within.
	MaxHostLen = 253
)

// Validate reports whether the instance can be routed to: a host:port
// address with a valid port, a non-negative weight and bounded labels.
func (in Instance) Validate() error {
	host, port, err := net.SplitHostPort(in.Address)
	if err != nil || host == "" {
		return fmt.Errorf("discovery: instance address %.80q: want host:port", in.Address)
	}
	if len(host) > MaxHostLen {
		return fmt.Errorf("discovery: instance address %.80q...: host is %d bytes, over the limit of %d", in.Address, len(host), MaxHostLen)
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 || len(port) > 5 {
		return fmt.Errorf("discovery: instance address %.80q: invalid port", in.Address)
	}
	if in.Weight < 0 {
		return fmt.Errorf("discovery: instance %s: weight %d must be >= 0", in.Address, in.Weight)
	}
	if len(in.Labels) > MaxLabels {
		return fmt.Errorf("discovery: instance %s: %d labels, over the limit of %d", in.Address, len(in.Labels), MaxLabels)
	}
	for k, v := range in.Labels {
		if k == "" || len(k) > MaxLabelKeyLen || len(v) > MaxLabelValueLen {
			return fmt.Errorf("discovery: instance %s: label %.40q: key must be 1..%d bytes and value at most %d", in.Address, k, MaxLabelKeyLen, MaxLabelValueLen)
		}
	}
	return nil
}

// HasLabels reports whether the instance carries every label in want.
func (in *Instance) HasLabels(want map[string]string) bool {
	for k, v := range want {
		if got, ok := in.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (in *Instance) weight() int {
	if in.Weight <= 0 {
		return 1
	}
	return in.Weight
}
