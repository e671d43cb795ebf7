package etcd

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults for the limits on what Discovery accepts from etcd.
const (
	// DefaultMaxValueSize caps one instance value; a larger value is
	// skipped and reported.
	DefaultMaxValueSize = 16 << 10
	// DefaultMaxInstances caps the instances of one service; keys beyond
	// it are ignored and reported.
	DefaultMaxInstances = 100_000
	// DefaultRequestTimeout bounds every read a watch makes and each
	// health check.
	DefaultRequestTimeout = 3 * time.Second
	// DefaultHealthInterval is how often a source checks, while it is
	// watched, that etcd still answers.
	DefaultHealthInterval = time.Second
)

// Option configures a RuleSource, a Catalog, a Discovery or a
// Registration. Options that do not concern the value being built are
// ignored; nil options are ignored.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	logger       *slog.Logger
	maxValueSize int
	maxInstances int

	requestTimeout time.Duration
	healthInterval time.Duration // 0: no health check
}

func newConfig(opts []Option) config {
	c := config{
		logger:       slog.Default(),
		maxValueSize: DefaultMaxValueSize,
		maxInstances: DefaultMaxInstances,

		requestTimeout: DefaultRequestTimeout,
		healthInterval: DefaultHealthInterval,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithLogger sets the logger for skipped instance values and instance
// limits reached (NewDiscovery), missing and deleted rule keys
// (NewRuleSource, NewCatalog) and lost leases (Register). The default is
// slog.Default(), as the mesh's: a lost registration or a skipped
// instance is never silent.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithMaxValueSize sets the largest instance value Discovery decodes, in
// bytes (DefaultMaxValueSize when n <= 0).
func WithMaxValueSize(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxValueSize = n
		}
	})
}

// WithMaxInstances sets how many instances of one service Discovery keeps
// (DefaultMaxInstances when n <= 0).
func WithMaxInstances(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxInstances = n
		}
	})
}

// WithRequestTimeout bounds every read a watch makes (the first read and
// each re-read) and each health check (DefaultRequestTimeout when d <= 0);
// NewRuleSource, NewCatalog and NewDiscovery read it. A read that takes
// longer fails the watch, so the mesh reports the outage and retries,
// rather than waiting on a server that does not answer.
func WithRequestTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.requestTimeout = d
		}
	})
}

// WithHealthInterval sets how often a watched RuleSource, Catalog or
// Discovery reads from etcd to check that it still answers
// (DefaultHealthInterval; a negative d turns the check off);
// NewRuleSource, NewCatalog and NewDiscovery read it. The etcd client
// resumes watches silently after a reconnect, so without the check a
// watch on a server that died, or a connection cut without a reset, just
// waits: the mesh keeps serving the last rules and instances either way,
// but only the check lets its status say so within seconds. A failed
// check ends every watch of its source or catalog with the check's error.
// Each source or catalog makes one count-only read per interval, however
// many services it watches; a check waits at most 2 s (or
// WithRequestTimeout's, when shorter), so with the default interval an
// outage shows within about 3 s.
func WithHealthInterval(d time.Duration) Option {
	return optionFunc(func(c *config) {
		switch {
		case d < 0:
			c.healthInterval = 0
		case d > 0:
			c.healthInterval = d
		}
	})
}

// checkName reports whether name can be one segment of a key: not empty,
// no '/', no control characters, at most 253 bytes.
func checkName(what, name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("etcd: %s name %.40q: want 1..253 bytes", what, name)
	}
	if strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("etcd: %s name %.40q: must not contain '/' or control characters", what, name)
	}
	return nil
}

// cleanPrefix drops trailing slashes from a key prefix.
func cleanPrefix(prefix string) string { return strings.TrimRight(prefix, "/") }
