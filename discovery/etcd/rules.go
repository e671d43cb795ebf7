package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/rules"
)

// errWatchClosed ends a watch whose channel closed without an error: the
// client was closed or the watch was dropped.
var errWatchClosed = errors.New("watch channel closed")

// RuleSource is a rules.Source reading a rule document from one etcd key.
// Use NewRuleSource. Its Watch may be called again after it returns, and
// by several callers at once (each gets its own etcd watch).
//
// A key that does not exist delivers no document, only the nil Document
// that tells the mesh etcd answered: Watch logs it, keeps watching and
// delivers the document as soon as it is put, with no retry delay (a mesh
// started without WithStartEmpty still fails New when no document
// arrives within its start timeout). A key that is deleted while
// watched is logged and otherwise ignored, so the last rules keep
// serving; put it again to change them.
type RuleSource struct {
	key  string
	docs docWatcher
}

var _ rules.Source = (*RuleSource)(nil)

// NewRuleSource returns a source for the document stored at key. cli is
// used, never closed. It reads WithLogger, WithRequestTimeout and
// WithHealthInterval.
func NewRuleSource(cli *clientv3.Client, key string, opts ...Option) *RuleSource {
	cfg := newConfig(opts)
	return &RuleSource{key: key, docs: docWatcher{cli: cli, cfg: cfg, health: newHealthCheck(cli, key, cfg)}}
}

// String implements rules.Source: "etcd:<key>".
func (s *RuleSource) String() string { return "etcd:" + s.key }

// Watch implements rules.Source. Each document is delivered with its mod
// revision as the version. It returns the error that ended the watch
// (wrapping rpctypes.ErrCompacted when the revision it resumed from was
// compacted, rpctypes.ErrNoLeader when the member lost its leader, a
// deadline error when a read or health check got no answer in time) or
// ctx.Err() when ctx ends; calling it again re-reads the key first.
func (s *RuleSource) Watch(ctx context.Context, update func(rules.Document)) error {
	if s.docs.cli == nil {
		return errors.New("etcd: rule source has no client")
	}
	if s.key == "" {
		return errors.New("etcd: rule source has an empty key")
	}
	return s.docs.watch(ctx, s.key, update)
}

// docWatcher follows rule documents, one etcd key each: the read-then-
// watch loop of RuleSource and Catalog.
type docWatcher struct {
	cli    *clientv3.Client
	cfg    config
	health *healthCheck // one check for every watch of the owner
	// catalog selects the rules.Catalog behaviour: a deleted key
	// delivers the nil Document, and a missing key is logged at info
	// level (a service without rules of its own is common). Otherwise,
	// as RuleSource documents, a deletion is logged and ignored and a
	// missing key is a warning.
	catalog bool
}

// watch delivers the document at key to update: the current value, or
// the nil Document when the key does not exist, then every later put,
// until the watch fails, the health check fails or ctx ends. It returns
// ctx.Err() once ctx has ended, else the error that ended the watch.
func (w docWatcher) watch(ctx context.Context, key string, update func(rules.Document)) error {
	// wctx ends with ctx or with the first failed health check, which
	// cancels it with its error as the cause: that reaches the watch
	// wherever it waits, the etcd client's Watch call included (see
	// healthCheck).
	wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	defer cancel(nil)
	defer w.health.subscribe(cancel)()
	// fail returns the error that ended the watch.
	fail := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil:
			return context.Cause(wctx) // the health check's error
		}
		return err
	}
	rctx, rcancel := context.WithTimeout(wctx, w.cfg.requestTimeout)
	resp, err := w.cli.Get(rctx, key)
	rcancel()
	if err != nil {
		return fail(fmt.Errorf("etcd: get %s: %w", key, err))
	}
	if len(resp.Kvs) == 0 {
		level := slog.LevelWarn
		if w.catalog {
			// Most services of a fleet have no document of their own:
			// the defaults apply, and the mesh's status shows it.
			level = slog.LevelDebug
		}
		w.cfg.logger.Log(ctx, level, "lightmesh: etcd rule key does not exist; waiting for it", "key", key)
		update(rules.Document{}) // etcd answered: connected, with nothing to deliver
	} else {
		update(document(resp.Kvs[0]))
	}
	wch := w.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1))
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-wch:
		case <-wctx.Done():
			return fail(nil)
		}
		if !ok {
			return fail(fmt.Errorf("etcd: watch %s: %w", key, errWatchClosed))
		}
		if err := wr.Err(); err != nil {
			return fail(fmt.Errorf("etcd: watch %s: %w", key, err))
		}
		// Only the last event of a batch matters: the document is state,
		// not a stream of changes.
		var last *clientv3.Event
		for _, ev := range wr.Events {
			last = ev
			if ev.Type == clientv3.EventTypeDelete && !w.catalog {
				w.cfg.logger.Warn("lightmesh: etcd rule key deleted; last rules keep serving", "key", key, "revision", ev.Kv.ModRevision)
			}
		}
		switch {
		case last == nil:
		case last.Type == clientv3.EventTypePut:
			update(document(last.Kv))
		case last.Type == clientv3.EventTypeDelete && w.catalog:
			w.cfg.logger.Info("lightmesh: etcd rule key deleted", "key", key, "revision", last.Kv.ModRevision)
			update(rules.Document{})
		}
	}
}

// document returns kv as a rule document; an empty value is an empty
// document (which the mesh rejects), never a nil one, which would say
// that there is none.
func document(kv *mvccpb.KeyValue) rules.Document {
	data := kv.Value
	if data == nil {
		data = []byte{}
	}
	return rules.Document{Data: data, Version: strconv.FormatInt(kv.ModRevision, 10)}
}
