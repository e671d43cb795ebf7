package mesh

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/backoff"
	"github.com/lightmesh/lightmesh/internal/engine"
	"github.com/lightmesh/lightmesh/internal/meshlink"
	"github.com/lightmesh/lightmesh/internal/snapshot"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// MaxInstancesPerService caps one service's instance list; a longer list
// from discovery is cut and the cut logged.
const MaxInstancesPerService = 100_000

// Mesh routes calls by rules that a background watcher keeps current. Use
// New; call Close to stop its goroutines.
type Mesh struct {
	cfg     config
	eng     *engine.Engine
	metrics *engine.Metrics // nil when metrics are off

	seeds     chan chan struct{}
	demands   chan demand
	instances chan instanceUpdate
	store     *snapshot.Store // nil without WithSnapshotDir
	saver     *snapshotSaver  // nil without WithSnapshotDir
	events    *eventQueue     // nil without WithOnRulesChange
	source    string          // the rule source's or catalog's name, credentials redacted
	discName  string          // the discovery source's name (discoveryName), credentials redacted
	// cat is where rule documents come from: the catalog of
	// WithRuleCatalog, or the source of WithRules as a catalog of one
	// document (whole); nil without rules.
	cat       rules.Catalog
	whole     bool
	cancel    context.CancelFunc
	stopped   <-chan struct{} // closed by Close
	done      sync.WaitGroup
	ready     chan struct{} // closed when the first rules are applied
	found     chan struct{} // closed when every service first watched has reported once
	closeOnce sync.Once
	closeErr  error

	mu     sync.Mutex // guards status and docStatus
	status Status     // the rules in force and the last rejection; the rest is computed by Status
	// lastRejection is the last document rejected, for LastRejection.
	lastRejection *RejectionError
	traffic       *trafficMeter             // nil without a readable metrics registry
	docStatus     map[string]DocumentStatus // by document name
	// docAnswered holds, per watched document, a channel closed once the
	// catalog (or the snapshot) answered for it.
	docAnswered map[string]chan struct{}
	// waitingDocs holds the names of the watched documents not answered
	// for yet, read by calls without a lock (AwaitingRules).
	waitingDocs sync.Map // string → struct{}

	docUpdates     chan docUpdate     // deliveries of the document watches
	docRestores    chan chan struct{} // restore unanswered documents from the snapshot
	restoreReports chan chan []string // why the snapshot could not stand in

	firstUse firstUse // hosts of WithMeshServices looked up so far

	rulesConn     *connTracker // the rule source's connection
	discoveryConn *connTracker // discovery's connection, over every service watch

	// Owned by the manager goroutine.
	watches     map[string]*serviceWatch
	watchGen    uint64               // numbers service watches so a stopped one's updates are dropped
	awaited     map[string]bool      // services whose first list New still waits for; nil once found is closed
	live        map[string]bool      // services discovery has reported since their watch started
	demanded    map[string]int       // services adapters asked for (Engine.Demand), with their count
	documents   map[string]*docState // the rule documents watched, by name
	awaitedDocs map[string]bool      // documents New still waits for; nil once ready is closed
}

// demand asks the manager to watch (delta +1) or stop watching (-1) a
// service on behalf of an adapter.
type demand struct {
	service string
	delta   int
	done    chan struct{} // closed once the State reflects the change
}

type instanceUpdate struct {
	service string
	gen     uint64
	list    []discovery.Instance
}

type serviceWatch struct {
	gen    uint64
	cancel context.CancelFunc
}

// RulesEvent reports one rule document the manager applied or rejected.
type RulesEvent struct {
	// Document names the document in a per-service layout
	// (WithRuleCatalog): the service, or rules.DefaultsName; empty with
	// WithRules.
	Document string
	Version  string
	// Err is nil when the document was applied.
	Err error
	At  time.Time
}

// New starts a mesh. With a rule source it waits, up to the start timeout,
// for the first valid document, and fails unless WithStartEmpty was given
// when none arrives, or as soon as the first one is rejected (or the
// source holds none) and the snapshot cannot stand in; the error says
// why, also when ctx ends the wait first. Discovery of the services
// named by WithServices starts at once, whatever the rules' state. ctx
// bounds the wait only; the mesh runs until Close. A deadline of ctx
// that comes before the start timeout ends the wait as the start timeout
// does: the snapshot stands in for the rules and instances not received
// yet, and New fails only when it cannot; a cancelled ctx fails New.
func New(ctx context.Context, opts ...Option) (*Mesh, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.catalog != nil && (cfg.local == rules.DefaultsName || cfg.named(rules.DefaultsName)) {
		cfg.fail(fmt.Errorf("mesh: %q names the defaults document of a rule catalog, not a service", rules.DefaultsName))
	}
	if cfg.err != nil {
		cfg.closeGiven()
		return nil, cfg.err
	}
	m := &Mesh{
		cfg:       cfg,
		instances: make(chan instanceUpdate),
		ready:     make(chan struct{}),
		found:     make(chan struct{}),
		watches:   make(map[string]*serviceWatch),
		live:      make(map[string]bool),
		demanded:  make(map[string]int),
		seeds:     make(chan chan struct{}),
		demands:   make(chan demand),
		firstUse:  firstUse{misses: map[string]time.Time{}},

		documents:      map[string]*docState{},
		docStatus:      map[string]DocumentStatus{},
		docAnswered:    map[string]chan struct{}{},
		docUpdates:     make(chan docUpdate),
		docRestores:    make(chan chan struct{}),
		restoreReports: make(chan chan []string),
	}
	// Services named up front are mesh services from the start: a call to
	// one fails with ErrNoInstance until discovery reports it, and never
	// leaves the mesh.
	table := router.NewTable(nil, nil)
	for _, name := range cfg.services {
		table = table.WithInstances(name, []discovery.Instance{})
	}
	m.eng = engine.New(engine.NewState(table), trace.New(cfg.traceOptions...), cfg.logger, cfg.local, m.demand)
	now := time.Now()
	m.rulesConn = newConnTracker(now, func(st WatcherStatus) { m.metrics.ControlPlane("rules", st.Connected, st.LastUpdate) })
	m.discoveryConn = newConnTracker(now, func(st WatcherStatus) { m.metrics.ControlPlane("discovery", st.Connected, st.LastUpdate) })
	if cfg.snapshotDir != "" {
		store, err := snapshot.New(cfg.snapshotDir)
		if err != nil {
			cfg.closeGiven()
			return nil, fmt.Errorf("mesh: %w", err)
		}
		m.store = store
	}
	if cfg.registerer != nil {
		mt, err := engine.NewMetrics(cfg.registerer, m.eng.Load, cfg.local)
		if err != nil {
			cfg.closeGiven()
			return nil, fmt.Errorf("mesh: register metrics: %w", err)
		}
		m.metrics = mt
		m.traffic = newTrafficMeter(cfg.registerer)
		m.eng.SetMetrics(mt)
		if cfg.rules != nil || cfg.catalog != nil {
			mt.ControlPlane("rules", false, time.Time{})
		}
		if cfg.discovery != nil {
			mt.ControlPlane("discovery", false, time.Time{})
		}
	}
	switch {
	case cfg.rules != nil:
		m.source = redact(cfg.rules.String())
		m.cat, m.whole = oneDocument{src: cfg.rules, name: m.source}, true
	case cfg.catalog != nil:
		m.source = redact(cfg.catalog.String())
		m.cat = redactedCatalog{cfg.catalog}
	default:
		close(m.ready)
	}
	m.status.Rules.Source = m.source
	m.discName = discoveryName(cfg.discovery)
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel, m.stopped = cancel, runCtx.Done()
	if m.store != nil {
		m.saver = newSnapshotSaver(m.store, cfg.snapshotDelay, cfg.logger)
		m.done.Add(1)
		go func() { defer m.done.Done(); m.saver.run(runCtx) }()
	}
	if cfg.onRules != nil {
		m.events = newEventQueue(cfg.onRules, cfg.logger)
		m.done.Add(1)
		go func() { defer m.done.Done(); m.events.run(runCtx) }()
	}
	m.done.Add(1)
	go m.manage(runCtx)
	if err := m.waitReady(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// waitReady waits for the rules and then for the first instance list of
// each service they name, all within the start timeout. The rules are
// ready once the source has answered for every document (with WithRules:
// the one document): New fails at once, with the reason, when the
// answers leave nothing valid to serve and the snapshot cannot stand in
// (unless WithStartEmpty). At the start timeout the snapshot stands in
// for the documents not answered for. Services still without instances
// at the deadline get their snapshot lists, if any, and fail calls with
// ErrNoInstance until discovery reports them. The caller's deadline, when
// it comes first, ends the wait as the start timeout does; a cancelled
// ctx fails New. Whichever ends the wait, the error says why.
func (m *Mesh) waitReady(ctx context.Context) error {
	begin := time.Now()
	deadline := time.NewTimer(m.cfg.startTimeout)
	defer deadline.Stop()
	var within time.Duration // the start timeout, once it passed
	ended := false           // the wait ended before the rules were ready
	select {
	case <-m.ready:
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return m.startCancelled(ctx)
		}
		ended = true
	case <-deadline.C:
		within, ended = m.cfg.startTimeout, true
	}
	if ended {
		done := make(chan struct{})
		select {
		case m.docRestores <- done:
			<-done
		case <-m.stopped:
		}
	}
	if m.cat != nil {
		if problem := m.startProblem(); problem != "" {
			err := m.startError(problem, m.restoreErrors(), within)
			if ctx.Err() != nil {
				err = fmt.Errorf("%w: %w", err, ctx.Err())
			}
			if !m.cfg.startEmpty {
				return err
			}
			m.cfg.logger.Warn("lightmesh: starting without rules", "err", err)
		}
	}
	if ended {
		return m.seedFromSnapshot()
	}
	select {
	case <-m.found:
		return nil
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return m.startCancelled(ctx)
		}
	case <-deadline.C:
	}
	m.cfg.logger.Warn("lightmesh: some services have no instances yet", "wait", time.Since(begin).Round(time.Millisecond))
	return m.seedFromSnapshot()
}

// startCancelled is New's error when ctx was cancelled during the wait:
// ctx's error, with what the mesh was still waiting for.
func (m *Mesh) startCancelled(ctx context.Context) error {
	if m.cat != nil {
		if problem := m.startProblem(); problem != "" {
			return fmt.Errorf("%w: %w", m.startError(problem, nil, 0), ctx.Err())
		}
	}
	return fmt.Errorf("mesh: waiting for the first instances: %w", ctx.Err())
}

// discoveryName names src for the instance snapshot: its String method's
// result (credentials redacted) when it has one, its type otherwise.
func discoveryName(src discovery.Source) string {
	if src == nil {
		return ""
	}
	if s, ok := src.(fmt.Stringer); ok {
		return redact(s.String())
	}
	return fmt.Sprintf("%T", src)
}

// seedFromSnapshot gives services that discovery has not reported yet
// their saved instance lists. It is local work of the manager's, done
// even when the caller's deadline ended New's wait.
func (m *Mesh) seedFromSnapshot() error {
	if m.store == nil {
		return nil
	}
	done := make(chan struct{})
	select {
	case m.seeds <- done:
		<-done
	case <-m.stopped:
	}
	return nil
}

// Close stops everything the mesh started — the manager, the watchers,
// the snapshot writer (after it wrote what was pending) and the event
// delivery — and waits for them; it unregisters the mesh's metrics and
// closes the rule and discovery sources given to WithRules and
// WithDiscovery that have a Close method (the mesh owns the sources it is
// given). It returns the first error a source's Close returned. Requests
// in flight finish with the rules they started with; the mesh keeps
// routing with the last rules it had. Close may be called more than once.
func (m *Mesh) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.done.Wait()
		m.metrics.Unregister()
		m.closeErr = m.cfg.closeGiven()
	})
	return m.closeErr
}

// Table returns the routing snapshot in use now.
func (m *Mesh) Table() *router.Table { return m.eng.Load().Table() }

// Engine is for lightmesh's own gRPC adapter (package meshgrpc): it returns
// the mesh's call engine. Code outside lightmesh cannot call it, because it
// cannot make a meshlink.Key (see package internal/meshlink).
func (m *Mesh) Engine(meshlink.Key) *engine.Engine { return m.eng }

// demand is the engine's Demand hook: the manager watches service until
// release is called.
// Each call returns once the State in force reflects it: a released
// service no longer known is gone from the table; a demanded one's
// document, with WithRuleCatalog, has been answered for (or
// engine.FirstUseWait has passed).
func (m *Mesh) demand(service string) (release func()) {
	send := func(delta int) {
		d := demand{service: service, delta: delta, done: make(chan struct{})}
		select {
		case m.demands <- d:
		case <-m.stopped:
			return
		}
		select {
		case <-d.done:
		case <-m.stopped:
		}
	}
	send(+1)
	// With a rule catalog, the service's own document applies from the
	// first call on (HTTP first use and gRPC alike): wait for the catalog
	// to answer for it, as long as a first use waits for an instance.
	m.awaitDocument(context.Background(), service, time.Now().Add(engine.FirstUseWait))
	var once sync.Once
	return func() { once.Do(func() { send(-1) }) }
}

// followRules runs watch, the Watch of a rule source or of one catalog
// document (named source in logs), in a backoff loop: it records each
// delivery and failure on the rule connection under key, and hands
// every document, a copy, to deliver (the nil Document included), and
// every failure to failed when it is not nil.
func (m *Mesh) followRules(ctx context.Context, key watchKey, source string, watch func(context.Context, func(rules.Document)) error,
	deliver func(context.Context, rules.Document), failed func(context.Context)) {
	var flog failureLog
	backoff.Loop(ctx, m.cfg.backoff, func(ctx context.Context) error {
		return watch(ctx, func(doc rules.Document) {
			flog.answered()
			if doc.Data == nil {
				m.rulesConn.reachable(key, time.Now())
			} else {
				m.rulesConn.delivered(key, time.Now())
				doc.Data = bytes.Clone(doc.Data) // the source may reuse it once update returns
			}
			deliver(ctx, doc)
		})
	}, func(err error, wait time.Duration) {
		msg := redact(err.Error())
		if log, quiet := flog.failed(msg, time.Now()); log {
			m.cfg.logger.Warn("lightmesh: rule source failed; retrying", "source", source, "err", msg, "retry_in", wait, "not_logged", quiet)
		}
		if key.service != "" {
			msg = key.service + ": " + msg
		}
		m.rulesConn.failed(key, msg, time.Now())
		if failed != nil {
			failed(ctx)
		}
	})
}

// manage is the only goroutine that changes the state.
func (m *Mesh) manage(ctx context.Context) {
	defer m.done.Done()
	defer func() {
		for _, w := range m.watches {
			w.cancel()
		}
		for _, d := range m.documents {
			d.cancel()
		}
	}()
	m.syncDocuments(ctx)
	m.syncWatches(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case up := <-m.docUpdates:
			m.applyDocUpdate(ctx, up)
		case done := <-m.docRestores:
			m.restoreUnanswered(ctx)
			close(done)
		case done := <-m.restoreReports:
			done <- m.reportRestoreErrors()
		case done := <-m.seeds:
			m.seedInstances()
			close(done)
		case up := <-m.instances:
			m.applyInstances(up)
		case d := <-m.demands:
			m.demanded[d.service] += d.delta
			if m.demanded[d.service] <= 0 {
				delete(m.demanded, d.service)
			}
			m.syncDocuments(ctx)
			m.syncWatches(ctx)
			close(d.done)
		}
	}
}

// seedInstances loads the saved list of every watched service that
// discovery has not reported yet.
func (m *Mesh) seedInstances() {
	for name := range m.watches {
		if m.live[name] {
			continue
		}
		saved, err := m.store.LoadInstances(name)
		if err != nil {
			if !snapshot.IsNotExist(err) {
				m.cfg.logger.Warn("lightmesh: instance snapshot unusable", "service", name, "err", err)
			}
			continue
		}
		if saved.Source != m.discName {
			m.cfg.logger.Warn("lightmesh: instance snapshot not used: saved from another discovery source", "service", name,
				"saved_from", saved.Source, "source", m.discName)
			continue
		}
		m.cfg.logger.Warn("lightmesh: discovery has not reported; using the instance snapshot", "service", name, "instances", len(saved.Instances), "saved_at", saved.SavedAt)
		m.setInstances(name, m.validInstances(name, saved.Instances))
	}
}

// documentVersion returns the hash of doc's content and its version:
// the source's, or one made from the hash when the source has none.
func documentVersion(doc rules.Document) (hash, version string) {
	sum := sha256.Sum256(doc.Data)
	hash = hex.EncodeToString(sum[:])
	version = doc.Version
	if version == "" {
		version = "sha256:" + hash[:12]
	}
	return hash, version
}

// notify hands ev to the event queue; it never blocks the manager.
func (m *Mesh) notify(ev RulesEvent) {
	if m.events != nil {
		m.events.push(ev)
	}
}

// syncWatches starts a discovery watch for each service the rules,
// WithServices or an adapter's demand name, and stops those no longer
// named.
func (m *Mesh) syncWatches(ctx context.Context) {
	// New waits for the services of the first rules (or, without a rule
	// source, those of WithServices) to report once.
	first := m.awaited == nil && !isClosed(m.found) && isClosed(m.ready)
	if first {
		m.awaited = make(map[string]bool)
	}
	defer m.checkFound()
	if m.cfg.discovery == nil {
		return
	}
	want := slices.Concat(m.eng.Load().Table().Rules().Services(), m.cfg.services)
	for name := range m.demanded {
		want = append(want, name)
	}
	keep := make(map[string]bool, len(want))
	for _, name := range want {
		keep[name] = true
		if first && !m.live[name] {
			m.awaited[name] = true
		}
		if m.watches[name] != nil {
			continue
		}
		if !m.eng.Load().Table().Has(name) {
			m.setInstances(name, []discovery.Instance{}) // known, with no instance yet
		}
		wctx, cancel := context.WithCancel(ctx)
		m.watchGen++
		w := &serviceWatch{gen: m.watchGen, cancel: cancel}
		m.watches[name] = w
		m.discoveryConn.started(watchKey{name, w.gen})
		m.done.Add(1)
		go m.watchService(wctx, name, w.gen)
	}
	for name, w := range m.watches {
		if !keep[name] {
			w.cancel()
			m.discoveryConn.stopped(watchKey{name, w.gen}, time.Now())
			delete(m.watches, name)
			delete(m.live, name)
			m.setInstances(name, nil)
			if m.saver != nil {
				m.saver.forgetInstances(name) // a restart must not route to it from a stale list
			}
		}
	}
}

func (m *Mesh) watchService(ctx context.Context, service string, gen uint64) {
	defer m.done.Done()
	src := m.cfg.discovery
	key := watchKey{service, gen}
	var flog failureLog
	backoff.Loop(ctx, m.cfg.backoff, func(ctx context.Context) error {
		return src.Watch(ctx, service, func(list []discovery.Instance) {
			flog.answered()
			m.discoveryConn.delivered(key, time.Now())
			select {
			case m.instances <- instanceUpdate{service: service, gen: gen, list: slices.Clone(list)}:
			case <-ctx.Done():
			}
		})
	}, func(err error, wait time.Duration) {
		msg := redact(err.Error())
		if log, quiet := flog.failed(msg, time.Now()); log {
			m.cfg.logger.Warn("lightmesh: discovery watch failed; retrying", "service", service, "err", msg, "retry_in", wait, "not_logged", quiet)
		}
		m.discoveryConn.failed(key, service+": "+msg, time.Now())
	})
}

func (m *Mesh) applyInstances(up instanceUpdate) {
	if w := m.watches[up.service]; w == nil || w.gen != up.gen {
		return
	}
	list := m.validInstances(up.service, up.list)
	m.live[up.service] = true
	m.setInstances(up.service, list)
	if m.saver != nil {
		m.saver.instances(snapshot.Instances{Source: m.discName, Service: up.service, SavedAt: time.Now(), Instances: list})
	}
	if m.awaited != nil {
		delete(m.awaited, up.service)
		m.checkFound()
	}
}

// validInstances drops invalid instances (logging why) and cuts the list
// at MaxInstancesPerService.
func (m *Mesh) validInstances(service string, in []discovery.Instance) []discovery.Instance {
	list := make([]discovery.Instance, 0, len(in))
	for _, inst := range in {
		if err := inst.Validate(); err != nil {
			m.cfg.logger.Warn("lightmesh: instance ignored", "service", service, "err", err)
			continue
		}
		list = append(list, inst)
	}
	if len(list) > MaxInstancesPerService {
		m.cfg.logger.Warn("lightmesh: instance list cut", "service", service, "count", len(list), "limit", MaxInstancesPerService)
		list = list[:MaxInstancesPerService]
	}
	return list
}

// setInstances publishes a state in which service has list (nil: the
// service is no longer known), with per-instance breakers to match.
func (m *Mesh) setInstances(service string, list []discovery.Instance) {
	m.eng.Publish(m.eng.Load().WithInstances(service, list, m.onBreakerChange))
}

// onBreakerChange is called by every breaker the mesh creates when its
// state changes.
func (m *Mesh) onBreakerChange(service, instance string, from, to breaker.State) {
	m.cfg.logger.Info("lightmesh: breaker state change", "service", service, "instance", instance, "from", from.String(), "to", to.String())
	m.metrics.BreakerChanged(service, to)
}

// checkFound closes found once no awaited service is left.
func (m *Mesh) checkFound() {
	if m.awaited != nil && len(m.awaited) == 0 {
		m.awaited = nil
		close(m.found)
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
