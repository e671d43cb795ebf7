package mesh

import (
	"bytes"
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

// The states of one rule document (DocumentStatus.State). Every document
// starts waiting and moves to one of the others on each delivery; its
// last rejection is kept beside the state as history.
const (
	// DocumentWaiting: the source has not answered for the document yet.
	DocumentWaiting = "waiting"
	// DocumentApplied: the document's rules are in force.
	DocumentApplied = "applied"
	// DocumentMissing: the source holds no such document (or an empty
	// one) and no good version of it came before: in a per-service
	// layout the service runs on the defaults.
	DocumentMissing = "missing"
	// DocumentDeleted: the document was deleted or emptied at the
	// source; its last good rules keep serving until a new version is
	// published.
	DocumentDeleted = "deleted"
	// DocumentRejected: the source holds a document that was rejected
	// and no good version of it came before: in a per-service layout the
	// service runs on the defaults.
	DocumentRejected = "rejected"
)

// wholeDocument is the name of the one document of WithRules, which
// holds every service and the defaults.
const wholeDocument = ""

// DocumentStatus describes one rule document: in a per-service layout
// (WithRuleCatalog) the rules of one service or the defaults.
type DocumentStatus struct {
	// Name is the service the document is for, or rules.DefaultsName.
	Name string `json:"name"`
	// Source names the document in its catalog.
	Source string `json:"source"`
	// State is DocumentWaiting, DocumentApplied, DocumentMissing,
	// DocumentDeleted or DocumentRejected.
	State string `json:"state"`
	// Version, AppliedAt and FromSnapshot describe the version in force.
	// A version delivered again with the content in force (a revert
	// under a new etcd revision) becomes the version in force.
	Version      string    `json:"version,omitempty"`
	AppliedAt    time.Time `json:"appliedAt,omitzero"`
	FromSnapshot bool      `json:"fromSnapshot,omitempty"`
	// LastRejection is the last version of this document rejected; a
	// later good version does not clear it (its At is then before
	// AppliedAt: history, not the current state).
	LastRejection *Rejection `json:"lastRejection,omitempty"`
	// Defaulted lists the settings the service takes from the defaults
	// document rather than from its own (timeout, retry, breaker,
	// outlierDetection, rateLimit).
	Defaulted []string `json:"defaulted,omitempty"`
	// History lists the document's last changes, oldest first, at most
	// MaxDocumentHistory: every version applied or rejected, deletions
	// and restores from the snapshot.
	History []DocumentEvent `json:"history,omitempty"`
}

// MaxDocumentHistory bounds DocumentStatus.History.
const MaxDocumentHistory = 16

// DocumentEvent is one change in a document's life: a version applied
// (State DocumentApplied) or rejected (DocumentRejected, with Error, even
// while an earlier good version keeps serving), or the document found
// missing or deleted.
type DocumentEvent struct {
	State        string    `json:"state"`
	Version      string    `json:"version,omitempty"`
	At           time.Time `json:"at"`
	Error        string    `json:"error,omitempty"`
	FromSnapshot bool      `json:"fromSnapshot,omitempty"`
}

// record appends ev to st's history, dropping the oldest beyond
// MaxDocumentHistory. It makes a new slice: readers hold the old one.
func (st *DocumentStatus) record(ev DocumentEvent) {
	h := st.History
	if len(h) >= MaxDocumentHistory {
		h = h[len(h)-MaxDocumentHistory+1:]
	}
	st.History = append(slices.Clip(h), ev)
}

// oneDocument presents the rule source of WithRules as a catalog of one
// document, wholeDocument: both layouts then share one document state
// machine.
type oneDocument struct {
	src  rules.Source
	name string // src.String(), credentials redacted
}

func (o oneDocument) Watch(ctx context.Context, _ string, update func(rules.Document)) error {
	return o.src.Watch(ctx, update)
}
func (o oneDocument) Describe(string) string { return o.name }
func (o oneDocument) String() string         { return o.name }

// redactedCatalog gives the names of a catalog's documents with
// credentials redacted, so the log, Status, RejectionError and the
// snapshot never show them, whatever the catalog's Describe returns.
type redactedCatalog struct{ rules.Catalog }

func (c redactedCatalog) Describe(name string) string { return redact(c.Catalog.Describe(name)) }

// docUpdate is one delivery of a document watch to the manager.
type docUpdate struct {
	name   string
	gen    uint64
	doc    rules.Document // nil Data: the source holds no such document
	failed bool           // the watch failed; doc is empty
}

// docState is the manager's record of one watched document.
type docState struct {
	name     string
	gen      uint64
	cancel   context.CancelFunc
	answered bool // the source (or a snapshot) has answered once
	// good is the last good version, validated alone; nil when none.
	good *router.Document
	// goodHash is the content hash of good; rejectedHash that of the
	// last delivery when it was rejected for itself, so the same
	// delivery repeated (a reconnect) is not rejected again. Any other
	// delivery clears it: a broken version published again after a
	// revert is rejected again, loudly.
	goodHash, rejectedHash string
	restoreTried           bool   // the snapshot was tried, after a rejection or a failed first watch
	restoreErr             string // why the snapshot could not stand in, for New's error
}

// wantedDocuments returns the documents the mesh watches: with WithRules
// the one document; with a catalog the defaults, its own service's (for
// inbound rules), and those of the services it calls (named by
// WithServices or asked for by an adapter or a first use).
func (m *Mesh) wantedDocuments() map[string]bool {
	if m.whole {
		return map[string]bool{wholeDocument: true}
	}
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

// syncDocuments starts a watch for each wanted document and stops those
// no longer wanted, dropping their rules and their snapshot files.
func (m *Mesh) syncDocuments(ctx context.Context) {
	if m.cat == nil {
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
		m.docStatus[name] = DocumentStatus{Name: name, Source: m.cat.Describe(name), State: DocumentWaiting}
		m.docAnswered[name] = make(chan struct{})
		m.mu.Unlock()
		m.waitingDocs.Store(name, struct{}{})
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
		m.waitingDocs.Delete(name)
		m.metrics.DocumentDropped(name)
		if m.saver != nil {
			m.saver.forgetDocument(name)
		}
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

// watchDocument runs the source's Watch for one document in a backoff
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
		return m.cat.Watch(ctx, name, update)
	}
	m.followRules(ctx, watchKey{name, gen}, m.cat.Describe(name), watch,
		func(ctx context.Context, doc rules.Document) { send(ctx, docUpdate{name: name, gen: gen, doc: doc}) },
		func(ctx context.Context) { send(ctx, docUpdate{name: name, gen: gen, failed: true}) })
}

// applyDocUpdate handles one delivery of a document watch.
func (m *Mesh) applyDocUpdate(ctx context.Context, up docUpdate) {
	d := m.documents[up.name]
	if d == nil || d.gen != up.gen {
		return
	}
	if up.failed {
		// A document first watched after New (a service found on first
		// use, or dialled) with the source down: its saved version is
		// better than the defaults. Those New waits for are restored at
		// its deadline instead (restoreUnanswered).
		if !d.answered && d.good == nil && !d.restoreTried && m.store != nil && !m.awaitedDocs[d.name] {
			if m.tryRestore(ctx, d) {
				m.documentAnswered(ctx, d)
			}
		}
		return
	}
	defer m.documentAnswered(ctx, d)
	if len(bytes.TrimSpace(up.doc.Data)) == 0 {
		// Nothing, or an empty document: every source means the same by
		// it, that the document is gone.
		m.documentMissing(d)
		if m.whole && d.good == nil && !d.restoreTried && m.store != nil {
			m.tryRestore(ctx, d)
		}
		return
	}
	if err := m.applyDocument(ctx, d, up.doc, false); err != nil && d.good == nil && !d.restoreTried && m.store != nil {
		// Never had a good version: the last one saved is better than
		// none.
		m.tryRestore(ctx, d)
	}
}

// tryRestore restores d from the snapshot, once, and reports whether it
// did; why it could not is kept for New's error and logged when the
// snapshot exists but is unusable.
func (m *Mesh) tryRestore(ctx context.Context, d *docState) bool {
	d.restoreTried = true
	err := m.restoreDocument(ctx, d)
	if err == nil {
		return true
	}
	d.restoreErr = err.Error()
	if !snapshot.IsNotExist(err) {
		m.cfg.logger.Warn("lightmesh: rule document snapshot unusable", "document", m.cat.Describe(d.name), "err", err)
	}
	return false
}

// documentMissing records that the source holds no document d (or an
// empty one): its last good rules, if any, keep serving.
func (m *Mesh) documentMissing(d *docState) {
	d.rejectedHash = ""
	if !m.whole {
		m.metrics.DocumentUpdate(d.name, "", "missing")
	}
	if m.saver != nil && d.good == nil && !m.whole {
		// A restart with the source down then knows the document was
		// absent, rather than nothing about it. The one document of
		// WithRules is restored from the snapshot instead, which must
		// then keep its last good version for the next restart.
		m.saver.document(d.name, snapshot.Rules{Source: m.cat.Describe(d.name), SavedAt: time.Now(), Missing: true})
	}
	deleted := false
	m.updateDocStatus(d.name, func(st *DocumentStatus) {
		switch {
		case d.good != nil && st.State != DocumentDeleted:
			st.State, deleted = DocumentDeleted, true
			st.record(DocumentEvent{State: DocumentDeleted, At: time.Now()})
		case d.good == nil:
			if st.State != DocumentMissing || st.FromSnapshot {
				st.record(DocumentEvent{State: DocumentMissing, At: time.Now()})
			}
			st.State, st.FromSnapshot = DocumentMissing, false
		}
	})
	if deleted {
		m.cfg.logger.Warn("lightmesh: rule document deleted or emptied; its last good rules keep serving", "document", m.cat.Describe(d.name))
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
		m.waitingDocs.Delete(d.name) // after its rules, if any, are published
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

// load validates data as the document called name: the whole rule set
// with WithRules, one service's (or the defaults) in a catalog.
func (m *Mesh) load(name string, data []byte) (*router.Rules, error) {
	switch name {
	case wholeDocument:
		return router.Load(data)
	case rules.DefaultsName:
		return router.LoadPart("", data)
	default:
		return router.LoadPart(name, data)
	}
}

// applyDocument validates doc as the document d, composes it with the
// good versions of the other documents and publishes the result, or
// rejects it, keeping d's last good version in force. The other documents
// are never touched: their rules stay as they were either way.
//
// Validation and compilation are the router's, the entry points tools
// use; only once they succeeded does the next state carry breakers,
// buckets and budgets over from the one in force, and nothing in force
// changes until the next state is published with one store.
func (m *Mesh) applyDocument(ctx context.Context, d *docState, doc rules.Document, fromSnapshot bool) error {
	hash, version := documentVersion(doc)
	now := time.Now()
	source := m.cat.Describe(d.name)
	if hash == d.goodHash {
		m.sameAsInForce(d, doc, version, now, fromSnapshot)
		return nil
	}
	if hash == d.rejectedHash {
		m.countUpdate(d, version, "unchanged") // the rejected delivery, repeated
		return nil
	}
	if !fromSnapshot {
		d.rejectedHash = ""
	}
	loaded, err := m.load(d.name, doc.Data)
	compiled := loaded
	alone := err == nil // valid on its own
	if alone && !m.whole {
		compiled, err = m.composeDocuments(d.name, loaded.Document())
		if err != nil {
			err = fmt.Errorf("together with the other documents in force: %w", err)
		}
	}
	if err != nil {
		if !alone {
			// Rejected for itself: the same delivery repeated is not
			// looked at again. One rejected only with the others (a
			// fleet-wide total) is tried again when delivered again.
			d.rejectedHash = hash
		}
		m.reject(d, version, err, now)
		return err
	}
	d.good, d.goodHash = loaded.Document(), hash
	m.eng.Publish(m.eng.Load().WithRules(compiled, m.onBreakerChange))
	m.updateDocStatus(d.name, func(st *DocumentStatus) {
		st.State, st.Version, st.AppliedAt, st.FromSnapshot = DocumentApplied, version, now, fromSnapshot
		st.record(DocumentEvent{State: DocumentApplied, Version: version, At: now, FromSnapshot: fromSnapshot})
	})
	m.setInForce(d, version, now)
	if m.saver != nil && !fromSnapshot {
		m.saver.document(d.name, snapshot.Rules{Source: source, Version: version, SavedAt: now, Data: string(doc.Data)})
	}
	m.countUpdate(d, version, "applied")
	m.cfg.logger.Info("lightmesh: rule document applied", "document", source, "version", version,
		"services", len(compiled.Services()), "from_snapshot", fromSnapshot)
	m.warnLaneHeaders(compiled)
	if isClosed(m.ready) {
		m.syncWatches(ctx)
	}
	m.notify(RulesEvent{Document: d.name, Version: version, At: now})
	return nil
}

// sameAsInForce handles a delivery whose content is d's good version:
// the source back after a snapshot start, a revert after a rejection, or
// the same content under a new version (an etcd revision). The version
// delivered becomes the version in force and a rejection before it is
// history.
func (m *Mesh) sameAsInForce(d *docState, doc rules.Document, version string, now time.Time, fromSnapshot bool) {
	if fromSnapshot {
		m.countUpdate(d, version, "unchanged")
		return
	}
	reverted := d.rejectedHash != ""
	d.rejectedHash = ""
	changed := false
	m.updateDocStatus(d.name, func(st *DocumentStatus) {
		if st.State == DocumentApplied && !st.FromSnapshot && st.Version == version && !reverted {
			return
		}
		changed = true
		st.State, st.Version, st.AppliedAt, st.FromSnapshot = DocumentApplied, version, now, false
		st.record(DocumentEvent{State: DocumentApplied, Version: version, At: now})
	})
	m.countUpdate(d, version, "unchanged")
	if !changed {
		return
	}
	m.setInForce(d, version, now)
	m.metrics.VersionInForce(d.name, m.source, version)
	if m.saver != nil {
		m.saver.document(d.name, snapshot.Rules{Source: m.cat.Describe(d.name), Version: version, SavedAt: now, Data: string(doc.Data)})
	}
	m.cfg.logger.Info("lightmesh: rule document back to the content in force", "document", m.cat.Describe(d.name), "version", version)
}

// reject records that version of d was rejected with err: logged with
// every problem, counted, kept in the status and sent as an event.
func (m *Mesh) reject(d *docState, version string, err error, now time.Time) {
	msg := redact(err.Error())
	serving := "its last good rules keep serving"
	if d.good == nil {
		serving = "no version of it is in force"
		if !m.whole {
			serving += "; the service runs on the defaults"
		}
	}
	m.cfg.logger.Error("lightmesh: rule document rejected; "+serving, "document", m.cat.Describe(d.name), "version", version, "err", msg)
	rej := &Rejection{Version: version, Error: msg, At: now}
	m.updateDocStatus(d.name, func(st *DocumentStatus) {
		st.LastRejection = rej
		switch {
		case d.good == nil:
			st.State = DocumentRejected
		case st.State == DocumentDeleted:
			// The source holds a document again, rejected: the last
			// good rules are in force as after any rejection.
			st.State = DocumentApplied
		}
		st.record(DocumentEvent{State: DocumentRejected, Version: version, At: now, Error: msg})
	})
	top := &Rejection{Version: version, Error: msg, At: now}
	evErr := err
	if !m.whole {
		top = &Rejection{Version: d.name + "@" + version, Error: d.name + ": " + msg, At: now}
		evErr = fmt.Errorf("%s: %w", d.name, err)
	}
	m.mu.Lock()
	m.status.LastRejection = top
	m.lastRejection = &RejectionError{Document: d.name, Source: m.cat.Describe(d.name), Version: version, At: now, Err: err, msg: msg}
	m.mu.Unlock()
	m.countUpdate(d, version, "rejected")
	m.notify(RulesEvent{Document: d.name, Version: version, Err: evErr, At: now})
}

// setInForce records version of d as the last rules applied.
func (m *Mesh) setInForce(d *docState, version string, now time.Time) {
	label := version
	if !m.whole {
		label = d.name + "@" + version
	}
	m.mu.Lock()
	m.status.Rules.Version, m.status.Rules.AppliedAt = label, now
	m.mu.Unlock()
}

// countUpdate counts one delivery of d with result applied, rejected or
// unchanged.
func (m *Mesh) countUpdate(d *docState, version, result string) {
	if m.whole {
		if result == "applied" {
			m.metrics.RulesApplied(m.source, version)
		} else {
			m.metrics.RuleUpdate(result)
		}
		return
	}
	m.metrics.DocumentUpdate(d.name, version, result)
	m.metrics.RuleUpdate(result)
}

// composeDocuments compiles the good versions of every watched document
// into one rule set, with candidate in place of the document called name
// (name "" adds none).
func (m *Mesh) composeDocuments(name string, candidate *router.Document) (*router.Rules, error) {
	var defaults *router.Document
	var parts []*router.Document
	for n, d := range m.documents {
		doc := d.good
		if n == name && name != "" {
			doc = candidate
		}
		switch {
		case doc == nil:
		case n == wholeDocument:
			return router.Compile(doc)
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
// saved from the same document.
func (m *Mesh) restoreDocument(ctx context.Context, d *docState) error {
	saved, err := m.store.LoadDocument(d.name)
	if err != nil {
		return fmt.Errorf("no usable snapshot: %w", err)
	}
	if source := m.cat.Describe(d.name); saved.Source != source {
		return fmt.Errorf("the snapshot in %s was saved from %s, not from %s", m.cfg.snapshotDir, saved.Source, source)
	}
	if saved.Missing {
		m.updateDocStatus(d.name, func(st *DocumentStatus) {
			if st.State == DocumentWaiting {
				st.State, st.FromSnapshot = DocumentMissing, true
				st.record(DocumentEvent{State: DocumentMissing, At: time.Now(), FromSnapshot: true})
			}
		})
		if m.whole {
			return fmt.Errorf("the snapshot in %s records no document", m.cfg.snapshotDir)
		}
		return nil
	}
	if err := m.applyDocument(ctx, d, rules.Document{Data: []byte(saved.Data), Version: saved.Version}, true); err != nil {
		return fmt.Errorf("snapshot rejected: %w", err)
	}
	m.cfg.logger.Warn("lightmesh: rule document restored from the local snapshot",
		"document", saved.Source, "version", saved.Version, "saved_at", saved.SavedAt)
	return nil
}

// restoreUnanswered restores from the snapshot every document the source
// has not answered for, when New's start timeout passed.
func (m *Mesh) restoreUnanswered(ctx context.Context) {
	for _, name := range slices.Sorted(maps.Keys(m.documents)) {
		d := m.documents[name]
		if d.answered {
			continue
		}
		if m.store == nil {
			d.restoreErr = "no snapshot directory"
			continue
		}
		if m.tryRestore(ctx, d) {
			m.documentAnswered(ctx, d)
		}
	}
}

// startProblem says why the rules New waits for cannot serve: with
// WithRules, the one document has no good version; with a catalog, some
// document has not been answered for. "" when nothing is wrong. The
// manager keeps the document statuses current, so any goroutine may ask.
func (m *Mesh) startProblem() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var left []string
	for _, name := range slices.Sorted(maps.Keys(m.docStatus)) {
		st := m.docStatus[name]
		var why string
		switch st.State {
		case DocumentWaiting:
			if !m.whole {
				left = append(left, name)
				continue
			}
			why = "no document received"
		case DocumentRejected:
			if !m.whole {
				continue
			}
			why = "document rejected: " + st.LastRejection.Error
		case DocumentMissing:
			if !m.whole {
				continue
			}
			why = "the source holds no document"
		default:
			continue
		}
		return why
	}
	if len(left) > 0 {
		return "no answer for " + strings.Join(left, ", ")
	}
	return ""
}

// startError returns New's error when the rules cannot serve: the
// problem, the rule connection's last error and why the snapshot could
// not stand in, for each document. within is the start timeout, when it
// is what ended the wait.
func (m *Mesh) startError(problem string, restoreErrs []string, within time.Duration) error {
	what := "no valid rules"
	if !m.whole {
		what = "no rules"
	}
	msg := "mesh: " + what + " from " + m.source
	if within > 0 {
		msg += fmt.Sprintf(" within %v", within)
	}
	msg += ": " + problem
	if last := m.rulesConn.status().LastError; last != "" && !strings.Contains(problem, last) {
		msg += ": " + last
	}
	if len(restoreErrs) > 0 {
		msg += "; " + strings.Join(restoreErrs, "; ")
	}
	return fmt.Errorf("%s", msg)
}

// restoreErrors asks the manager why the snapshot could not stand in for
// the documents without rules.
func (m *Mesh) restoreErrors() []string {
	done := make(chan []string, 1)
	select {
	case m.restoreReports <- done:
	case <-m.stopped:
		return nil
	}
	return <-done
}

// reportRestoreErrors answers restoreErrors, on the manager.
func (m *Mesh) reportRestoreErrors() []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(m.documents)) {
		d := m.documents[name]
		if d.good != nil || d.restoreErr == "" {
			continue
		}
		if m.whole {
			out = append(out, d.restoreErr)
		} else {
			out = append(out, name+": "+d.restoreErr)
		}
	}
	return out
}

// awaitDocument waits until the catalog has answered for the document
// of service (or its snapshot stood in), at most until deadline; it
// returns at once without a catalog or for a document not watched.
func (m *Mesh) awaitDocument(ctx context.Context, service string, deadline time.Time) {
	if m.whole || m.cat == nil {
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
		out[i].History = slices.Clone(out[i].History)
		if out[i].Name != rules.DefaultsName && out[i].Name != wholeDocument {
			if in := inForce.InForce(out[i].Name); in != nil {
				out[i].Defaulted = in.FromDefaults
			}
		}
	}
	return out
}
