// Package etcd serves lightmesh rule documents and service instances from
// etcd, over a *clientv3.Client that the caller creates, configures
// (endpoints, TLS, credentials) and closes.
//
// RuleSource reads one key holding the whole rule document and watches
// it; Catalog (a rules.Catalog, for mesh.WithRuleCatalog) reads the rules
// of each service from a key of its own under a prefix, plus a key for
// the fleet-wide defaults, and watches each key a mesh asks for;
// Discovery reads the instances of a service from a key prefix and
// watches the prefix; Register puts the current process under that prefix
// with a lease kept alive in the background, so a process that dies
// without deregistering disappears after the lease's TTL.
//
// Create one client per process and share it: every mesh, catalog, source
// and registration of the process can use it. The etcd client sends all
// their requests over its one connection per endpoint, and all their
// watches on one gRPC stream of it.
// Each source or catalog checks etcd's health with one count-only read
// per interval, however many keys it watches (see WithHealthInterval).
//
// # Layout
//
// With RuleSource, the rule document is the value of one key, for example
// /lightmesh/rules. With Catalog, the rules of service S are the value of
// <prefix>/<S> and the defaults the value of <prefix>/_defaults
// (rules.DefaultsName), each a document in the same YAML or JSON; with the
// prefix /lightmesh/rules, the team owning user-api publishes its rules
// with
//
//	etcdctl put /lightmesh/rules/user-api "$(cat user-api.yaml)"
//	etcdctl put /lightmesh/rules/_defaults "$(cat defaults.yaml)"
//
// The instances of service S live under <prefix>/<S>/<instance-id>, each
// value one JSON object in the shape of discovery.Instance:
//
//	/lightmesh/services/user-api/pod-7f9c  {"address":"10.0.0.1:8080","weight":1,"labels":{"env":"staging"}}
//
// # Consistency
//
// RuleSource, Catalog and Discovery are state-based: each Watch call
// first reads the current value (a Get, which also gives the store
// revision) and then watches from the revision after it, so nothing
// between the read and the watch is missed. While the connection is down
// the etcd client resumes the watch from the last revision it saw. When
// that revision has been compacted meanwhile, or the watch fails in any
// other way, Watch returns the error and the caller (the mesh's watch
// loop) calls Watch again, which re-reads the current value: an update is
// never lost, at worst it arrives as part of a full re-read. Watches
// carry clientv3.WithRequireLeader, so a member cut off from its cluster
// ends the watch instead of going silent, and a failed health check ends
// every watch of its source or catalog with the check's error, even one
// still waiting for etcd to confirm it.
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
