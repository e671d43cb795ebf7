package nacos

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/config_client"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/lightmesh/lightmesh/rules"
)

// DefaultGroup is the Nacos group used when none is given.
const DefaultGroup = "DEFAULT_GROUP"

// healthInterval is how often a watch checks that the server still
// answers, and healthTimeout how long one check may take. The SDK
// reconnects by itself and tells its listeners nothing, so without the
// checks a watch through an outage would look connected.
const (
	healthInterval = time.Second
	healthTimeout  = 3 * time.Second
)

// errClosed is returned by Watch after Close.
var errClosed = errors.New("nacos: closed")

// RuleSource is a rules.Source reading a rule document from one Nacos
// config item. Use NewRuleSource; call Close when done, after the mesh
// using it is closed.
//
// Watch may be called again after it returns, but not by two callers at
// once: the SDK keeps one listener per config item and client. An empty
// or missing config item delivers no document, and a deleted one is
// logged and otherwise ignored: the last rules keep serving.
type RuleSource struct {
	client config_client.IConfigClient
	dataID string
	group  string
	name   string
	logger *slog.Logger
	dir    string // private log and cache directory, removed by Close

	readMu   sync.Mutex // held by each read and by Close: see read
	mu       sync.Mutex
	watching bool
	closed   bool
}

var _ rules.Source = (*RuleSource)(nil)

// NewRuleSource connects a config client to the servers in cfg for the
// item dataID in group (DefaultGroup when empty). It fails when cfg is
// invalid; an unreachable server only makes Watch fail, so the mesh
// retries.
func NewRuleSource(cfg Config, dataID, group string) (*RuleSource, error) {
	if dataID == "" {
		return nil, errors.New("nacos: rule source needs a dataId")
	}
	if group == "" {
		group = DefaultGroup
	}
	param, dir, err := cfg.clientParam()
	if err != nil {
		return nil, err
	}
	client, err := clients.NewConfigClient(param)
	installLogger(cfg)
	if err != nil {
		removeDir(dir)
		return nil, fmt.Errorf("nacos: config client for %s: %w", cfg, err)
	}
	ns := param.ClientConfig.NamespaceId
	if ns == "" {
		ns = "public"
	}
	return &RuleSource{
		client: client,
		dataID: dataID,
		group:  group,
		name:   "nacos:" + ns + "/" + group + "/" + dataID,
		logger: cfg.logger(),
		dir:    dir,
	}, nil
}

// String implements rules.Source: "nacos:<namespace>/<group>/<dataId>".
func (s *RuleSource) String() string { return s.name }

// Watch implements rules.Source. It reads the config item, delivers it
// with the MD5 of its content as the version, and then delivers every
// change the server pushes until ctx ends. Every second it reads the
// item again: a change the push missed is delivered, and two reads in a
// row that fail, or one that takes over 3 s, end the watch with the
// error, so the mesh reports the outage and retries with backoff (the
// SDK's own reconnects are invisible otherwise). An item that does not
// exist delivers the nil Document: the server answered, with nothing.
// It returns ctx.Err() when ctx ends.
func (s *RuleSource) Watch(ctx context.Context, update func(rules.Document)) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	// The first read, like the later ones, does not hold up a mesh being
	// closed: the SDK's read cannot be cancelled.
	var content string
	select {
	case r := <-s.read():
		if r.err != nil {
			return fmt.Errorf("nacos: read %s: %w", s.name, r.err)
		}
		content = r.content
	case <-ctx.Done():
		return ctx.Err()
	}
	w := &ruleWatch{src: s, update: update, changed: make(chan struct{}, 1)}
	w.deliver(content)
	param := vo.ConfigParam{DataId: s.dataID, Group: s.group, OnChange: w.onChange}
	if err := s.client.ListenConfig(param); err != nil {
		return fmt.Errorf("nacos: listen to %s: %w", s.name, err)
	}
	defer s.client.CancelListenConfig(param)

	// The read every second is the health check and also confirms the
	// pushes: the SDK calls listeners on goroutines of their own, so two
	// quick changes can arrive out of order, and the next read makes the
	// latest content win. One read at a time is in flight; a push that
	// arrives meanwhile makes its content possibly older than the push's,
	// so it is not delivered and another read follows at once.
	check := time.NewTicker(healthInterval)
	defer check.Stop()
	var (
		reading  <-chan readResult // the read in flight, nil when none
		deadline <-chan time.Time  // when the read in flight has failed
		pushes   int               // change notifications so far
		readFrom int               // pushes when the read in flight began
		failures int               // reads failed in a row
	)
	startRead := func() {
		reading, deadline, readFrom = s.read(), time.After(healthTimeout), pushes
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.changed:
			pushes++
			w.deliver(w.take())
		case <-check.C:
			if reading == nil {
				startRead()
			}
		case r := <-reading:
			reading, deadline = nil, nil
			if r.err != nil {
				// The server answers a read that races a publish with an
				// error; a second failure in a row is an outage.
				if failures++; failures >= maxReadFailures {
					return fmt.Errorf("nacos: health check: read %s: %w", s.name, r.err)
				}
				continue
			}
			failures = 0
			if readFrom == pushes {
				w.deliver(r.content)
			} else {
				startRead()
			}
		case <-deadline:
			return fmt.Errorf("nacos: health check: read %s: no answer within %v", s.name, healthTimeout)
		}
	}
}

// maxReadFailures is how many reads in a row must fail for Watch to end.
const maxReadFailures = 2

// readResult is the outcome of one read of the config item.
type readResult struct {
	content string
	err     error
}

// read reads the config item on a goroutine of its own, since the SDK's
// read cannot be cancelled (it gives up after Config.TimeoutMs), and
// sends the result on the returned channel.
//
// Close waits for the read in flight (the SDK races with itself when
// the client is closed during a request), and no read starts after it.
func (s *RuleSource) read() <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		s.readMu.Lock()
		defer s.readMu.Unlock()
		if s.isClosed() {
			ch <- readResult{err: errClosed}
			return
		}
		content, err := s.client.GetConfig(vo.ConfigParam{DataId: s.dataID, Group: s.group})
		ch <- readResult{content, err}
	}()
	return ch
}

func (s *RuleSource) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *RuleSource) begin() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if s.watching {
		return fmt.Errorf("nacos: %s is already being watched", s.name)
	}
	s.watching = true
	return nil
}

func (s *RuleSource) end() {
	s.mu.Lock()
	s.watching = false
	s.mu.Unlock()
}

// Close closes the SDK client and removes its private directory. Watch
// fails after Close. Close is safe to call more than once.
func (s *RuleSource) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.readMu.Lock() // after the read in flight, if any
	s.client.CloseClient()
	s.readMu.Unlock()
	removeDir(s.dir)
	return nil
}

// ruleWatch is the state of one Watch call.
type ruleWatch struct {
	src     *RuleSource
	update  func(rules.Document)
	changed chan struct{} // signalled by onChange
	last    string        // MD5 of the last content delivered
	// warnedEmpty is set once the item's absence was logged.
	warnedEmpty bool

	mu      sync.Mutex
	pending string
}

// onChange is the SDK's listener; it runs on an SDK goroutine and may
// outlive the Watch call, so it only records and signals.
func (w *ruleWatch) onChange(namespace, group, dataID, data string) {
	w.mu.Lock()
	w.pending = data
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *ruleWatch) take() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending
}

// deliver hands content to update unless it is unchanged. Empty content
// (no such item) delivers the nil Document that tells the mesh the server
// answered, and is logged once until content comes back.
func (w *ruleWatch) deliver(content string) {
	if content == "" {
		if !w.warnedEmpty {
			if w.last == "" {
				w.src.logger.Warn("lightmesh: nacos rule config does not exist or is empty; waiting for it", "source", w.src.name)
			} else {
				w.src.logger.Warn("lightmesh: nacos rule config deleted or emptied; last rules keep serving", "source", w.src.name)
			}
			w.warnedEmpty = true
		}
		w.update(rules.Document{})
		return
	}
	w.warnedEmpty = false
	sum := md5.Sum([]byte(content))
	version := hex.EncodeToString(sum[:])
	if version == w.last {
		return
	}
	w.last = version
	w.update(rules.Document{Data: []byte(content), Version: version})
}

// removeDir removes a private directory made by clientParam.
func removeDir(dir string) {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// Publish writes content to the config item dataID in group
// (DefaultGroup when empty), as an ops engineer would in the Nacos
// console. It connects a client for this one call and closes it, so it
// suits tools and examples, not loops.
func Publish(cfg Config, dataID, group, content string) error {
	return PublishIfMD5(cfg, dataID, group, content, "")
}

// PublishIfMD5 is Publish done only while the item's content has the MD5
// casMD5 (hex, as Nacos reports it; the MD5 of what Fetch read): Nacos
// compares and writes in one step, so an edit published since the read is
// never overwritten. The error does not say whether the content changed;
// Fetch again to tell. An empty casMD5 writes unconditionally.
func PublishIfMD5(cfg Config, dataID, group, content, casMD5 string) error {
	if dataID == "" || content == "" {
		return errors.New("nacos: publish needs a dataId and content")
	}
	group = groupOrDefault(group)
	return withConfigClient(cfg, func(client config_client.IConfigClient) error {
		ok, err := client.PublishConfig(vo.ConfigParam{DataId: dataID, Group: group, Content: content, CasMd5: casMD5})
		if err == nil && !ok {
			err = errors.New("server refused")
		}
		if err != nil {
			return fmt.Errorf("nacos: publish %s/%s: %w", group, dataID, err)
		}
		return nil
	})
}

// Fetch reads the content of the config item dataID in group
// (DefaultGroup when empty); "" with a nil error when the item does not
// exist. Like Publish, it connects a client for this one call.
func Fetch(cfg Config, dataID, group string) (string, error) {
	if dataID == "" {
		return "", errors.New("nacos: fetch needs a dataId")
	}
	group = groupOrDefault(group)
	var content string
	err := withConfigClient(cfg, func(client config_client.IConfigClient) error {
		var err error
		if content, err = client.GetConfig(vo.ConfigParam{DataId: dataID, Group: group}); err != nil {
			return fmt.Errorf("nacos: fetch %s/%s: %w", group, dataID, err)
		}
		return nil
	})
	return content, err
}

func groupOrDefault(group string) string {
	if group == "" {
		return DefaultGroup
	}
	return group
}

// withConfigClient runs fn with a config client of cfg made for the call.
func withConfigClient(cfg Config, fn func(config_client.IConfigClient) error) error {
	param, dir, err := cfg.clientParam()
	if err != nil {
		return err
	}
	defer removeDir(dir)
	client, err := clients.NewConfigClient(param)
	installLogger(cfg)
	if err != nil {
		return fmt.Errorf("nacos: config client for %s: %w", cfg, err)
	}
	defer client.CloseClient()
	return fn(client)
}
