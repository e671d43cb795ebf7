package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/backoff"
)

// errLeaseLost ends a keep-alive round whose lease expired or was revoked
// behind the registration's back.
var errLeaseLost = errors.New("lease lost")

// Registration keeps one instance registered in etcd under a lease. Use
// Register; call Close to deregister.
//
// A background goroutine keeps the lease alive until Close or until the
// client is closed. If the lease is lost
// anyway (etcd unreachable for longer than the TTL, or the lease revoked
// by someone else) it grants a new one and puts the instance again, with
// backoff, until Close.
type Registration struct {
	cli   *clientv3.Client
	key   string
	addr  string
	value string
	ttl   int64
	cfg   config

	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	lease  clientv3.LeaseID
	closed bool
}

// Register puts in under <prefix>/<service>/<id> with a lease of ttl
// (rounded up to whole seconds, at least one) and keeps the lease alive
// until Close. A process that dies without Close disappears from
// discovery once the TTL runs out. ctx bounds the first registration only.
// An in.Address without a host (":8080") or with an unspecified one
// ("0.0.0.0:8080") is completed by discovery.AdvertiseAddress: the POD_IP
// environment variable, else the address of the default route's
// interface, never loopback unless given; Address reports the result.
// cli is used, never closed; WithLogger is the only option it reads.
func Register(ctx context.Context, cli *clientv3.Client, prefix, service, id string, in discovery.Instance, ttl time.Duration, opts ...Option) (*Registration, error) {
	if cli == nil {
		return nil, errors.New("etcd: register: no client")
	}
	if err := checkName("service", service); err != nil {
		return nil, fmt.Errorf("etcd: register: %w", err)
	}
	if err := checkName("instance", id); err != nil {
		return nil, fmt.Errorf("etcd: register: %w", err)
	}
	addr, err := discovery.AdvertiseAddress(in.Address)
	if err != nil {
		return nil, fmt.Errorf("etcd: register %s/%s: %w", service, id, err)
	}
	in.Address = addr
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("etcd: register %s/%s: %w", service, id, err)
	}
	value, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("etcd: register %s/%s: %w", service, id, err)
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	r := &Registration{
		cli:   cli,
		key:   cleanPrefix(prefix) + "/" + service + "/" + id,
		addr:  in.Address,
		value: string(value),
		ttl:   max(secs, 1),
		cfg:   newConfig(opts),
		done:  make(chan struct{}),
	}
	lease, err := r.grant(ctx)
	if err != nil {
		return nil, err
	}
	r.lease = lease
	// The keep-alive ends with Close or with the client: a closed client
	// cannot keep anything alive.
	runCtx, cancel := context.WithCancel(cli.Ctx())
	r.cancel = cancel
	go r.keep(runCtx, lease)
	return r, nil
}

// Key returns the etcd key the instance is registered under.
func (r *Registration) Key() string { return r.key }

// Address returns the address the instance is registered at, host
// included when Register found it.
func (r *Registration) Address() string { return r.addr }

// grant creates a lease and puts the instance under it.
func (r *Registration) grant(ctx context.Context) (clientv3.LeaseID, error) {
	lg, err := r.cli.Grant(ctx, r.ttl)
	if err != nil {
		return 0, fmt.Errorf("etcd: register %s: grant lease: %w", r.key, err)
	}
	if _, err := r.cli.Put(ctx, r.key, r.value, clientv3.WithLease(lg.ID)); err != nil {
		// Best effort: the lease expires by itself if this fails too.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		r.cli.Revoke(rctx, lg.ID)
		cancel()
		return 0, fmt.Errorf("etcd: register %s: put: %w", r.key, err)
	}
	return lg.ID, nil
}

// keep keeps the lease alive and registers again whenever it is lost.
func (r *Registration) keep(ctx context.Context, first clientv3.LeaseID) {
	defer close(r.done)
	lease := first
	policy := backoff.Policy{Base: 200 * time.Millisecond, Max: time.Duration(r.ttl) * time.Second}
	backoff.Loop(ctx, policy, func(ctx context.Context) error {
		if lease == 0 {
			id, err := r.grant(ctx)
			if err != nil {
				return err
			}
			r.mu.Lock()
			r.lease = id
			r.mu.Unlock()
			lease = id
			r.cfg.logger.Info("lightmesh: etcd instance registered again", "key", r.key, "lease", int64(id))
		}
		ka, err := r.cli.KeepAlive(ctx, lease)
		if err != nil {
			lease = 0
			return fmt.Errorf("etcd: keep lease of %s alive: %w", r.key, err)
		}
		for range ka { // the client sends the keep-alives; drain the answers
		}
		lease = 0
		return fmt.Errorf("etcd: keep lease of %s alive: %w", r.key, errLeaseLost)
	}, func(err error, wait time.Duration) {
		r.cfg.logger.Warn("lightmesh: etcd registration lost; registering again", "key", r.key, "err", err, "retry_in", wait)
	})
}

// Close stops the keep-alive and revokes the lease, which deletes the
// key (a lease already gone counts as revoked). When the revoke fails (ctx ends, etcd unreachable) the key still
// disappears once the TTL runs out. Close is safe to call more than once;
// later calls return nil.
func (r *Registration) Close(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	<-r.done
	r.mu.Lock()
	lease := r.lease
	r.mu.Unlock()
	if r.cli.Ctx().Err() != nil {
		return fmt.Errorf("etcd: deregister %s: client closed; the key goes when its lease expires", r.key)
	}
	if _, err := r.cli.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd: deregister %s: revoke lease: %w", r.key, err)
	}
	return nil
}
