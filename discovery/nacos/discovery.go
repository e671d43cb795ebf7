package nacos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/discovery"
)

// maxWeight caps a converted weight (Nacos allows up to 10000.0, which is
// 1,000,000 here).
const maxWeight = 1_000_000

// Discovery is a discovery.Source subscribing to services in Nacos
// naming. Use NewDiscovery; call Close when done, after the mesh using
// it is closed. Watch may be called concurrently, for the same or
// different services: watchers of one service share one subscription.
//
// Each Nacos instance becomes a discovery.Instance: ip:port as Address,
// round(weight*100) as Weight, metadata as Labels; an instance that is
// unhealthy, disabled or of weight 0 is delivered with Unhealthy set.
// An instance with a bad address or weight is skipped and logged;
// metadata entries beyond discovery's label limits are dropped and
// logged, keeping the instance.
type Discovery struct {
	client naming_client.INamingClient
	cfg    Config // for errors (String), and Register
	diag   *diagnosis
	group  string
	logger *slog.Logger
	dir    string

	// regMu makes registrations through client one at a time, each
	// with its request to the server, and guards regs and reasserting.
	regMu sync.Mutex
	// regs holds each service's registration in force through client:
	// Nacos keeps one instance per service and connection, so a later
	// Register of the service replaces it.
	regs map[string]*Registration
	// reasserting holds the services whose registration reassert is
	// telling the server again, each with its goroutine in wg.
	reasserting map[string]*reassertion
	wg          sync.WaitGroup
	stop        chan struct{} // closed by Close: the reassertions end

	mu     sync.Mutex
	subs   map[string]*subscription
	closed bool
	// resuming names the services whose last watch had instances when it
	// lost the server, with when a watch of it last failed: the first
	// list of their next watch may be empty only because the server has
	// just restarted and the instances have not registered again yet.
	resuming map[string]time.Time
	// asking is the server health question in flight (serverHealthy),
	// nil when none is.
	asking *healthAnswer
}

// healthAnswer is the answer to one server health question, ready when
// done is closed.
type healthAnswer struct {
	done    chan struct{}
	healthy bool
}

// serverHealthy asks the naming client whether its server connection is
// healthy, and stops waiting when ctx ends. The watches share one
// question at a time: while the gRPC connection is down the SDK asks
// the server over HTTP, three times, which can take seconds, and the
// question cannot be cancelled; its goroutine ends when the SDK answers.
func (d *Discovery) serverHealthy(ctx context.Context) (bool, error) {
	d.mu.Lock()
	a := d.asking
	if a == nil {
		a = &healthAnswer{done: make(chan struct{})}
		d.asking = a
		go func() {
			a.healthy = d.client.ServerHealthy()
			d.mu.Lock()
			d.asking = nil
			d.mu.Unlock()
			close(a.done)
		}()
	}
	d.mu.Unlock()
	select {
	case <-a.done:
		return a.healthy, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// resumeMarkTTL is how long a resuming mark waits for the next watch of
// its service: a service watched again only later is not resuming.
const resumeMarkTTL = 5 * time.Minute

// resumeGrace is how long a watch resuming after an outage holds back an
// empty first list, waiting for the instances to register again.
const resumeGrace = 5 * time.Second

var _ discovery.Source = (*Discovery)(nil)

// subscription is the SDK subscription to one service, shared by every
// Watch of it.
type subscription struct {
	param *vo.SubscribeParam
	refs  int // guarded by Discovery.mu

	mu         sync.Mutex // serialises Subscribe and Unsubscribe
	subscribed bool

	// chMu is apart from mu: the SDK calls notify from inside Subscribe.
	chMu    sync.Mutex
	changed chan struct{}    // closed and replaced on each SDK callback
	hosts   []model.Instance // a copy of the last callback's instances
	heard   bool             // a callback came
}

// NewDiscovery connects a naming client to the servers in cfg for
// services in group (DefaultGroup when empty).
func NewDiscovery(cfg Config, group string) (*Discovery, error) {
	if group == "" {
		group = DefaultGroup
	}
	client, dir, err := newNamingClient(cfg)
	if err != nil {
		return nil, err
	}
	return &Discovery{client: client, cfg: cfg, diag: newDiagnosis(cfg), group: group, logger: cfg.logger(), dir: dir, regs: map[string]*Registration{},
		reasserting: map[string]*reassertion{}, stop: make(chan struct{}), subs: map[string]*subscription{}, resuming: map[string]time.Time{}}, nil
}

func newNamingClient(cfg Config) (naming_client.INamingClient, string, error) {
	param, dir, err := cfg.clientParam()
	if err != nil {
		return nil, "", err
	}
	client, err := newSDKNamingClient(param)
	installLogger(cfg)
	if err != nil {
		if client != nil {
			closeNamingClient(client)
		}
		removeDir(dir)
		return nil, "", fmt.Errorf("nacos: naming client for %s: %w", cfg, err)
	}
	return client, dir, nil
}

// Watch implements discovery.Source. It subscribes to service, delivers
// its instances (sorted by address) and delivers them again every time
// the server pushes a change, until ctx ends. It returns an error when
// the subscription fails and ctx.Err() when ctx ends. Every second it
// asks the naming client whether its server connection is healthy (the
// SDK reconnects and subscribes again by itself, telling nobody) and
// ends with errServerUnhealthy when it is not, so the mesh reports the
// outage and retries with backoff; a retry fails as soon as the client
// answers while the connection is down (the watches share one question,
// which ctx does not wait for) and subscribes afresh once it is back. An
// error of a client with no connection says which of the servers' HTTP
// and gRPC ports answer (see diagnosis).
//
// A restarted server knows no ephemeral instance until each registers
// again, which its SDK does after it reconnects. So when a watch resumes
// after an outage and the service, which had instances, now has none,
// the empty list is held back for up to 5 s, waiting for them: without
// that, every call would fail until they are back. A list with
// instances is delivered at once.
func (d *Discovery) Watch(ctx context.Context, service string, update func([]discovery.Instance)) error {
	if service == "" {
		return errors.New("nacos: empty service name")
	}
	if ok, err := d.serverHealthy(ctx); err != nil {
		return err
	} else if !ok {
		d.touchResuming(service)
		return fmt.Errorf("nacos: watch %s@%s: %w", service, d.group, d.diag.explain(ctx, errServerUnhealthy))
	}
	check := time.NewTicker(healthInterval)
	defer check.Stop()
	started := false // the watch got as far as taking its resuming mark
	defer func() {
		if !started {
			d.touchResuming(service) // failed early: the outage goes on
		}
	}()
	sub, err := d.acquire(service)
	if err != nil {
		return err
	}
	defer d.release(service, sub)
	if err := sub.subscribe(d.client); err != nil {
		return fmt.Errorf("nacos: subscribe to %s@%s: %w", service, d.group, d.diag.explain(ctx, err))
	}
	var last []discovery.Instance
	first := true
	var grace <-chan time.Time // set while an empty list is held back
	started = true
	if d.takeResuming(service) {
		grace = time.After(resumeGrace)
	}
	defer func() {
		// A watch that had instances (or was still waiting for them to
		// come back) and failed marks the next one as resuming.
		if ctx.Err() == nil && (len(last) > 0 || grace != nil) {
			d.setResuming(service)
		}
	}()
	for {
		changed, hosts, heard := sub.latest()
		if !heard {
			// No callback yet (the server pushes the list soon after the
			// subscription): ask. The SDK answers from its cache when
			// it has the service, a slice it sorts in place on the next
			// push, so it is copied at once; the callbacks' lists are
			// copied before the callback returns.
			svc, err := d.client.GetService(vo.GetServiceParam{ServiceName: service, GroupName: d.group})
			if err != nil {
				return fmt.Errorf("nacos: read %s@%s: %w", service, d.group, d.diag.explain(ctx, err))
			}
			hosts = cloneInstances(svc.Hosts)
		}
		list := d.convert(service, hosts)
		if len(list) > 0 {
			grace = nil
		}
		if grace == nil && (first || !slices.EqualFunc(last, list, sameInstance)) {
			update(list)
			last, first = list, false
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-check.C:
				if ok, err := d.serverHealthy(ctx); err != nil {
					return err
				} else if !ok {
					return fmt.Errorf("nacos: watch %s@%s: %w", service, d.group, d.diag.explain(ctx, errServerUnhealthy))
				}
			case <-grace:
				d.logger.Warn("lightmesh: nacos service still has no instance after the server came back", "service", service, "waited", resumeGrace)
				grace, waiting = nil, false
			case <-changed:
				waiting = false
			}
		}
	}
}

// setResuming marks service as resuming after an outage.
func (d *Discovery) setResuming(service string) {
	d.mu.Lock()
	d.resuming[service] = time.Now()
	d.mu.Unlock()
}

// touchResuming renews the mark of service, if it has one: a watch of it
// failed again before it could start.
func (d *Discovery) touchResuming(service string) {
	d.mu.Lock()
	if _, ok := d.resuming[service]; ok {
		d.resuming[service] = time.Now()
	}
	d.mu.Unlock()
}

// takeResuming reports whether service is resuming after an outage, and
// clears the mark; marks older than resumeMarkTTL are dropped.
func (d *Discovery) takeResuming(service string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, at := range d.resuming {
		if time.Since(at) > resumeMarkTTL {
			delete(d.resuming, name)
		}
	}
	_, ok := d.resuming[service]
	delete(d.resuming, service)
	return ok
}

// errServerUnhealthy ends a Watch whose naming client lost its server.
var errServerUnhealthy = errors.New("the naming client has no healthy server connection")

func (d *Discovery) acquire(service string) (*subscription, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	sub := d.subs[service]
	if sub == nil {
		sub = &subscription{changed: make(chan struct{})}
		sub.param = &vo.SubscribeParam{ServiceName: service, GroupName: d.group, SubscribeCallback: sub.notify}
		d.subs[service] = sub
	}
	sub.refs++
	return sub, nil
}

// release drops one reference and unsubscribes after the last.
func (d *Discovery) release(service string, sub *subscription) {
	d.mu.Lock()
	sub.refs--
	last := sub.refs == 0
	if last {
		delete(d.subs, service)
	}
	closed := d.closed
	d.mu.Unlock()
	if !last || closed {
		return
	}
	sub.mu.Lock()
	defer sub.mu.Unlock()
	// Unsubscribe also removes the callback when the subscribe failed.
	if err := d.client.Unsubscribe(sub.param); err != nil {
		d.logger.Warn("lightmesh: nacos unsubscribe failed", "service", service, "group", d.group, "err", firstLine(err))
	}
}

func (s *subscription) subscribe(client naming_client.INamingClient) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscribed {
		return nil
	}
	if err := client.Subscribe(s.param); err != nil {
		return err
	}
	s.subscribed = true
	return nil
}

// notify is the SDK's callback; it runs on an SDK goroutine and must not
// block. It copies the instances before it returns: the slice is the
// SDK's cache, which it sorts in place when the next push arrives.
func (s *subscription) notify(hosts []model.Instance, err error) {
	if err != nil {
		return
	}
	hosts = cloneInstances(hosts)
	s.chMu.Lock()
	s.hosts, s.heard = hosts, true
	close(s.changed)
	s.changed = make(chan struct{})
	s.chMu.Unlock()
}

// latest returns the channel closed by the next callback, and the
// instances of the last one, if one came.
func (s *subscription) latest() (<-chan struct{}, []model.Instance, bool) {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	return s.changed, s.hosts, s.heard
}

// cloneInstances copies instances and their metadata.
func cloneInstances(in []model.Instance) []model.Instance {
	out := slices.Clone(in)
	for i := range out {
		out[i].Metadata = maps.Clone(out[i].Metadata)
	}
	return out
}

// Close ends the Discovery's reassertions of its registrations (see
// Register; one in flight, bounded by Config.TimeoutMs, is waited for),
// closes the SDK client, which removes what it registered from the
// server, and removes its private directory. Watch fails after Close.
// Close is safe to call more than once.
func (d *Discovery) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.regMu.Lock()
	close(d.stop) // under regMu: no reassertion starts after it
	d.regMu.Unlock()
	d.wg.Wait()
	closeNamingClient(d.client)
	removeDir(d.dir)
	return nil
}

// convert turns the SDK's instances into valid discovery instances,
// sorted by address.
func (d *Discovery) convert(service string, hosts []model.Instance) []discovery.Instance {
	out := make([]discovery.Instance, 0, len(hosts))
	for _, h := range hosts {
		in, dropped, err := toInstance(h)
		if err != nil {
			d.logger.Warn("lightmesh: nacos instance skipped", "service", service, "group", d.group, "ip", h.Ip, "port", h.Port, "err", err)
			continue
		}
		if dropped > 0 {
			d.logger.Warn("lightmesh: nacos instance metadata entries dropped", "service", service, "instance", in.Address, "dropped", dropped)
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b discovery.Instance) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// toInstance converts one Nacos instance. It drops metadata entries that
// break discovery's label limits and reports how many.
func toInstance(h model.Instance) (discovery.Instance, int, error) {
	if h.Port == 0 || h.Port > 65535 {
		return discovery.Instance{}, 0, fmt.Errorf("invalid port %d", h.Port)
	}
	if math.IsNaN(h.Weight) || math.IsInf(h.Weight, 0) || h.Weight < 0 {
		return discovery.Instance{}, 0, fmt.Errorf("invalid weight %v", h.Weight)
	}
	in := discovery.Instance{
		Address:   net.JoinHostPort(h.Ip, strconv.FormatUint(h.Port, 10)),
		Unhealthy: !h.Healthy || !h.Enable || h.Weight == 0,
	}
	if h.Weight > 0 {
		in.Weight = int(min(max(math.Round(h.Weight*100), 1), maxWeight))
	}
	var dropped int
	in.Labels, dropped = labels(h.Metadata)
	if err := in.Validate(); err != nil {
		return discovery.Instance{}, dropped, err
	}
	return in, dropped, nil
}

// labels copies metadata into labels within discovery's limits: entries
// with an empty or too long key or a too long value are dropped, and of
// the rest the first MaxLabels in key order are kept.
func labels(md map[string]string) (map[string]string, int) {
	if len(md) == 0 {
		return nil, 0
	}
	out := make(map[string]string, min(len(md), discovery.MaxLabels))
	dropped := 0
	for _, k := range slices.Sorted(maps.Keys(md)) {
		v := md[k]
		if k == "" || len(k) > discovery.MaxLabelKeyLen || len(v) > discovery.MaxLabelValueLen || len(out) == discovery.MaxLabels {
			dropped++
			continue
		}
		out[k] = v
	}
	return out, dropped
}

func sameInstance(a, b discovery.Instance) bool {
	return a.Address == b.Address && a.Weight == b.Weight && a.Unhealthy == b.Unhealthy && maps.Equal(a.Labels, b.Labels)
}
