package nacos

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/rules"
)

// DefaultCatalogGroup is the Nacos group NewCatalog uses when none is
// given: the rules of service user-api are the config item dataId
// "user-api" in group "lightmesh".
const DefaultCatalogGroup = "lightmesh"

// resyncInterval is how often a Catalog reads each config item it
// listens to even without a push, so that a push the SDK missed is
// caught; the reads are spread out, one every resyncInterval/n for n
// items but never more than one every minResyncStep, so with more than
// 300 items each is read every n×100 ms instead.
const (
	resyncInterval = 30 * time.Second
	minResyncStep  = 100 * time.Millisecond
)

// readRetryDelay is how long a Catalog waits before reading an item
// again after a read failed; stuckReads reads failed in a row (about 2 s)
// are logged as a warning, fewer at debug level.
const (
	readRetryDelay = 500 * time.Millisecond
	stuckReads     = 5
)

// Catalog is a rules.Catalog reading each service's rule document from
// one Nacos config item: the rules of service S are the item dataId S in
// the catalog's group (DefaultCatalogGroup, "lightmesh", unless NewCatalog
// is given another) and namespace, and the fleet-wide defaults are the
// item dataId rules.DefaultsName ("_defaults") in the same group. Use
// NewCatalog; call Close when done, after the meshes using it are closed.
//
// An ops engineer edits the rules of service user-api in the Nacos
// console: Configuration Management → Configurations, pick the namespace
// at the top, then create (the + button) or edit the item with Data ID
// "user-api" and Group "lightmesh", choose the format YAML, write the
// document and press Publish. The watches get the change in tens of
// milliseconds (up to 5 s after a Watch of the item began: the SDK
// registers listeners with the server on a 5 s timer). Deleting the item is reported as
// no document (the nil Document), as for an item that never existed.
//
// A Catalog owns one SDK config client, so one connection to Nacos,
// whatever the number of meshes and documents: a program creates one and
// shares it between all its meshes. Several Watch calls for the same
// name share one SDK listener, registered with the first and cancelled
// when the last returns, and each of them gets every change. One health
// check serves all the watches: once a second it reads an item nobody
// writes (see healthItem), and when two reads in a row fail or get no
// answer within 3 s, every Watch of the catalog returns an error, so the
// meshes report the outage and retry with backoff; a new Watch reads its
// item again, so what changed meanwhile is delivered. Each listened item is also
// read about every 30 s (one item at a time, spread out) to catch a
// change whose push was lost. The catalog answers the server's pushes on
// its own connection and reads the pushed item itself (see hearPushes):
// the SDK's listener sometimes misses them.
type Catalog struct {
	client    *configClient
	namespace string // the namespace's ID, "" for public
	group     string
	health    string // the item the health check reads (healthItem)
	prefix    string // "nacos:<namespace>/<group>/"
	logger    *slog.Logger
	diag      *diagnosis
	dir       string // private log and cache directory, removed by Close

	done chan struct{}  // closed by Close
	wg   sync.WaitGroup // the goroutines the catalog started

	readMu  sync.Mutex // held by each read: see get
	hearing bool       // hearPushes was tried; guarded by readMu

	mu          sync.Mutex
	closed      bool
	items       map[string]*catalogItem // by dataId, while watched
	watches     int                     // Watch calls joined to an item
	maintaining bool                    // the health and resync loop runs
	outage      *catalogOutage          // closed when the health check fails
}

var _ rules.Catalog = (*Catalog)(nil)

// catalogOutage is closed, with err set, when the health check fails;
// every Watch that began before then returns err.
type catalogOutage struct {
	ch  chan struct{}
	err error
}

// catalogItem is one listened config item and the watches that share it.
// Its fields are guarded by Catalog.mu.
type catalogItem struct {
	dataID   string
	watchers map[*catalogWatch]struct{}

	known   bool   // a read succeeded: content and version are the item's
	content string // "" when the item does not exist
	version string // MD5 of content, "" when it does not exist
	err     error  // the first read failed; the item left Catalog.items

	listening bool      // the SDK listener is registered
	reading   bool      // a read is in flight
	again     bool      // a push came during the read in flight
	lastRead  time.Time // when the last successful read ended
	pushes    int       // the server's pushes heard for the item (diagnostics)
	lastPush  time.Time // when the last of them was heard (diagnostics)
}

// catalogWatch is one Watch call's place among its item's watchers.
type catalogWatch struct {
	wake chan struct{} // signalled when the item changes
}

func (w *catalogWatch) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// NewCatalog connects a config client to the servers in cfg for the
// rule documents in group (DefaultCatalogGroup when empty) of cfg's
// namespace. It fails when cfg is invalid; an unreachable server only
// makes Watch fail, so the meshes retry.
func NewCatalog(cfg Config, group string) (*Catalog, error) {
	if group == "" {
		group = DefaultCatalogGroup
	}
	return newCatalog(cfg, group)
}

// healthItem returns the item a catalog's health check reads: one nobody
// writes, in the catalog's namespace and group, named for this catalog
// alone.
//
//   - Nobody writes it: reading a document instead made its edits wait.
//     Nacos skips updating an item whose lock a read holds at that moment
//     (its log: "[dump-error] write lock failed") and tries again about a
//     second later, merged with any later edit, so with an edit a second
//     one edit of a document read every second was never served at all
//     (TestPushesWithManySDKClients). A read of an item that does not
//     exist takes no lock.
//   - For this catalog alone: the SDK allows about 5 reads a second of one
//     item per process, so catalogs sharing one item refused each other's
//     health reads (and logged errors) once a process had more than five.
//   - A server that refuses it (403: the user may read its documents
//     only) has answered, which is all the check asks (see healthRead).
func healthItem() string {
	var b [8]byte
	rand.Read(b[:])
	return healthItemPrefix + hex.EncodeToString(b[:])
}

// healthItemPrefix begins the name of every health item.
const healthItemPrefix = "_lightmesh_health."

// newCatalog is NewCatalog without the default group.
func newCatalog(cfg Config, group string) (*Catalog, error) {
	param, dir, err := cfg.clientParam()
	if err != nil {
		return nil, err
	}
	client, err := newConfigClient(cfg, param)
	if err != nil {
		removeDir(dir)
		return nil, fmt.Errorf("nacos: config client for %s: %w", cfg, err)
	}
	ns := param.ClientConfig.NamespaceId
	if ns == "" {
		ns = "public"
	}
	c := &Catalog{
		client:    client,
		namespace: param.ClientConfig.NamespaceId,
		group:     group,
		health:    healthItem(),
		prefix:    "nacos:" + ns + "/" + group + "/",
		logger:    cfg.logger(),
		diag:      newDiagnosis(cfg),
		dir:       dir,
		done:      make(chan struct{}),
		items:     make(map[string]*catalogItem),
		outage:    &catalogOutage{ch: make(chan struct{})},
	}
	return c, nil
}

// pushed is told of every config-change push the server sends to the
// catalog's connection (see hearPushes); one for an item of the catalog
// has it read.
func (c *Catalog) pushed(dataID, group, tenant string) {
	if group != c.group || tenant != c.namespace {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if it := c.items[dataID]; it != nil && !c.closed {
		it.pushes++
		it.lastPush = time.Now()
		c.refresh(it, true)
	}
}

// String implements rules.Catalog: "nacos:<namespace>/<group>/".
func (c *Catalog) String() string { return c.prefix }

// Describe implements rules.Catalog: "nacos:<namespace>/<group>/<name>".
func (c *Catalog) Describe(name string) string { return c.prefix + name }

// Watch implements rules.Catalog. It delivers the config item dataId
// name with the MD5 of its content as the version, or the nil Document
// when the item does not exist or is empty, then every change, a
// deletion as the nil Document again. A Watch joining a name that is
// already watched gets the content known at once, without a read. It
// returns ctx.Err() when ctx ends, and an error when the first read
// fails, when the health check fails (see Catalog) or when the catalog
// is closed. A name Nacos cannot take as a dataId (anything but letters,
// digits and - _ . :) is an error.
func (c *Catalog) Watch(ctx context.Context, name string, update func(rules.Document)) error {
	if !validDataID(name) {
		return fmt.Errorf("nacos: %q cannot be a dataId (letters, digits and - _ . : only)", name)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &catalogWatch{wake: make(chan struct{}, 1)}
	it, outage, err := c.join(name, w)
	if err != nil {
		return err
	}
	defer c.leave(it, w)
	var (
		sent bool   // something was delivered
		last string // the version delivered last, "" for the nil Document
	)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
			return errClosed
		case <-outage.ch:
			return outage.err
		case <-w.wake:
		}
		c.mu.Lock()
		known, content, version, ierr := it.known, it.content, it.version, it.err
		c.mu.Unlock()
		switch {
		case ierr != nil:
			return fmt.Errorf("nacos: read %s: %w", c.Describe(name), c.diag.explain(ctx, ierr))
		case !known || (sent && version == last):
			continue
		}
		sent, last = true, version
		if content == "" {
			update(rules.Document{})
		} else {
			update(rules.Document{Data: []byte(content), Version: version})
		}
	}
}

// join adds w to the watchers of name, making the item and starting its
// first read when it is not watched yet, and returns the item and the
// outage that ends the Watch.
func (c *Catalog) join(name string, w *catalogWatch) (*catalogItem, *catalogOutage, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, errClosed
	}
	it := c.items[name]
	if it == nil {
		it = &catalogItem{dataID: name, watchers: make(map[*catalogWatch]struct{})}
		c.items[name] = it
		c.refresh(it, false)
	} else if it.known {
		w.signal() // the content known is current but for pushes in flight
	}
	it.watchers[w] = struct{}{}
	c.watches++
	if !c.maintaining {
		c.maintaining = true
		c.wg.Add(1)
		go c.maintain()
	}
	return it, c.outage, nil
}

// leave removes w from its item's watchers; the last one to leave
// cancels the SDK listener.
func (c *Catalog) leave(it *catalogItem, w *catalogWatch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(it.watchers, w)
	c.watches--
	if len(it.watchers) > 0 || c.items[it.dataID] != it {
		return
	}
	delete(c.items, it.dataID)
	if it.listening && !c.closed {
		// Under c.mu, so it cannot undo a ListenConfig made for a new
		// Watch of the same dataId.
		c.client.sdk.CancelListenConfig(vo.ConfigParam{DataId: it.dataID, Group: c.group})
	}
}

// refresh makes sure a read of it starts after now: it starts one, or,
// when one is in flight and push is set, has another follow it, since
// the one in flight may have begun before the change that was pushed.
// It is called with c.mu held.
func (c *Catalog) refresh(it *catalogItem, push bool) {
	if c.closed {
		return
	}
	if it.reading {
		it.again = it.again || push
		return
	}
	it.reading = true
	c.wg.Add(1)
	go c.read(it)
}

// read reads it until a read succeeds and none is wanted after it, and
// tells the watchers when the content changed. Reads of one item are
// one at a time, each begun after the previous ended, so each result is
// at least as new as the one before and the latest content wins: the
// contents the SDK hands to listeners are not used, since it calls them
// on goroutines of their own and two quick changes may arrive out of
// order.
func (c *Catalog) read(it *catalogItem) {
	defer c.wg.Done()
	failures := 0 // reads failed in a row that asked the server
	streak := 0   // reads failed in a row, those the SDK refused included
	for {
		c.mu.Lock()
		it.again = false
		c.mu.Unlock()
		content, err := c.get(it.dataID)

		c.mu.Lock()
		if c.closed || c.items[it.dataID] != it {
			it.reading = false
			c.mu.Unlock()
			return
		}
		if err != nil {
			// The SDK's own limit on reads of one item (about 5 a second
			// per process) did not ask the server: no failure.
			if !isReadLimited(err) {
				failures++
			}
			if !it.known && failures >= maxReadFailures {
				// The first read failed: the watches return the error,
				// and the next Watch makes a new item.
				it.err, it.reading = err, false
				delete(c.items, it.dataID)
				c.wakeAll(it)
				c.mu.Unlock()
				return
			}
			known := it.known
			c.mu.Unlock()
			// One failure is routine (a reconnect, the SDK's read limit);
			// a streak means the document, or its changes, are not being
			// applied, which an operator must hear of. A first read the
			// SDK's limit refuses is retried without end, so it is told
			// too.
			streak++
			level := slog.LevelDebug
			if streak == stuckReads {
				level = slog.LevelWarn
			}
			msg := "lightmesh: nacos rule document read failed; retrying"
			if known {
				msg = "lightmesh: nacos rule document read failed; its last good rules keep serving; retrying"
			}
			c.logger.Log(context.Background(), level, msg, "document", c.Describe(it.dataID), "failures_in_a_row", streak, "error", err)
			select {
			case <-c.done:
				c.mu.Lock()
				it.reading = false
				c.mu.Unlock()
				return
			case <-time.After(readRetryDelay):
			}
			continue
		}
		if streak >= stuckReads {
			c.logger.Info("lightmesh: nacos rule document read again", "document", c.Describe(it.dataID), "failures_in_a_row", streak)
		}
		failures, streak = 0, 0
		it.lastRead = time.Now()
		c.apply(it, content)
		if !it.listening {
			// After the first read: the SDK starts the listener from the
			// MD5 of what that read cached, so a change made since is
			// still pushed. Every listener is c.onChange, so the one the
			// SDK keeps per dataId is right whichever Watch registered it.
			if err := c.client.sdk.ListenConfig(vo.ConfigParam{DataId: it.dataID, Group: c.group, OnChange: c.onChange}); err != nil {
				it.err, it.reading = fmt.Errorf("listen: %w", err), false
				delete(c.items, it.dataID)
				c.wakeAll(it)
				c.mu.Unlock()
				return
			}
			it.listening = true
		}
		if !it.again {
			it.reading = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
	}
}

// apply records content as the item's and wakes the watchers when it
// changed.
// It is called with c.mu held.
func (c *Catalog) apply(it *catalogItem, content string) {
	version := ""
	if content != "" {
		sum := md5.Sum([]byte(content))
		version = hex.EncodeToString(sum[:])
	}
	if it.known && version == it.version {
		return
	}
	switch {
	case content == "" && !it.known:
		// Most services of a fleet have no document of their own: the
		// defaults apply, and the mesh's status shows it.
		c.logger.Debug("lightmesh: nacos rule document does not exist; waiting for it", "document", c.Describe(it.dataID))
	case content == "":
		c.logger.Warn("lightmesh: nacos rule document deleted or emptied", "document", c.Describe(it.dataID))
	}
	it.known, it.content, it.version = true, content, version
	c.wakeAll(it)
}

func (c *Catalog) wakeAll(it *catalogItem) {
	for w := range it.watchers {
		w.signal()
	}
}

// onChange is the SDK listener of every item. The SDK calls it on a
// goroutine of its own, possibly after the item's last Watch left, and
// the content it carries may be older than another call's, so it only
// has the item read. A call for a dataId no Watch wants (the SDK may
// restore a cancelled listener when a listen round overlaps the
// cancellation) cancels the listener again.
func (c *Catalog) onChange(namespace, group, dataID, data string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || group != c.group {
		return
	}
	if it := c.items[dataID]; it != nil {
		c.refresh(it, true)
		return
	}
	c.client.sdk.CancelListenConfig(vo.ConfigParam{DataId: dataID, Group: c.group})
}

// maintain runs the health check and the periodic re-reads while the
// catalog has watches. It is started by join and returns when there are
// none left or the catalog is closed.
func (c *Catalog) maintain() {
	defer c.wg.Done()
	check := time.NewTicker(healthInterval)
	defer check.Stop()
	resync := time.NewTimer(minResyncStep)
	defer resync.Stop()
	// ctx ends with the catalog: explaining a failure waits for a check
	// no longer than that.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var (
		reading  <-chan error     // the health read in flight, nil when none
		deadline <-chan time.Time // when it has failed
		failures int              // health reads failed in a row
	)
	failed := func(err error) {
		if failures++; failures < maxReadFailures {
			return
		}
		failures = 0
		c.fail(fmt.Errorf("nacos: health check: read %s: %w", c.Describe(c.health), c.diag.explain(ctx, err)))
	}
	for {
		select {
		case <-c.done:
			return
		case <-check.C:
			if !c.active() {
				return
			}
			if reading == nil {
				reading, deadline = c.healthRead(), time.After(healthTimeout)
			}
		case err := <-reading:
			reading, deadline = nil, nil
			switch {
			case err == nil:
				failures = 0
			case !isReadLimited(err):
				failed(err)
			}
		case <-deadline:
			// Given up on; the SDK ends it within Config.TimeoutMs.
			reading, deadline = nil, nil
			failed(fmt.Errorf("no answer within %v", healthTimeout))
		case <-resync.C:
			resync.Reset(c.resyncOne())
		}
	}
}

// active reports whether the catalog has watches, and otherwise marks
// the maintain loop stopped so that the next join starts another.
func (c *Catalog) active() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.watches == 0 || c.closed {
		c.maintaining = false
		return false
	}
	return true
}

// healthRead reads the health item on a goroutine of its own (a refusal
// for lack of permission is an answer, so a success here), since
// the SDK's read cannot be cancelled, and sends the outcome on the
// returned channel.
func (c *Catalog) healthRead() <-chan error {
	ch := make(chan error, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_, err := c.get(c.health)
		if isRefused(err) {
			err = nil // an answer: the user may not read the item, as it need not
		}
		ch <- err
	}()
	return ch
}

// fail ends every Watch begun so far with err. It forgets every item
// and cancels their listeners, so that the next Watch of each reads its
// item again rather than joining content that may have changed during
// the outage.
func (c *Catalog) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.logger.Warn("lightmesh: nacos catalog health check failed; its watches end and retry", "catalog", c.prefix, "error", err)
	c.outage.err = err
	close(c.outage.ch)
	c.outage = &catalogOutage{ch: make(chan struct{})}
	for id, it := range c.items {
		if it.listening {
			c.client.sdk.CancelListenConfig(vo.ConfigParam{DataId: id, Group: c.group})
		}
	}
	clear(c.items)
}

// resyncOne re-reads the listened item read longest ago, when that was
// at least resyncInterval ago, and returns how long to wait before the
// next: resyncInterval spread over the items.
func (c *Catalog) resyncOne() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var oldest *catalogItem
	for _, it := range c.items {
		if it.known && !it.reading && (oldest == nil || it.lastRead.Before(oldest.lastRead)) {
			oldest = it
		}
	}
	if oldest != nil && time.Since(oldest.lastRead) >= resyncInterval {
		c.refresh(oldest, false)
	}
	step := resyncInterval
	if n := len(c.items); n > 0 {
		step /= time.Duration(n)
	}
	return max(step, minResyncStep)
}

// Close ends every Watch with an error, closes the SDK client and
// removes its private directory. It waits for a read in flight, which
// the SDK ends within Config.TimeoutMs. Watch fails after Close. Close
// is safe to call more than once.
func (c *Catalog) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.done)
	c.mu.Unlock()
	// After the read in flight, if any (it would race with the closing),
	// and before any other: get does not read once c.done is closed.
	c.readMu.Lock()
	c.client.close()
	c.readMu.Unlock()
	c.wg.Wait() // so that no read writes a cache file after removeDir
	removeDir(c.dir)
	return nil
}

// get reads the config item dataID; the first that succeeds also has
// the catalog hear the server's pushes (hearPushes). The catalog's reads run one at a
// time: the SDK reads and writes its connection and its state without
// synchronization when it connects (on the first request), and when a
// request finds it not connected, so concurrent requests would race. A
// read takes milliseconds, so one at a time keeps up with hundreds of
// items; one that hangs holds up the others, and the health check then
// reports the outage it is.
func (c *Catalog) get(dataID string) (string, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	select {
	case <-c.done:
		return "", errClosed
	default:
	}
	content, err := c.client.get(dataID, c.group)
	if err == nil && !c.hearing {
		// The connection exists now that a request went through it.
		c.hearing = true
		if herr := c.client.hearPushes(c.pushed); herr != nil {
			c.logger.Warn("lightmesh: nacos catalog cannot answer the server's pushes itself; it relies on the SDK's listener and its re-reads every 30 s", "catalog", c.prefix, "error", herr)
		}
	}
	return content, err
}

// isReadLimited reports whether err is the SDK refusing a read because
// the process read the item too often (about 5 times a second), without
// asking the server.
func isReadLimited(err error) bool {
	return err != nil && strings.Contains(err.Error(), "ConfigQueryRequest is limited")
}

// validDataID reports whether s is a dataId Nacos accepts: letters,
// digits, '-', '_', '.' and ':'.
func validDataID(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', strings.ContainsRune("-_.:", r):
		default:
			return false
		}
	}
	return true
}
