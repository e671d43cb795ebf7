// Package etcd serves lightmesh rule documents and service instances from
// etcd, over a *clientv3.Client that the caller creates, configures
// (endpoints, TLS, credentials) and closes.
//
// RuleSource reads one key holding a rule document and watches it;
// Discovery reads the instances of a service from a key prefix and
// watches the prefix; Register puts the current process under that prefix
// with a lease kept alive in the background, so a process that dies
// without deregistering disappears after the lease's TTL.
//
// # Layout
//
// The rule document is the value of one key, for example
// /lightmesh/rules. The instances of service S live under
// <prefix>/<S>/<instance-id>, each value one JSON object in the shape of
// discovery.Instance:
//
//	/lightmesh/services/user-api/pod-7f9c  {"address":"10.0.0.1:8080","weight":1,"labels":{"env":"staging"}}
//
// # Consistency
//
// Both sources are state-based: each Watch call first reads the current
// value (a Get, which also gives the store revision) and then watches from
// the revision after it, so nothing between the read and the watch is
// missed. While the connection is down the etcd client resumes the watch
// from the last revision it saw. When that revision has been compacted
// meanwhile, or the watch fails in any other way, Watch returns the error
// and the caller (the mesh's watch loop) calls Watch again, which re-reads
// the current value: an update is never lost, at worst it arrives as part
// of a full re-read. Watches carry clientv3.WithRequireLeader, so a member
// cut off from its cluster ends the watch instead of going silent.
//
// # TLS and credentials
//
// TLS and authentication are the client's: set clientv3.Config.TLS (a
// *tls.Config whose RootCAs hold the server's CA, and Certificates when
// the server asks for a client certificate) and Username and Password
// before clientv3.New, which logs in at once. This package never sees the
// password, and its errors and log lines name keys and prefixes, never
// the client's configuration.
//
// A client that cannot connect (a CA it does not trust, plaintext to a
// TLS-only server) does not fail: its calls wait, so mesh.New fails with
// "no document received" and nothing more. Call Check with a deadline at
// startup for an error that says why, or give the client a Logger: the
// etcd client logs the connection error at warn level.
package etcd
