package etcd

import (
	"context"
	"errors"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/rules"
)

// Catalog is a rules.Catalog reading one rule document per service from
// etcd: the rules of service S are the value of the key <prefix>/<S>, the
// fleet-wide defaults the value of <prefix>/_defaults (rules.DefaultsName),
// each document YAML or JSON as a RuleSource key holds it. With the prefix
// /lightmesh/rules, the team owning user-api publishes its rules with
//
//	etcdctl put /lightmesh/rules/user-api "$(cat user-api.yaml)"
//	etcdctl put /lightmesh/rules/_defaults "$(cat defaults.yaml)"
//
// Use NewCatalog. Watch may be called by several goroutines at once, for
// different names and for the same one; each call gets its own etcd
// watch, and every watch goes over the one client given to NewCatalog
// (the etcd client carries them all on one gRPC stream of its one
// connection per endpoint). One health check serves every watch of the
// catalog: one count-only read per interval, however many documents are
// watched.
//
// Following the rules.Catalog contract, a key that does not exist and a
// key deleted while watched are both delivered as the nil Document (nil
// Data): the mesh decides what that means, and keeps the last good rules.
// The document is delivered as soon as the key is put. Like RuleSource,
// the catalog does not apply WithMaxValueSize: every value is delivered,
// and the mesh rejects a document over router.MaxDocumentSize, or one
// that does not parse, with an error naming it.
type Catalog struct {
	prefix string
	docs   docWatcher
}

var _ rules.Catalog = (*Catalog)(nil)

// NewCatalog returns a catalog of the documents under prefix (trailing
// slashes are dropped: "/lightmesh/rules" and "/lightmesh/rules/" are the
// same). cli is used, never closed. It reads WithLogger,
// WithRequestTimeout and WithHealthInterval.
func NewCatalog(cli *clientv3.Client, prefix string, opts ...Option) *Catalog {
	cfg := newConfig(opts)
	prefix = cleanPrefix(prefix)
	return &Catalog{prefix: prefix, docs: docWatcher{cli: cli, cfg: cfg, health: newHealthCheck(cli, prefix+"/", cfg), catalog: true}}
}

// String implements rules.Catalog: "etcd:<prefix>/".
func (c *Catalog) String() string { return "etcd:" + c.prefix + "/" }

// Describe implements rules.Catalog: "etcd:<prefix>/<name>", the key
// holding the document called name.
func (c *Catalog) Describe(name string) string { return "etcd:" + c.prefix + "/" + name }

// Watch implements rules.Catalog for the document called name (a service
// name, or rules.DefaultsName): it delivers the value of <prefix>/<name>
// with its mod revision as the version, or the nil Document while the key
// does not exist, then every later put or deletion. A name that cannot be
// one key segment (empty, longer than 253 bytes, holding '/' or control
// characters) is an error. It returns the error that ended the watch
// (wrapping rpctypes.ErrCompacted when the revision it resumed from was
// compacted, rpctypes.ErrNoLeader when the member lost its leader, a
// deadline error when a read or health check got no answer in time) or
// ctx.Err() when ctx ends; calling it again re-reads the key first.
func (c *Catalog) Watch(ctx context.Context, name string, update func(rules.Document)) error {
	if c.docs.cli == nil {
		return errors.New("etcd: rule catalog has no client")
	}
	if err := checkName("rule document", name); err != nil {
		return err
	}
	return c.docs.watch(ctx, c.prefix+"/"+name, update)
}
