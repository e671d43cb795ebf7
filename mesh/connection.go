package mesh

import (
	"sort"
	"sync"
	"time"
)

// Connection states a WatcherStatus reports.
const (
	// StateWaiting: the watcher has not heard from its control plane yet,
	// and nothing has failed (the first read is under way); a watch that
	// fails from the start is reconnecting.
	StateWaiting = "waiting"
	// StateConnected: the last attempt succeeded and nothing has failed
	// since.
	StateConnected = "connected"
	// StateReconnecting: the control plane stopped answering (a watch
	// ended, or a source's health check failed) and the watcher is
	// retrying with backoff; Since is when it lost the connection.
	StateReconnecting = "reconnecting"
)

// WatcherStatus describes one control-plane watcher: the rule source's,
// or discovery's (all of its per-service watches together).
//
// A watch learns of an outage when its source says so: the etcd
// adapter reads with a deadline every second and ends its watches when
// a read fails; the Nacos adapter re-reads its config item and checks
// the naming client's server health every second. A source without such
// checks is reported reconnecting only when its Watch returns an error.
type WatcherStatus struct {
	// State is StateWaiting, StateConnected or StateReconnecting.
	State string `json:"state"`
	// Connected is State == StateConnected.
	Connected bool `json:"connected"`
	// Since is when State began.
	Since time.Time `json:"since,omitzero"`
	// Attempts counts the failed attempts since the connection was lost
	// (0 while connected): one per failed watch or health check, each
	// after a backoff delay, so it grows slowly, never in a hot loop. For
	// discovery it is the sum over the failing services.
	Attempts int `json:"attempts,omitempty"`
	// LastError is the error of the last failed attempt, credentials
	// redacted; it stays after a reconnect, for the record.
	LastError string `json:"lastError,omitempty"`
	// LastUpdate is when the control plane last delivered something (a
	// rule document, changed or not, or an instance list). A source that
	// answers but has nothing to deliver (a rule key that does not exist
	// yet) makes the watcher connected without changing it.
	LastUpdate time.Time `json:"lastUpdate,omitzero"`
	// Failing lists, for discovery, the services whose watch is failing.
	Failing []string `json:"failing,omitempty"`
}

// connTracker folds the attempts of one watcher's watches (one for the
// rule source, one per service for discovery) into a WatcherStatus. It
// is safe for concurrent use.
type connTracker struct {
	// onChange is called with the new status after every change, under
	// the tracker's lock so that the calls come in order: it must be
	// quick and must not call the tracker.
	onChange func(WatcherStatus)

	mu         sync.Mutex
	since      time.Time // start of the current state
	state      string
	answered   bool // the control plane has answered at least once
	lastError  string
	lastUpdate time.Time
	active     map[watchKey]bool
	failing    map[watchKey]*watchFailure
}

// watchKey names one watch: the service ("" for the rule source) and
// the generation the mesh gave the watch, so the last attempts of a
// stopped watch are not taken for those of its successor.
type watchKey struct {
	service string
	gen     uint64
}

// watchFailure is one watch's run of failed attempts.
type watchFailure struct {
	since    time.Time
	attempts int
}

func newConnTracker(now time.Time, onChange func(WatcherStatus)) *connTracker {
	return &connTracker{onChange: onChange, state: StateWaiting, since: now,
		active: map[watchKey]bool{}, failing: map[watchKey]*watchFailure{}}
}

// started registers the watch key; attempts of keys not registered, or
// stopped, are ignored.
func (c *connTracker) started(key watchKey) {
	c.mu.Lock()
	c.active[key] = true
	c.mu.Unlock()
}

// delivered records that the watch key received something from the
// control plane.
func (c *connTracker) delivered(key watchKey, now time.Time) { c.answer(key, now, true) }

// reachable records that the watch key's source answered with nothing
// to deliver.
func (c *connTracker) reachable(key watchKey, now time.Time) { c.answer(key, now, false) }

func (c *connTracker) answer(key watchKey, now time.Time, delivered bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active[key] {
		return
	}
	delete(c.failing, key)
	c.answered = true
	if delivered {
		c.lastUpdate = now
	}
	c.onChange(c.settleLocked(now))
}

// failed records a failed attempt of the watch key.
func (c *connTracker) failed(key watchKey, msg string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active[key] {
		return
	}
	f := c.failing[key]
	if f == nil {
		f = &watchFailure{since: now}
		c.failing[key] = f
	}
	f.attempts++
	c.lastError = msg
	c.onChange(c.settleLocked(now))
}

// stopped forgets the watch key: it was stopped on purpose.
func (c *connTracker) stopped(key watchKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.active, key)
	if c.failing[key] == nil {
		return
	}
	delete(c.failing, key)
	c.onChange(c.settleLocked(now))
}

// settleLocked moves to the state the failing watches imply and returns
// the status.
func (c *connTracker) settleLocked(now time.Time) WatcherStatus {
	want := StateConnected
	switch {
	case len(c.failing) > 0:
		want = StateReconnecting
	case !c.answered:
		want = StateWaiting
	}
	if want != c.state {
		c.state, c.since = want, now
	}
	if want == StateReconnecting {
		// Since the oldest failure still going on: a watch that
		// recovered no longer counts.
		c.since = c.earliestFailureLocked()
	}
	return c.statusLocked()
}

func (c *connTracker) earliestFailureLocked() time.Time {
	var t time.Time
	for _, f := range c.failing {
		if t.IsZero() || f.since.Before(t) {
			t = f.since
		}
	}
	return t
}

// status returns the current status.
func (c *connTracker) status() WatcherStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statusLocked()
}

func (c *connTracker) statusLocked() WatcherStatus {
	st := WatcherStatus{State: c.state, Connected: c.state == StateConnected, Since: c.since,
		LastError: c.lastError, LastUpdate: c.lastUpdate}
	for key, f := range c.failing {
		st.Attempts += f.attempts
		if key.service != "" {
			st.Failing = append(st.Failing, key.service)
		}
	}
	sort.Strings(st.Failing)
	return st
}

// failureLogEvery is how often a watch failing the same way is logged
// again.
const failureLogEvery = time.Minute

// failureLog decides which failed attempts of one watch are logged: the
// first of an outage, one with a new error, and then one a minute with
// the count of those not logged, so an outage shows in the log at once
// without a line per retry (the status counts every attempt). It is safe
// for concurrent use.
type failureLog struct {
	mu    sync.Mutex
	msg   string
	at    time.Time
	quiet int // failures not logged since at
}

// failed reports whether the failure msg at now is to be logged, and how
// many failures since the last one logged were not.
func (f *failureLog) failed(msg string, now time.Time) (log bool, quiet int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if msg == f.msg && now.Sub(f.at) < failureLogEvery {
		f.quiet++
		return false, 0
	}
	quiet = f.quiet
	f.msg, f.at, f.quiet = msg, now, 0
	return true, quiet
}

// answered ends an outage: the next failure is logged.
func (f *failureLog) answered() {
	f.mu.Lock()
	f.msg, f.quiet = "", 0
	f.mu.Unlock()
}
