package mesh

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/lightmesh/lightmesh/discovery"
	"github.com/lightmesh/lightmesh/identity"
	"github.com/lightmesh/lightmesh/internal/backoff"
	"github.com/lightmesh/lightmesh/rules"
	"github.com/lightmesh/lightmesh/trace"
)

// Option configures a Mesh. Options are applied in order over the
// defaults; nil arguments are ignored.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	rules        rules.Source
	catalog      rules.Catalog
	discovery    discovery.Source
	services     []string
	meshServices []string // path.Match patterns of hosts that are mesh services
	strict       bool     // unknown mesh services fail instead of leaving the mesh
	local        string
	logger       *slog.Logger
	startTimeout time.Duration
	startEmpty   bool
	backoff      backoff.Policy
	traceOptions []trace.Option
	onRules      func(RulesEvent)
	registerer   prometheus.Registerer
	snapshotDir  string
	// refusalWriter answers requests the mesh refuses (WithRefusalWriter).
	refusalWriter func(http.ResponseWriter, *http.Request, Refusal)
	// snapshotDelay is how long the snapshot writer gathers changes
	// before it writes them.
	snapshotDelay time.Duration
	// identity is the workload's SVID source (WithIdentity); nil: none.
	identity identity.Source
	// err is the first option that cannot be honoured; New fails with
	// it, closing every source it was given.
	err   error
	given []any // every rule and discovery source given, to close on err
}

func defaultConfig() config {
	return config{
		logger:        slog.Default(),
		startTimeout:  10 * time.Second,
		backoff:       backoff.Policy{Base: 100 * time.Millisecond, Max: 10 * time.Second},
		snapshotDelay: 100 * time.Millisecond,
	}
}

// WithRules sets where rule documents come from. Without it the mesh runs
// with no rules: every discovered service is balanced over all its
// instances. The document lives as every document of WithRuleCatalog
// does (DocumentStatus states; Status().Rules.State): a rejected version
// leaves the last good one serving, and a document deleted or emptied at
// the source is deleted, its last good rules serving on. The mesh owns src: Close closes it when it has a Close
// method. A mesh reads one rule source: given a second one, New fails
// rather than silently drop either.
func WithRules(src rules.Source) Option {
	return optionFunc(func(c *config) {
		if src == nil {
			return
		}
		c.given = append(c.given, src)
		switch {
		case c.rules != nil:
			c.fail(fmt.Errorf("mesh: WithRules given twice (%s, then %s): a mesh reads one rule source", redact(c.rules.String()), redact(src.String())))
		case c.catalog != nil:
			c.fail(bothRuleSources(c.catalog, src))
		default:
			c.rules = src
		}
	})
}

// WithRuleCatalog reads rules in the per-service layout: one document per
// service, owned by that service's team, plus an optional defaults
// document (rules.DefaultsName) whose settings every service without its
// own takes. The mesh watches the defaults, the document of its own
// service (WithLocalService, for inbound rules) and those of the services
// it calls: named by WithServices, dialled through meshgrpc, or found on
// first use (WithMeshServices).
//
// Each document is validated on its own (router.LoadPart: the document of
// user-api describes user-api only) and applied on its own: a rejected
// document leaves its service on its last good rules while the others'
// updates apply; requests always see one consistent rule set. A deleted
// document keeps its last good rules serving; a service whose document
// does not exist runs on the defaults. New waits, up to the start
// timeout (or ctx's deadline, when it comes first), until the catalog
// has answered for each document it watches
// from the start (found, missing or rejected alike), then restores those
// it has not from WithSnapshotDir, and fails (unless WithStartEmpty)
// when any is left.
//
// The catalog is not owned by the mesh, since several meshes may share
// it (and its one control-plane connection): Close does not close it. A
// mesh reads either a catalog or one rule document (WithRules), not both.
func WithRuleCatalog(cat rules.Catalog) Option {
	return optionFunc(func(c *config) {
		if cat == nil {
			return
		}
		switch {
		case c.catalog != nil:
			c.fail(fmt.Errorf("mesh: WithRuleCatalog given twice (%s, then %s): a mesh reads one rule catalog", redact(c.catalog.String()), redact(cat.String())))
		case c.rules != nil:
			c.fail(bothRuleSources(cat, c.rules))
		default:
			c.catalog = cat
		}
	})
}

func bothRuleSources(cat rules.Catalog, src rules.Source) error {
	return fmt.Errorf("mesh: both WithRuleCatalog (%s) and WithRules (%s) given: a mesh reads its rules from one of them", redact(cat.String()), redact(src.String()))
}

// WithDiscovery sets where instances come from. The mesh watches every
// service the rules name plus those given to WithServices. The mesh owns
// src: Close closes it when it has a Close method. A mesh reads one
// discovery source: given a second one, New fails rather than silently
// drop either.
func WithDiscovery(src discovery.Source) Option {
	return optionFunc(func(c *config) {
		if src == nil {
			return
		}
		c.given = append(c.given, src)
		if c.discovery != nil {
			c.fail(fmt.Errorf("mesh: WithDiscovery given twice (%T, then %T): a mesh reads one discovery source", c.discovery, src))
			return
		}
		c.discovery = src
	})
}

// closeGiven closes every source given to WithRules and WithDiscovery
// that has a Close method (the mesh owns them), on Close or when New
// fails, and returns the first error.
func (c *config) closeGiven() error {
	var first error
	for _, src := range c.given {
		if cl, ok := src.(io.Closer); ok {
			if err := cl.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// fail records err unless an earlier option failed.
func (c *config) fail(err error) {
	if c.err == nil {
		c.err = err
	}
}

// WithServices names services to discover even when no rule mentions them.
// They are mesh services from New on: a call to one before discovery has
// reported it fails with router.ErrNoInstance, and never leaves the mesh.
func WithServices(names ...string) Option {
	return optionFunc(func(c *config) { c.services = append(c.services, names...) })
}

// WithMeshServices names, by path.Match patterns ("*-api",
// "*.svc.cluster.local"), the hosts that are mesh services although no rule
// and no WithServices names them. The first call to such a host asks
// discovery for it and waits up to 2 s (engine's FirstUseWait, as gRPC
// does) for an instance: if one comes, the call and every later one are
// routed by the mesh over all its instances, round-robin, with no rules;
// if none comes, the call leaves the mesh for DNS as any other host does,
// and so do the calls to that host for the next 30 s, without waiting
// again (see WithStrictServices). With WithRuleCatalog the first call
// also waits, up to 2 s more, for the catalog to answer for the host's
// document, so that its own rules apply from the first call. Neither wait
// outlasts the call's own context. Hosts
// matching no pattern are never looked up. An invalid pattern makes New
// fail.
func WithMeshServices(patterns ...string) Option {
	return optionFunc(func(c *config) {
		for _, p := range patterns {
			if _, err := path.Match(p, ""); err != nil {
				c.fail(fmt.Errorf("mesh: WithMeshServices(%q): %w", p, err))
				return
			}
		}
		c.meshServices = append(c.meshServices, patterns...)
	})
}

// WithStrictServices makes a call to a host that WithMeshServices names
// but discovery does not know (no instance within the first-use wait)
// fail with an error wrapping router.ErrUnknownService, instead of
// leaving the mesh: a typo in a service name then fails where it is made
// rather than resolving somewhere on the internet.
func WithStrictServices() Option {
	return optionFunc(func(c *config) { c.strict = true })
}

// named reports whether WithServices names service.
func (c *config) named(service string) bool {
	for _, s := range c.services {
		if s == service {
			return true
		}
	}
	return false
}

// meshService reports whether host matches a WithMeshServices pattern.
func (c *config) meshService(host string) bool {
	for _, p := range c.meshServices {
		if ok, _ := path.Match(p, host); ok {
			return true
		}
	}
	return false
}

// WithLocalService names the service this process is. The Handler applies
// the inbound rules of that service in the rule document, and its lane
// entry rules (lanes.entry).
func WithLocalService(name string) Option {
	return optionFunc(func(c *config) { c.local = name })
}

// WithLogger sets the logger for rule updates, rejections and watcher
// trouble. Without it (or given nil) the mesh logs through slog.Default()
// as it is when New is called: rejections with every problem,
// control-plane outages and first-use misses are never silent.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithStartTimeout bounds how long New waits for the first valid rule
// document (default 10s).
func WithStartTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.startTimeout = d
		}
	})
}

// WithStartEmpty lets New return without rules when the rule source has
// not delivered a valid document in time; the mesh applies the rules when
// they arrive. Without it New fails.
func WithStartEmpty() Option {
	return optionFunc(func(c *config) { c.startEmpty = true })
}

// WithReconnectBackoff sets the backoff between a failed watch and the
// next attempt (defaults: 100ms doubling to 10s, ±20% jitter).
func WithReconnectBackoff(base, max time.Duration) Option {
	return optionFunc(func(c *config) { c.backoff.Base, c.backoff.Max = base, max })
}

// WithTrace passes options to the mesh's trace.Propagator: lane keys,
// span mode, tracer provider and propagator.
func WithTrace(opts ...trace.Option) Option {
	return optionFunc(func(c *config) { c.traceOptions = append(c.traceOptions, opts...) })
}

// WithOnRulesChange registers fn to be called after each rule document is
// applied or rejected, in order, from a goroutine of the mesh's own — never
// from the request path or the manager, so a slow fn delays only later
// events. While fn is busy, up to 1,024 events wait; beyond that the oldest
// are dropped (and the drop logged). fn must return for Close to return.
func WithOnRulesChange(fn func(RulesEvent)) Option {
	return optionFunc(func(c *config) { c.onRules = fn })
}

// WithRegisterer turns on Prometheus metrics, registered on reg (pass
// prometheus.DefaultRegisterer to use the global registry). Without it
// the mesh records no metrics. The metrics are listed in the README.
func WithRegisterer(reg prometheus.Registerer) Option {
	return optionFunc(func(c *config) { c.registerer = reg })
}

// WithSnapshotDir keeps the last good rule document and each service's
// last instance list in dir (written atomically by a background writer
// shortly after each change, and again after a failed write; Close
// writes what is pending). When the rule source gives no valid document
// within the start timeout (or ctx's deadline, when it comes first), New
// starts from the saved one instead of failing, and services discovery has
// not reported by then get their saved instances; the live sources take
// over as soon as they answer. Each file records its source: a saved
// document or instance list is used only by a mesh reading the same rule
// source (its String) or discovery source (its String when it has one,
// its type otherwise), so a mesh pointed at staging never starts on
// prod's rules or instances.
func WithSnapshotDir(dir string) Option {
	return optionFunc(func(c *config) { c.snapshotDir = dir })
}
