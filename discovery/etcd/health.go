package etcd

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// healthCheck ends the watches of one source when etcd stops answering.
//
// The etcd client reconnects by itself and resumes watches silently, so
// a watch on a dead or cut connection just waits, and the mesh would go
// on reporting it connected. While at least one watch runs, healthCheck
// reads the source's key (count only, linearizable, so a member without
// a quorum fails too) every interval with a deadline, and on a failed
// read cancels the context of every watch with that error as the cause;
// the watch then ends with that error and the mesh retries it with
// backoff, reporting the outage. Cancelling, rather than telling the
// watch on a channel, reaches a watch wherever it waits: the etcd
// client's Watch blocks until the server confirms the watch, so a server
// that dies meanwhile would otherwise hold the call there for good. One
// check serves all the watches of a source, so a process watching 100
// services costs one read per interval, not 100.
type healthCheck struct {
	cli      *clientv3.Client
	key      string
	interval time.Duration
	timeout  time.Duration

	mu   sync.Mutex
	subs map[*subscriber]struct{}
	stop context.CancelFunc // ends the check loop; nil when it is not running
	done chan struct{}      // closed when the check loop returned
}

// maxHealthTimeout bounds one health check (the request timeout, when
// shorter, bounds it instead): with the 1 s interval, an outage shows
// within about 3 s.
const maxHealthTimeout = 2 * time.Second

func newHealthCheck(cli *clientv3.Client, key string, cfg config) *healthCheck {
	return &healthCheck{cli: cli, key: key, interval: cfg.healthInterval, timeout: min(cfg.requestTimeout, maxHealthTimeout), subs: map[*subscriber]struct{}{}}
}

// subscriber is one watch following the check.
type subscriber struct{ cancel context.CancelCauseFunc }

// subscribe registers the cancel function of one watch's context: every
// failed check calls it with the check's error (the first call ends the
// context with that cause, later ones do nothing) until release, which
// ends the subscription; once release has returned, cancel is not called
// again. The check loop runs while there is a subscription; the last
// release waits for it to stop.
func (h *healthCheck) subscribe(cancel context.CancelCauseFunc) (release func()) {
	sub := &subscriber{cancel: cancel}
	h.mu.Lock()
	h.subs[sub] = struct{}{}
	if h.stop == nil && h.interval > 0 {
		ctx, stop := context.WithCancel(context.Background())
		h.stop, h.done = stop, make(chan struct{})
		go h.run(ctx, h.done)
	}
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, sub)
			var done chan struct{}
			if len(h.subs) == 0 && h.stop != nil {
				h.stop()
				done = h.done
				h.stop, h.done = nil, nil
			}
			h.mu.Unlock()
			if done != nil {
				<-done
			}
		})
	}
}

func (h *healthCheck) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, h.timeout)
		_, err := h.cli.Get(rctx, h.key, clientv3.WithCountOnly())
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		err = fmt.Errorf("etcd: health check (read %s within %v) failed: %w", h.key, h.timeout, err)
		// Under the lock, so that no cancel follows a release. A
		// subscriber already cancelled stays until its release; cancelling
		// it again does nothing.
		h.mu.Lock()
		for sub := range h.subs {
			sub.cancel(err)
		}
		h.mu.Unlock()
	}
}
