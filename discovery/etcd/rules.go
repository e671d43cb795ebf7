package etcd

import (
	"context"
	"errors"
	"fmt"
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
	cli    *clientv3.Client
	key    string
	cfg    config
	health *healthCheck
}

var _ rules.Source = (*RuleSource)(nil)

// NewRuleSource returns a source for the document stored at key. cli is
// used, never closed. It reads WithLogger, WithRequestTimeout and
// WithHealthInterval.
func NewRuleSource(cli *clientv3.Client, key string, opts ...Option) *RuleSource {
	cfg := newConfig(opts)
	return &RuleSource{cli: cli, key: key, cfg: cfg, health: newHealthCheck(cli, key, cfg)}
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
	if s.cli == nil {
		return errors.New("etcd: rule source has no client")
	}
	if s.key == "" {
		return errors.New("etcd: rule source has an empty key")
	}
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	down, release := s.health.subscribe()
	defer release()
	rctx, rcancel := context.WithTimeout(ctx, s.cfg.requestTimeout)
	resp, err := s.cli.Get(rctx, s.key)
	rcancel()
	if err != nil {
		return s.fail(ctx, fmt.Errorf("etcd: get %s: %w", s.key, err))
	}
	if len(resp.Kvs) == 0 {
		s.cfg.logger.Warn("lightmesh: etcd rule key does not exist; waiting for it", "key", s.key)
		update(rules.Document{}) // etcd answered: connected, with nothing to deliver
	} else {
		update(document(resp.Kvs[0]))
	}
	wch := s.cli.Watch(ctx, s.key, clientv3.WithRev(resp.Header.Revision+1))
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-wch:
		case err := <-down:
			return s.fail(ctx, err)
		}
		if !ok {
			break
		}
		if err := wr.Err(); err != nil {
			return s.fail(ctx, fmt.Errorf("etcd: watch %s: %w", s.key, err))
		}
		// Only the last put of a batch matters: the document is state,
		// not a stream of changes.
		var last *clientv3.Event
		for _, ev := range wr.Events {
			switch {
			case ev.Type == clientv3.EventTypePut:
				last = ev
			case ev.Type == clientv3.EventTypeDelete:
				last = nil
				s.cfg.logger.Warn("lightmesh: etcd rule key deleted; last rules keep serving", "key", s.key, "revision", ev.Kv.ModRevision)
			}
		}
		if last != nil {
			update(document(last.Kv))
		}
	}
	return s.fail(ctx, fmt.Errorf("etcd: watch %s: %w", s.key, errWatchClosed))
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

// fail returns ctx's error once ctx has ended, else err.
func (s *RuleSource) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
