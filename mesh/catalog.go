package mesh

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/lightmesh/lightmesh/internal/snapshot"
	"github.com/lightmesh/lightmesh/router"
	"github.com/lightmesh/lightmesh/rules"
)

// The states of one document of a per-service layout (DocumentStatus.State).
const (
	// DocumentWaiting: the catalog has not answered for the document yet.
	DocumentWaiting = "waiting"
	// DocumentApplied: the document's rules are in force.
	DocumentApplied = "applied"
	// DocumentMissing: the catalog holds no such document; the service
	// runs on the defaults.
	DocumentMissing = "missing"
	// DocumentDeleted: the document was deleted from the catalog; its
	// last good rules keep serving until a new version is published.
	DocumentDeleted = "deleted"
	// DocumentRejected: the catalog holds a document that was rejected
	// and no good version of it came before; the service runs on the
	// defaults.
	DocumentRejected = "rejected"
)

// DocumentStatus describes one document of a per-service layout
// (WithRuleCatalog): the rules of one service, or the defaults.
type DocumentStatus struct {
	// Name is the service the document is for, or rules.DefaultsName.
	Name string `json:"name"`
	// Source names the document in its catalog.
	Source string `json:"source"`
	// State is DocumentWaiting, DocumentApplied, DocumentMissing,
	// DocumentDeleted or DocumentRejected.
	State string `json:"state"`
	// Version, AppliedAt and FromSnapshot describe the version in force.
	Version      string    `json:"version,omitempty"`
	AppliedAt    time.Time `json:"appliedAt,omitzero"`
	FromSnapshot bool      `json:"fromSnapshot,omitempty"`
	// LastRejection is the last version of this document rejected; a
	// later good version does not clear it.
	LastRejection *Rejection `json:"lastRejection,omitempty"`
	// Defaulted lists the settings the service takes from the defaults
	// document rather than from its own (timeout, retry, breaker,
	// outlierDetection, rateLimit).
	Defaulted []string `json:"defaulted,omitempty"`
}

// docUpdate is one delivery of a catalog watch to the manager.
type docUpdate struct {
	name   string
	gen    uint64
	doc    rules.Document // nil Data: the catalog holds no such document
	failed bool           // the watch failed; doc is empty
}

// docState is the manager's record of one watched document.
type docState struct {
	name     string
	gen      uint64
	cancel   context.CancelFunc
	answered bool // the catalog (or a snapshot) has answered once
	// good is the last good version, validated alone; nil when none.
	good                   *router.Document
	goodHash, rejectedHash string
	restoreTried           bool // the snapshot was tried, after a rejection or a failed first watch
}

// wantedDocuments returns the documents the mesh watches: the defaults,
// its own service's (for inbound rules), and those of the services it
// calls (named by WithServices or asked for by an adapter or a first use).
func (m *Mesh) wantedDocuments() map[string]bool {
	want := map[string]bool{rules.DefaultsName: true}
	if m.cfg.local != "" {
		want[m.cfg.local] = true
	}
	for _, s := range m.cfg.services {
		want[s] = true
	}
	for s := range m.demanded {
		if s != rules.DefaultsName { // a host called _defaults is no service's
			want[s] = true
		}
	}
	return want
}

// syncDocuments starts a catalog watch for each wanted document and stops
// those no longer wanted, dropping their rules.
func (m *Mesh) syncDocuments(ctx context.Context) {
	if m.cfg.catalog == nil {
		return
	}
	want := m.wantedDocuments()
	first := m.awaitedDocs == nil && !isClosed(m.ready)
	if first {
		m.awaitedDocs = make(map[string]bool, len(want))
	}
	for name := range want {
		if first {
			m.awaitedDocs[name] = true
		}
		if m.documents[name] != nil {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		m.watchGen++
		d := &docState{name: name, gen: m.watchGen, cancel: cancel}
		m.documents[name] = d
		m.mu.Lock()
		m.docStatus[name] = DocumentStatus{Name: name, Source: m.cfg.catalog.Describe(name), State: DocumentWaiting}
		m.docAnswered[name] = make(chan struct{})
		m.mu.Unlock()
		m.rulesConn.started(watchKey{name, d.gen})
		m.done.Add(1)
		go m.watchDocument(wctx, name, d.gen)
	}
	dropped := false
	for name, d := range m.documents {
		if want[name] {
			continue
		}
		d.cancel()
		m.rulesConn.stopped(watchKey{name, d.gen}, time.Now())
		delete(m.documents, name)
		m.mu.Lock()
		delete(m.docStatus, name)
		delete(m.docAnswered, name)
		m.mu.Unlock()
		m.metrics.DocumentDropped(name)
		dropped = dropped || d.good != nil
	}
	if dropped {
		if compiled, err := m.composeDocuments("", nil); err == nil {
			m.eng.Publish(m.eng.Load().WithRules(compiled, m.onBreakerChange))
		} else {
			// Fewer documents than a valid composition cannot break a
			// limit; report it rather than lose it.
			m.cfg.logger.Error("lightmesh: rules without a dropped document failed to compile", "err", err)
		}
	}
}

// watchDocument runs the catalog's Watch for one document in a backoff
// loop, handing every delivery to the manager.
func (m *Mesh) watchDocument(ctx context.Context, name string, gen uint64) {
	defer m.done.Done()
	send := func(ctx context.Context, up docUpdate) {
		select {
		case m.docUpdates <- up:
		case <-ctx.Done():
		}
	}
	watch := func(ctx context.Context, update func(rules.Document)) error {
		return m.cfg.catalog.Watch(ctx, name, update)
	}
	m.followRules(ctx, watchKey{name, gen}, m.cfg.catalog.Describe(name), watch,
		func(ctx context.Context, doc rules.Document) { send(ctx, docUpdate{name: name, gen: gen, doc: doc}) },
		func(ctx context.Context) { send(ctx, docUpdate{name: name, gen: gen, failed: true}) })
}

// applyDocUpdate handles one delivery of a catalog watch.
func (m *Mesh) applyDocUpdate(ctx context.Context, up docUpdate) {
	d := m.documents[up.name]
	if d == nil || d.gen != up.gen {
		return
	}
	if up.failed {
		// A document first watched after New (a service found on first
		// use, or dialled) with the catalog down: its saved version is
		// better than the defaults. Those New waits for are restored at
		// its deadline instead (restoreUnanswered).
		if !d.answered && d.good == nil && !d.restoreTried && m.store != nil && !m.awaitedDocs[d.name] {
			d.restoreTried = true
			if err := m.restoreDocument(ctx, d); err == nil {
				m.documentAnswered(ctx, d)
			}
		}
		return
	}
	defer m.documentAnswered(ctx, d)
	if up.doc.Data == nil {
		m.documentMissing(d)
		return
	}
	if err := m.applyPart(ctx, d, up.doc, false); err != nil && d.good == nil && !d.restoreTried && m.store != nil {
		// Never had a good version: the last one saved is better than
		// none (the defaults).
		d.restoreTried = true
		if err := m.restoreDocument(ctx, d); err != nil && !snapshot.IsNotExist(err) {
			m.cfg.logger.Warn("lightmesh: rule document snapshot unusable", "document", d.name, "err", err)
		}
	}
}

// documentMissing records that the catalog holds no document d: its last
// good rules, if any, keep serving.
func (m *Mesh) documentMissing(d *docState) {
	m.metrics.DocumentUpdate(d.name, "", "missing")
	if m.saver != nil && d.good == nil {
		// A restart with the catalog down then knows the service had
		// no rules, rather than nothing about it.
		m.saver.document(d.name, snapshot.Rules{Source: m.cfg.catalog.Describe(d.name), SavedAt: time.Now(), Missing: true})
	}
	deleted := false
	m.updateDocStatus(d.name, func(st *DocumentStatus) {
		switch {
		case d.good != nil && st.State != DocumentDeleted:
			st.State, deleted = DocumentDeleted, true
		case d.good == nil:
			st.State, st.FromSnapshot = DocumentMissing, false
		}
	})
	if deleted {
		m.cfg.logger.Warn("lightmesh: rule document deleted; its last good rules keep serving", "document", m.cfg.catalog.Describe(d.name))
	}
}

// documentAnswered closes ready once every document New waits for has
// been answered.
func (m *Mesh) documentAnswered(ctx context.Context, d *docState) {
	if !d.answered {
		d.answered = true
		m.mu.Lock()
		if ch := m.docAnswered[d.name]; ch != nil {
			close(ch)
		}
		m.mu.Unlock()
	}
	if m.awaitedDocs == nil {
		return
	}
	delete(m.awaitedDocs, d.name)
	if len(m.awaitedDocs) == 0 && !isClosed(m.ready) {
		m.awaitedDocs = nil
		close(m.ready)
		m.syncWatches(ctx)
	}
}

// applyPart validates doc as the document of d alone (router.LoadPart),
// composes it with the good versions of the other documents and
// publishes the result, or rejects it, keeping d's last good version in
// force. The other documents are never touched: their rules stay as they
// were either way.
func (m *Mesh) applyPart(ctx context.Context, d *docState, doc rules.Document, fromSnapshot bool) error {
	hash, version := documentVersion(doc)
	now := time.Now()
	if hash == d.goodHash || hash == d.rejectedHash {
		m.updateDocStatus(d.name, func(st *DocumentStatus) {
			if hash == d.goodHash {
				st.State = DocumentApplied
				if st.FromSnapshot && !fromSnapshot {
					st.FromSnapshot, st.Version = false, version
				}
			}
		})
		m.metrics.DocumentUpdate(d.name, version, "unchanged")
		m.metrics.RuleUpdate("unchanged")
		return nil
	}
	part := d.name
	if part == rules.DefaultsName {
		part = ""
	}
	loaded, err := router.LoadPart(part, doc.Data)
	var compiled *router.Rules
	alone := err == nil // valid on its own
	if alone {
		compiled, err = m.composeDocuments(d.name, loaded.Document())
		if err != nil {
			err = fmt.Errorf("together with the other documents in force: %w", err)
		}
	}
	source := m.cfg.catalog.Describe(d.name)
	if err != nil {
		if !alone {
			// Rejected for itself: the same version is not looked at
			// again. One rejected only with the others (a fleet-wide
			// total) is tried again when it is delivered again.
			d.rejectedHash = hash
		}
		msg := redact(err.Error())
		m.cfg.logger.Error("lightmesh: rule document rejected; its last good rules keep serving",
			"document", source, "version", version, "err", msg)
		rej := &Rejection{Version: version, Error: msg, At: now}
		m.updateDocStatus(d.name, func(st *DocumentStatus) {
			st.LastRejection = rej
			if d.good == nil {
				st.State = DocumentRejected
			}
		})
		m.mu.Lock()
		m.status.LastRejection = &Rejection{Version: d.name + "@" + version, Error: d.name + ": " + msg, At: now}
		m.mu.Unlock()
		m.metrics.DocumentUpdate(d.name, version, "rejected")
		m.metrics.RuleUpdate("rejected")
		m.notify(RulesEvent{Document: d.name, Version: version, Err: fmt.Errorf("%s: %w", d.name, err), At: now})
		return err
	}
	d.good, d.goodHash = loaded.Document(), hash
	if !fromSnapshot {
		// A saved version restored after a rejection leaves the
		// rejected one known: delivered again, it is not rejected again.
		d.rejectedHash = ""
	}
	m.eng.Publish(m.eng.Load().WithRules(compiled, m.onBreakerChange))
	m.updateDocStatus(d.name, func(st *DocumentStatus) {
		st.State, st.Version, st.AppliedAt, st.FromSnapshot = DocumentApplied, version, now, fromSnapshot
	})
	m.mu.Lock()
	m.status.Rules.Version, m.status.Rules.AppliedAt = d.name+"@"+version, now
	m.mu.Unlock()
	if m.saver != nil && !fromSnapshot {
		m.saver.document(d.name, snapshot.Rules{Source: source, Version: version, SavedAt: now, Data: string(doc.Data)})
	}
	m.metrics.DocumentUpdate(d.name, version, "applied")
	m.metrics.RuleUpdate("applied")
	m.cfg.logger.Info("lightmesh: rule document applied", "document", source, "version", version, "from_snapshot", fromSnapshot)
	if isClosed(m.ready) {
		m.syncWatches(ctx)
	}
	m.notify(RulesEvent{Document: d.name, Version: version, At: now})
	return nil
}

// composeDocuments compiles the good versions of every watched document
// into one rule set, with candidate in place of the document called name
// (name "" adds none).
func (m *Mesh) composeDocuments(name string, candidate *router.Document) (*router.Rules, error) {
	var defaults *router.Document
	var parts []*router.Document
	for n, d := range m.documents {
		doc := d.good
		if n == name {
			doc = candidate
		}
		switch {
		case doc == nil:
		case n == rules.DefaultsName:
			defaults = doc
		default:
			parts = append(parts, doc)
		}
	}
	// Each document was checked alone: its budgets are its own.
	return router.Compose(defaults, parts...)
}

// restoreDocument applies d's saved version, if the snapshot holds one
// saved from the same catalog document.
func (m *Mesh) restoreDocument(ctx context.Context, d *docState) error {
	saved, err := m.store.LoadDocument(d.name)
	if err != nil {
		return err
	}
	if source := m.cfg.catalog.Describe(d.name); saved.Source != source {
		return fmt.Errorf("saved from %s, not from %s", saved.Source, source)
	}
	if saved.Missing {
		m.updateDocStatus(d.name, func(st *DocumentStatus) {
			if st.State == DocumentWaiting {
				st.State, st.FromSnapshot = DocumentMissing, true
			}
		})
		return nil
	}
	if err := m.applyPart(ctx, d, rules.Document{Data: []byte(saved.Data), Version: saved.Version}, true); err != nil {
		return fmt.Errorf("snapshot rejected: %w", err)
	}
	m.cfg.logger.Warn("lightmesh: rule document restored from the local snapshot",
		"document", saved.Source, "version", saved.Version, "saved_at", saved.SavedAt)
	return nil
}

// restoreUnanswered restores from the snapshot every document the catalog
// has not answered for, when New's start timeout passed, and reports
// those that are left with nothing.
func (m *Mesh) restoreUnanswered(ctx context.Context) error {
	var left []string
	for _, name := range slices.Sorted(maps.Keys(m.documents)) {
		d := m.documents[name]
		if d.answered {
			continue
		}
		if m.store == nil {
			left = append(left, name)
			continue
		}
		if err := m.restoreDocument(ctx, d); err != nil {
			left = append(left, fmt.Sprintf("%s (no usable snapshot: %v)", name, err))
			continue
		}
		m.documentAnswered(ctx, d)
	}
	if len(left) > 0 {
		return fmt.Errorf("no answer for %s", strings.Join(left, ", "))
	}
	return nil
}

// startFromCatalogSnapshot asks the manager to restore the unanswered
// documents, for waitReady.
func (m *Mesh) startFromCatalogSnapshot(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case m.docRestores <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	err := <-done
	if err == nil {
		return nil
	}
	reason := m.rulesConn.status().LastError
	if reason == "" {
		reason = "no document received"
	}
	return fmt.Errorf("mesh: no rules from %s within %v: %v: %s", m.source, m.cfg.startTimeout, err, reason)
}

// awaitDocument waits until the catalog has answered for the document
// of service (or its snapshot stood in), at most until deadline; it
// returns at once without a catalog or for a document not watched.
func (m *Mesh) awaitDocument(ctx context.Context, service string, deadline time.Time) {
	if m.cfg.catalog == nil {
		return
	}
	m.mu.Lock()
	ch := m.docAnswered[service]
	m.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	case <-m.stopped:
	}
}

// updateDocStatus changes the status of the document called name.
func (m *Mesh) updateDocStatus(name string, change func(*DocumentStatus)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, ok := m.docStatus[name]
	if !ok {
		return
	}
	change(&st)
	m.docStatus[name] = st
}

// documentStatuses returns the status of every watched document, sorted
// by name, with the settings each service takes from the defaults.
func (m *Mesh) documentStatuses(inForce *router.Rules) []DocumentStatus {
	m.mu.Lock()
	out := slices.Collect(maps.Values(m.docStatus))
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b DocumentStatus) int { return strings.Compare(a.Name, b.Name) })
	for i := range out {
		if r := out[i].LastRejection; r != nil {
			copy := *r
			out[i].LastRejection = &copy
		}
		if out[i].Name != rules.DefaultsName {
			out[i].Defaulted = inForce.Defaulted(out[i].Name)
		}
	}
	return out
}
