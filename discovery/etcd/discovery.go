package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery"
)

// Discovery is a discovery.Source reading instances from etcd: the
// instances of service S are the values under <prefix>/<S>/, one JSON
// object per key in the shape of discovery.Instance. Use NewDiscovery.
// Watch may be called concurrently, for the same or different services.
//
// Values that are not valid JSON, that do not describe a valid instance
// (discovery.Instance.Validate) or that are longer than the value size
// limit are skipped and logged; they never fail the watch. Keys beyond
// the instance limit are ignored and logged.
//
// Delivered instances with equal labels share one Labels map (a fleet has
// a handful of label sets, and sharing them is most of the memory a large
// service costs): treat Labels as read-only, as the mesh does.
type Discovery struct {
	cli    *clientv3.Client
	prefix string
	cfg    config
	health *healthCheck // one check for every watch of this source
}

var _ discovery.Source = (*Discovery)(nil)

// NewDiscovery returns a source for the instances under prefix (trailing
// slashes are dropped: "/lightmesh/services" and "/lightmesh/services/"
// are the same). cli is used, never closed. It reads WithLogger,
// WithMaxValueSize, WithMaxInstances, WithRequestTimeout and
// WithHealthInterval.
func NewDiscovery(cli *clientv3.Client, prefix string, opts ...Option) *Discovery {
	cfg := newConfig(opts)
	prefix = cleanPrefix(prefix)
	return &Discovery{cli: cli, prefix: prefix, cfg: cfg, health: newHealthCheck(cli, prefix+"/", cfg)}
}

// String names the source for logs: "etcd:<prefix>/".
func (d *Discovery) String() string { return "etcd:" + d.prefix + "/" }

// errResync ends one read-and-watch round so the next starts with a fresh
// read; it never leaves Watch.
var errResync = errors.New("resync")

// Watch implements discovery.Source. It delivers the complete list, sorted
// by key, after the first read and after every watch response that
// changed it. It returns the error that ended the watch (wrapping
// rpctypes.ErrCompacted when the revision it resumed from was compacted,
// a deadline error when a read or health check got no answer in time) or
// ctx.Err() when ctx ends; calling it again re-reads the prefix first.
func (d *Discovery) Watch(ctx context.Context, service string, update func([]discovery.Instance)) error {
	if d.cli == nil {
		return errors.New("etcd: discovery has no client")
	}
	if err := checkName("service", service); err != nil {
		return err
	}
	// wctx ends with ctx or with the first failed health check, which
	// cancels it with its error as the cause: that reaches the watch
	// wherever it waits, the etcd client's Watch call included (see
	// healthCheck).
	wctx, cancel := context.WithCancelCause(clientv3.WithRequireLeader(ctx))
	defer cancel(nil)
	defer d.health.subscribe(cancel)()
	dir := d.prefix + "/" + service + "/"
	for {
		err := d.watchOnce(wctx, service, dir, update)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case wctx.Err() != nil:
			return context.Cause(wctx) // the health check's error
		case !errors.Is(err, errResync):
			return err
		}
	}
}

// watchOnce reads dir, delivers the list and follows the watch until it
// fails, ctx ends or the set needs a fresh read (errResync).
func (d *Discovery) watchOnce(ctx context.Context, service, dir string, update func([]discovery.Instance)) error {
	// A round's watch ends with the round, not only with the Watch call.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One key more than the limit tells whether the set was cut.
	rctx, rcancel := context.WithTimeout(ctx, d.cfg.requestTimeout)
	resp, err := d.cli.Get(rctx, dir, clientv3.WithPrefix(), clientv3.WithLimit(int64(d.cfg.maxInstances)+1), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	rcancel()
	if err != nil {
		return fmt.Errorf("etcd: get %s: %w", dir, err)
	}
	set := &instanceSet{d: d, service: service, dir: dir, entries: make(map[string]discovery.Instance, len(resp.Kvs))}
	kvs := resp.Kvs
	if len(kvs) > d.cfg.maxInstances || resp.More {
		set.cut = true
		kvs = kvs[:min(len(kvs), d.cfg.maxInstances)]
		d.cfg.logger.Warn("lightmesh: etcd instance list cut", "service", service, "limit", d.cfg.maxInstances)
	}
	for _, kv := range kvs {
		set.put(kv)
	}
	rev := resp.Header.Revision
	resp, kvs = nil, nil // let the read's buffers go before the watch runs for hours
	update(set.list())

	wch := d.cli.Watch(ctx, dir, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-wch:
		case <-ctx.Done():
			return ctx.Err()
		}
		changed := false
		// Apply every response already waiting before delivering, so a
		// burst of registrations costs one delivery, not one per key.
		for ok {
			if err := wr.Err(); err != nil {
				return fmt.Errorf("etcd: watch %s: %w", dir, err)
			}
			c, err := set.apply(wr.Events)
			if err != nil {
				return err
			}
			changed = changed || c
			select {
			case wr, ok = <-wch:
				continue
			default:
			}
			break
		}
		if !ok {
			return fmt.Errorf("etcd: watch %s: %w", dir, errWatchClosed)
		}
		if changed {
			update(set.list())
		}
	}
}

// instanceSet is the instances of one service as last read, keyed by the
// etcd key. It is owned by one Watch call.
type instanceSet struct {
	d       *Discovery
	service string
	dir     string
	entries map[string]discovery.Instance
	cut     bool // keys were ignored because of the instance limit
	// labelSets interns label maps: instances with the same labels (most
	// of a fleet shares a handful of sets) share one read-only map.
	labelSets map[string]map[string]string
}

// maxLabelSets bounds the intern table; label sets beyond it are kept
// per instance.
const maxLabelSets = 1024

// put decodes kv into the set, or drops its key when the value is bad.
// It reports whether the set changed.
func (s *instanceSet) put(kv *mvccpb.KeyValue) bool {
	key := string(kv.Key)
	in, err := s.decode(kv)
	if err != nil {
		s.d.cfg.logger.Warn("lightmesh: etcd instance value skipped", "service", s.service, "key", key, "err", err)
		return s.drop(key)
	}
	old, had := s.entries[key]
	if !had && len(s.entries) >= s.d.cfg.maxInstances {
		s.cut = true
		s.d.cfg.logger.Warn("lightmesh: etcd instance ignored: service at its instance limit", "service", s.service, "key", key, "limit", s.d.cfg.maxInstances)
		return false
	}
	s.entries[key] = in
	return !had || !sameInstance(old, in)
}

func (s *instanceSet) drop(key string) bool {
	if _, ok := s.entries[key]; !ok {
		return false
	}
	delete(s.entries, key)
	return true
}

// apply folds watch events into the set. It returns errResync when a
// delete frees room in a set that was cut, so the ignored keys get their
// turn.
func (s *instanceSet) apply(events []*clientv3.Event) (bool, error) {
	changed := false
	for _, ev := range events {
		switch ev.Type {
		case clientv3.EventTypePut:
			changed = s.put(ev.Kv) || changed
		case clientv3.EventTypeDelete:
			if s.drop(string(ev.Kv.Key)) {
				changed = true
				if s.cut {
					return changed, errResync
				}
			}
		}
	}
	return changed, nil
}

// decode turns one value into an instance, bounded and validated.
func (s *instanceSet) decode(kv *mvccpb.KeyValue) (discovery.Instance, error) {
	var in discovery.Instance
	id := strings.TrimPrefix(string(kv.Key), s.dir)
	if err := checkName("instance", id); err != nil {
		return in, err
	}
	if len(kv.Value) > s.d.cfg.maxValueSize {
		return in, fmt.Errorf("value of %d bytes, over the limit of %d", len(kv.Value), s.d.cfg.maxValueSize)
	}
	if err := json.Unmarshal(kv.Value, &in); err != nil {
		return discovery.Instance{}, fmt.Errorf("value is not an instance object: %w", err)
	}
	if err := in.Validate(); err != nil {
		return discovery.Instance{}, err
	}
	in.Labels = s.intern(in.Labels)
	return in, nil
}

// intern returns the shared map equal to labels, adding labels to the
// table when it has room. Empty sets become nil.
func (s *instanceSet) intern(labels map[string]string) map[string]string {
	if len(labels) == 0 {
		return nil
	}
	keys := slices.Sorted(maps.Keys(labels))
	// Each key and value is preceded by its length: labels may hold any
	// byte, so a separator alone would let {"a\x00b": "c"} and
	// {"a": "b\x00c"} share an id, and one instance take the other's labels.
	var b []byte
	for _, k := range keys {
		b = strconv.AppendInt(b, int64(len(k)), 10)
		b = append(b, ':')
		b = append(b, k...)
		b = strconv.AppendInt(b, int64(len(labels[k])), 10)
		b = append(b, ':')
		b = append(b, labels[k]...)
	}
	id := string(b)
	if shared, ok := s.labelSets[id]; ok {
		return shared
	}
	if s.labelSets == nil {
		s.labelSets = make(map[string]map[string]string)
	}
	if len(s.labelSets) < maxLabelSets {
		s.labelSets[id] = labels
	}
	return labels
}

// list returns the instances sorted by key, in a new slice.
func (s *instanceSet) list() []discovery.Instance {
	keys := slices.Sorted(maps.Keys(s.entries))
	out := make([]discovery.Instance, len(keys))
	for i, k := range keys {
		out[i] = s.entries[k]
	}
	return out
}

func sameInstance(a, b discovery.Instance) bool {
	return a.Address == b.Address && a.Weight == b.Weight && a.Unhealthy == b.Unhealthy && maps.Equal(a.Labels, b.Labels)
}
