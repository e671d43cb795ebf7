package mesh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightmesh/lightmesh/breaker"
	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/internal/backoff"
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
	prop    *trace.Propagator
	metrics *metrics // nil when metrics are off
	snap    atomic.Pointer[state]

	docs      chan rules.Document
	restores  chan restore
	seeds     chan chan struct{}
	store     *snapshot.Store // nil without WithSnapshotDir
	source    string          // the rule source's name, credentials redacted
	instances chan instanceUpdate
	cancel    context.CancelFunc
	done      sync.WaitGroup
	ready     chan struct{} // closed when the first rules are applied
	found     chan struct{} // closed when every service first watched has reported once
	closeOnce sync.Once

	mu     sync.Mutex // guards status
	status Status

	// Owned by the manager goroutine.
	appliedHash  string
	rejectedHash string
	watches      map[string]*serviceWatch
	watchGen     uint64          // numbers service watches so a stopped one's updates are dropped
	awaited      map[string]bool // services whose first list New still waits for; nil once found is closed
	live         map[string]bool // services discovery has reported since their watch started
}

// restore asks the manager to apply a snapshot's rule document.
type restore struct {
	saved snapshot.Rules
	done  chan error
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
	Version string
	// Err is nil when the document was applied.
	Err error
	At  time.Time
}

// New starts a mesh. With a rule source it waits, up to the start timeout,
// for the first valid document and fails if none arrives (or the first one
// is invalid) unless WithStartEmpty was given. ctx bounds that wait only;
// the mesh runs until Close.
func New(ctx context.Context, opts ...Option) (*Mesh, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	m := &Mesh{
		cfg:       cfg,
		prop:      trace.New(cfg.traceOptions...),
		docs:      make(chan rules.Document),
		instances: make(chan instanceUpdate),
		ready:     make(chan struct{}),
		found:     make(chan struct{}),
		watches:   make(map[string]*serviceWatch),
		live:      make(map[string]bool),
		restores:  make(chan restore),
		seeds:     make(chan chan struct{}),
	}
	m.snap.Store(&state{table: router.NewTable(nil, nil)})
	if cfg.snapshotDir != "" {
		store, err := snapshot.New(cfg.snapshotDir)
		if err != nil {
			return nil, fmt.Errorf("mesh: %w", err)
		}
		m.store = store
	}
	if cfg.registerer != nil {
		mt, err := newMetrics(cfg.registerer)
		if err != nil {
			return nil, fmt.Errorf("mesh: register metrics: %w", err)
		}
		m.metrics = mt
	}
	if cfg.rules != nil {
		m.source = redact(cfg.rules.String())
		m.status.Rules.Source = m.source
	} else {
		close(m.ready)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.done.Add(1)
	go m.manage(runCtx)
	if cfg.rules != nil {
		m.done.Add(1)
		go m.watchRules(runCtx)
	}
	if err := m.waitReady(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// waitReady waits for the first valid rules and then for the first
// instance list of each service they name, all within the start timeout.
// Without rules in time it starts from the snapshot when there is one and
// fails otherwise (unless WithStartEmpty). Services still without
// instances at the deadline get their snapshot lists, if any, and fail
// calls with ErrNoInstance until discovery reports them.
func (m *Mesh) waitReady(ctx context.Context) error {
	deadline := time.NewTimer(m.cfg.startTimeout)
	defer deadline.Stop()
	select {
	case <-m.ready:
	case <-ctx.Done():
		return ctx.Err()
	case <-deadline.C:
		if err := m.startFromSnapshot(ctx); err != nil {
			if !m.cfg.startEmpty {
				return err
			}
			m.cfg.logger.Warn("lightmesh: starting without rules", "err", err)
		}
		return m.seedFromSnapshot(ctx)
	}
	select {
	case <-m.found:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-deadline.C:
		m.cfg.logger.Warn("lightmesh: some services have no instances yet", "wait", m.cfg.startTimeout)
		return m.seedFromSnapshot(ctx)
	}
}

// startFromSnapshot applies the saved rule document when the rule source
// gave no valid one in time.
func (m *Mesh) startFromSnapshot(ctx context.Context) error {
	st := m.Status()
	reason := "no document received"
	if st.LastRejection != nil {
		reason = "document rejected: " + st.LastRejection.Error
	} else if st.Watcher.LastError != "" {
		reason = st.Watcher.LastError
	}
	failed := fmt.Sprintf("mesh: no valid rules from %s within %v: %s", st.Rules.Source, m.cfg.startTimeout, reason)
	if m.store == nil {
		return errors.New(failed)
	}
	saved, err := m.store.LoadRules()
	if err != nil {
		return fmt.Errorf("%s; no usable snapshot: %w", failed, err)
	}
	done := make(chan error, 1)
	select {
	case m.restores <- restore{saved: saved, done: done}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := <-done; err != nil {
		return fmt.Errorf("%s; snapshot rejected: %w", failed, err)
	}
	m.cfg.logger.Warn("lightmesh: rule source unreachable; started from the local snapshot",
		"source", st.Rules.Source, "version", saved.Version, "saved_at", saved.SavedAt, "reason", reason)
	return nil
}

// seedFromSnapshot gives services that discovery has not reported yet
// their saved instance lists.
func (m *Mesh) seedFromSnapshot(ctx context.Context) error {
	if m.store == nil {
		return nil
	}
	done := make(chan struct{})
	select {
	case m.seeds <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

// Close stops the watchers and the manager and waits for them. The mesh
// keeps routing with the last rules it had.
func (m *Mesh) Close() error {
	m.closeOnce.Do(func() {
		m.cancel()
		m.done.Wait()
	})
	return nil
}

// Table returns the routing snapshot in use now.
func (m *Mesh) Table() *router.Table { return m.snap.Load().table }

// watchRules runs the rule source's Watch in a backoff loop, handing every
// document to the manager.
func (m *Mesh) watchRules(ctx context.Context) {
	defer m.done.Done()
	src := m.cfg.rules
	backoff.Loop(ctx, m.cfg.backoff, func(ctx context.Context) error {
		return src.Watch(ctx, func(doc rules.Document) {
			m.setWatcher(func(w *WatcherStatus) { w.Connected, w.LastError = true, "" })
			select {
			case m.docs <- doc:
			case <-ctx.Done():
			}
		})
	}, func(err error, wait time.Duration) {
		msg := redact(err.Error())
		m.cfg.logger.Warn("lightmesh: rule source failed; retrying", "source", m.source, "err", msg, "retry_in", wait)
		m.setWatcher(func(w *WatcherStatus) { w.Connected, w.LastError = false, msg })
	})
}

// manage is the only goroutine that changes the table.
func (m *Mesh) manage(ctx context.Context) {
	defer m.done.Done()
	defer func() {
		for _, w := range m.watches {
			w.cancel()
		}
	}()
	if m.cfg.rules == nil {
		m.syncWatches(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case doc := <-m.docs:
			m.applyDocument(ctx, doc, false)
		case r := <-m.restores:
			r.done <- m.restoreRules(ctx, r.saved)
		case done := <-m.seeds:
			m.seedInstances()
			close(done)
		case up := <-m.instances:
			m.applyInstances(up)
		}
	}
}

// restoreRules applies a snapshot's document unless live rules arrived in
// the meantime.
func (m *Mesh) restoreRules(ctx context.Context, saved snapshot.Rules) error {
	if isClosed(m.ready) {
		return nil
	}
	return m.applyDocument(ctx, rules.Document{Data: []byte(saved.Data), Version: saved.Version}, true)
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
		m.cfg.logger.Warn("lightmesh: discovery has not reported; using the instance snapshot", "service", name, "instances", len(saved.Instances), "saved_at", saved.SavedAt)
		m.setInstances(name, m.validInstances(name, saved.Instances))
	}
}

// applyDocument validates, compiles and applies doc, reporting a rejection
// as its error. fromSnapshot marks a document restored from disk.
func (m *Mesh) applyDocument(ctx context.Context, doc rules.Document, fromSnapshot bool) error {
	sum := sha256.Sum256(doc.Data)
	hash := hex.EncodeToString(sum[:])
	now := time.Now()
	version := doc.Version
	if version == "" {
		version = "sha256:" + hash[:12]
	}
	if hash == m.appliedHash || hash == m.rejectedHash {
		m.mu.Lock()
		m.status.Watcher.LastUpdate = now
		if hash == m.appliedHash && m.status.Rules.FromSnapshot {
			// The source is back with the document the snapshot held.
			m.status.Rules.FromSnapshot, m.status.Rules.Version = false, version
		}
		m.mu.Unlock()
		m.metrics.ruleUpdate("unchanged")
		return nil
	}
	compiled, err := router.Load(doc.Data)
	var policies map[string]*servicePolicy
	if err == nil {
		policies, err = buildPolicies(compiled, m.snap.Load().policies, m.onBreakerChange)
	}
	if err != nil {
		m.rejectedHash = hash
		m.cfg.logger.Error("lightmesh: rule document rejected; last good rules keep serving",
			"source", m.source, "version", version, "err", redact(err.Error()))
		m.mu.Lock()
		m.status.LastRejection = &Rejection{Version: version, Error: redact(err.Error()), At: now}
		m.status.Watcher.LastUpdate = now
		m.mu.Unlock()
		m.metrics.ruleUpdate("rejected")
		m.notify(RulesEvent{Version: version, Err: err, At: now})
		return err
	}
	m.appliedHash, m.rejectedHash = hash, ""
	old := m.snap.Load()
	next := &state{table: old.table.WithRules(compiled), policies: policies}
	b := &policyBuilder{onChange: m.onBreakerChange}
	for name, p := range policies {
		policies[name] = p.withInstances(next.table.Instances(name, ""), b)
	}
	m.snap.Store(next)
	m.mu.Lock()
	m.status.Rules.Version, m.status.Rules.AppliedAt, m.status.Rules.FromSnapshot = version, now, fromSnapshot
	m.status.Watcher.LastUpdate = now
	m.mu.Unlock()
	if m.store != nil && !fromSnapshot {
		if err := m.store.SaveRules(snapshot.Rules{Source: m.source, Version: version, SavedAt: now, Data: string(doc.Data)}); err != nil {
			m.cfg.logger.Warn("lightmesh: saving the rules snapshot failed", "err", err)
		}
	}
	m.metrics.rulesApplied(m.source, version)
	m.cfg.logger.Info("lightmesh: rules applied", "source", m.source, "version", version, "services", len(compiled.Services()))
	m.syncWatches(ctx)
	select {
	case <-m.ready:
	default:
		close(m.ready)
	}
	m.notify(RulesEvent{Version: version, At: now})
	return nil
}

func (m *Mesh) notify(ev RulesEvent) {
	if m.cfg.onRules != nil {
		m.cfg.onRules(ev)
	}
}

// syncWatches starts a discovery watch for each service the rules or
// WithServices name and stops those no longer named.
func (m *Mesh) syncWatches(ctx context.Context) {
	first := m.awaited == nil && !isClosed(m.found)
	if first {
		m.awaited = make(map[string]bool)
	}
	defer m.checkFound()
	if m.cfg.discovery == nil {
		return
	}
	want := slices.Concat(m.snap.Load().table.Rules().Services(), m.cfg.services)
	keep := make(map[string]bool, len(want))
	for _, name := range want {
		keep[name] = true
		if m.watches[name] != nil {
			continue
		}
		if first {
			m.awaited[name] = true
		}
		wctx, cancel := context.WithCancel(ctx)
		m.watchGen++
		w := &serviceWatch{gen: m.watchGen, cancel: cancel}
		m.watches[name] = w
		m.done.Add(1)
		go m.watchService(wctx, name, w.gen)
	}
	for name, w := range m.watches {
		if !keep[name] {
			w.cancel()
			delete(m.watches, name)
			delete(m.live, name)
			m.setInstances(name, nil)
		}
	}
}

func (m *Mesh) watchService(ctx context.Context, service string, gen uint64) {
	defer m.done.Done()
	src := m.cfg.discovery
	backoff.Loop(ctx, m.cfg.backoff, func(ctx context.Context) error {
		return src.Watch(ctx, service, func(list []discovery.Instance) {
			select {
			case m.instances <- instanceUpdate{service: service, gen: gen, list: slices.Clone(list)}:
			case <-ctx.Done():
			}
		})
	}, func(err error, wait time.Duration) {
		m.cfg.logger.Warn("lightmesh: discovery watch failed; retrying", "service", service, "err", redact(err.Error()), "retry_in", wait)
	})
}

func (m *Mesh) applyInstances(up instanceUpdate) {
	if w := m.watches[up.service]; w == nil || w.gen != up.gen {
		return
	}
	list := m.validInstances(up.service, up.list)
	m.live[up.service] = true
	m.setInstances(up.service, list)
	if m.store != nil {
		if err := m.store.SaveInstances(snapshot.Instances{Service: up.service, SavedAt: time.Now(), Instances: list}); err != nil {
			m.cfg.logger.Warn("lightmesh: saving the instance snapshot failed", "service", up.service, "err", err)
		}
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

// setInstances publishes a snapshot in which service has list, with
// per-instance breakers to match.
func (m *Mesh) setInstances(service string, list []discovery.Instance) {
	old := m.snap.Load()
	next := &state{table: old.table.WithInstances(service, list), policies: old.policies}
	if p := old.policies[service]; p != nil && p.outlier != nil {
		next.policies = maps.Clone(old.policies)
		next.policies[service] = p.withInstances(next.table.Instances(service, ""), &policyBuilder{onChange: m.onBreakerChange})
	}
	m.snap.Store(next)
}

// onBreakerChange is called by every breaker the mesh creates when its
// state changes.
func (m *Mesh) onBreakerChange(service, instance string, from, to breaker.State) {
	m.cfg.logger.Info("lightmesh: breaker state change", "service", service, "instance", instance, "from", from.String(), "to", to.String())
	m.metrics.breakerChanged(service, instance, to)
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

func (m *Mesh) setWatcher(f func(*WatcherStatus)) {
	m.mu.Lock()
	f(&m.status.Watcher)
	connected := m.status.Watcher.Connected
	m.mu.Unlock()
	m.metrics.watcher(connected)
}
