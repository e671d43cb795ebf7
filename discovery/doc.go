// Package discovery describes service instances, the sources that report
// them and the balancer that picks one inside a subset.
//
// A Source streams the complete instance list of a service each time it
// changes; the static source here serves lists the program sets itself, and
// the control-plane adapters (Nacos, etcd) live in subpackages. A Picker is
// an immutable, lock-free smooth weighted round-robin over one list.
package discovery
